/*-------------------------------------------------------------------------
 *
 * shared.h
 *	  The table of per-queue state in shared memory: its entries, its lock,
 *	  and how to find and add them.  Internal to the library, not installed.
 *
 * Locking rules:
 *	- ij_lock (LWLock) protects the hash table's structure: hold it shared to
 *	  look an entry up and use it, exclusive to add or remove entries.  A
 *	  pointer to an entry is valid only while ij_lock is held.
 *	- Each entry's mutex (spinlock) protects its other fields; it is taken
 *	  only while ij_lock is held, for a few instructions, never around
 *	  anything that can fail.
 *
 * src/shared.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef IJ_SHARED_H
#define IJ_SHARED_H

#include "access/xact.h"
#include "miscadmin.h"
#include "storage/lock.h"
#include "storage/lwlock.h"
#include "storage/spin.h"
#include "utils/hsearch.h"

#include "immich_jobs.h"

/* the key of a queue's entry; queue_id 0 marks "this database is loaded" */
typedef struct IjQueueKey
{
	Oid			dbid;
	Oid			relid;			/* immich_jobs.job of that database */
	int32		queue_id;
} IjQueueKey;

/* one queue's shared state (or, with queue_id 0, a database's marker) */
typedef struct IjQueueState
{
	IjQueueKey	key;			/* hash key; must be first */
	slock_t		mutex;
	char		name[IJ_QUEUE_NAME_MAX + 1];
	int64		count[IJ_NUM_COUNTS];
	int32		reserved;		/* held by transactions in progress */
	int32		job_waiters;	/* claims that found no job since last NOTIFY */
	int32		slot_waiters;	/* claims refused admission since last NOTIFY */
	int32		job_wakers;		/* transactions in flight making jobs runnable */
	int32		slot_wakers;	/* transactions in flight freeing slots */
	uint64		job_wake_seq;	/* bumped by each committed job waker */
	int32		concurrency;	/* the queue's settings, as last committed */
	int32		max_attempts;
	bool		paused;
	Interval	lease_timeout;
	IjPos		cursor;			/* no claimable job sorts before it */
	uint64		cursor_version; /* bumped by every lowering of the cursor */
	TimestampTz last_head_scan; /* last claim that ignored the cursor */
	bool		full_warned;	/* marker: a late load found no room */
} IjQueueState;

/* the table and the lock of its structure (shared.c) */
extern HTAB *ij_queues;
extern LWLock *ij_lock;

/* compare two positions in claim order (see doc/claim-cursor.md) */
static inline int
ij_pos_cmp(IjPos a, IjPos b)
{
	if (a.np != b.np)
		return a.np < b.np ? -1 : 1;
	if (a.id != b.id)
		return a.id < b.id ? -1 : 1;
	return 0;
}

static inline IjPos
ij_pos_min(IjPos a, IjPos b)
{
	return ij_pos_cmp(a, b) <= 0 ? a : b;
}

/* lower an entry's cursor to pos; the caller holds its mutex */
static inline void
ij_lower_locked(IjQueueState *e, IjPos pos)
{
	e->cursor = ij_pos_min(e->cursor, pos);
	e->cursor_version++;
}

extern IjQueueState *ij_find(Oid relid, int32 queue_id);
extern IjQueueState *ij_enter(Oid relid, int32 queue_id,
							  const IjQueue *settings, bool *found);
extern void ij_table_full(const char *queue_name);
extern void ij_make_room(int n);
extern bool ij_database_loaded(Oid relid);
extern void ij_preload_notice_at(XactEvent event);

#endif							/* IJ_SHARED_H */
