/*-------------------------------------------------------------------------
 *
 * lookup.c
 *	  Reading a queue from shared memory instead of its row: its settings by
 *	  name, and its job counts.
 *
 * A claim or an enqueue needs the queue's id and settings; reading them
 * from shared memory spares a statement.  Each backend remembers which id
 * a queue name stands for (ij_remember_queue, when it reads the queue's
 * row); the settings themselves come from the queue's entry.  The counts
 * behind queue_counts and job_counts are the entry's count[], to which this
 * transaction adds its own changes.
 *
 * src/lookup.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xlog.h"
#include "utils/memutils.h"

#include "shared.h"
#include "xact.h"

/* this backend's map of queue names to ids, for ij_shared_queue */
typedef struct IjNameEntry
{
	char		name[IJ_QUEUE_NAME_MAX + 1];	/* hash key */
	Oid			relid;
	int32		queue_id;
} IjNameEntry;

static HTAB *name_cache = NULL;

/* remember which queue a name stands for, for ij_shared_queue */
void
ij_remember_queue(const IjQueue *queue)
{
	IjNameEntry *n;
	bool		found;

	if (!ij_shmem_active())
		return;
	if (name_cache == NULL)
	{
		HASHCTL		info;

		info.keysize = sizeof(n->name);
		info.entrysize = sizeof(IjNameEntry);
		info.hcxt = TopMemoryContext;
		name_cache = hash_create("immich_jobs queue names", 64, &info,
								 HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
	}
	n = (IjNameEntry *) hash_search(name_cache, queue->name, HASH_ENTER,
									&found);
	n->relid = ij_job_relid();
	n->queue_id = queue->queue_id;
}

/*
 * Read a queue's id and settings from shared memory, without a statement.
 * The settings are the last committed ones (or this transaction's own
 * changes).  Returns false when shared memory cannot say: the caller must
 * then read the queue's row.
 */
bool
ij_shared_queue(const char *name, IjQueue *queue)
{
	IjNameEntry *n;
	IjQueueState *e;
	Oid			relid;
	bool		found = false;
	const IjQueue *own;

	if (!ij_shmem_active() || name_cache == NULL)
		return false;
	n = (IjNameEntry *) hash_search(name_cache, name, HASH_FIND, NULL);
	relid = ij_job_relid();
	if (n == NULL || n->relid != relid)
		return false;

	LWLockAcquire(ij_lock, LW_SHARED);
	e = ij_find(relid, n->queue_id);
	if (e != NULL && strcmp(e->name, name) == 0)
	{
		SpinLockAcquire(&e->mutex);
		queue->queue_id = n->queue_id;
		queue->concurrency = e->concurrency;
		queue->max_attempts = e->max_attempts;
		queue->paused = e->paused;
		queue->lease_timeout = e->lease_timeout;
		SpinLockRelease(&e->mutex);
		strlcpy(queue->name, name, sizeof(queue->name));
		found = true;
	}
	LWLockRelease(ij_lock);
	if (!found)
	{
		/* dropped, or dropped and created again: forget it */
		hash_search(name_cache, name, HASH_REMOVE, NULL);
		return false;
	}

	/* the latest settings this transaction gave the queue win */
	own = ij_own_settings(relid, queue->queue_id);
	if (own != NULL)
		*queue = *own;
	return true;
}

/*
 * The counts of one queue from shared memory.  Returns false when they are
 * not kept there (no preload, a hot standby, an unknown queue).
 */
bool
ij_shared_counts(int32 queue_id, int64 *counts)
{
	IjQueueState *e;
	bool		found = false;

	if (!ij_shmem_active() || RecoveryInProgress())
		return false;
	ij_ensure_loaded();
	ij_ensure_queue_loaded(queue_id);
	LWLockAcquire(ij_lock, LW_SHARED);
	e = ij_find(ij_job_relid(), queue_id);
	if (e != NULL)
	{
		SpinLockAcquire(&e->mutex);
		memcpy(counts, e->count, sizeof(e->count));
		SpinLockRelease(&e->mutex);
		found = true;
	}
	LWLockRelease(ij_lock);

	/* this transaction sees its own changes, not yet in shared memory */
	if (found)
		ij_add_own_counts(ij_job_relid(), queue_id, counts);
	return found;
}
