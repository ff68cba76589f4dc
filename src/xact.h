/*-------------------------------------------------------------------------
 *
 * xact.h
 *	  What this transaction has done to each queue, for xact.c to apply to
 *	  shared memory at its end.  Internal to the library, not installed.
 *
 * src/xact.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef IJ_XACT_H
#define IJ_XACT_H

#include "immich_jobs.h"

/* what one (sub)transaction has done to one queue */
typedef struct IjPending
{
	Oid			relid;
	int32		queue_id;
	int			nest_level;
	int64		delta[IJ_NUM_COUNTS];
	int32		reserved;
	int32		job_wakers;
	int32		slot_wakers;
	bool		notified;
	bool		created;
	bool		dropped;
	bool		lowered;		/* made jobs claimable at or after lowest */
	IjPos		lowest;
	bool		reset_on_abort; /* locked waiting jobs */
	bool		has_settings;	/* changed the queue's settings to these */
	IjQueue		settings;
} IjPending;

extern IjPending *ij_pending(int32 queue_id);
extern bool ij_has_pending(Oid relid, int32 queue_id);
extern void ij_own_share(Oid relid, int32 queue_id, int64 *delta,
						 int64 *reserved);
extern const IjQueue *ij_own_settings(Oid relid, int32 queue_id);
extern void ij_add_own_counts(Oid relid, int32 queue_id, int64 *counts);

#endif							/* IJ_XACT_H */
