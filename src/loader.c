/*-------------------------------------------------------------------------
 *
 * loader.c
 *	  Filling the shared per-queue state after a start: a database's loader
 *	  (with the move of the lease tokens), and the late loader of one queue.
 *
 * Loading.  After a restart shared memory is empty.  The first transaction
 * that needs a database's counters counts every queue's jobs with one query
 * and publishes the result, unless another backend published first.  This
 * is exact because every function that changes jobs calls ij_ensure_loaded()
 * before its first change: no change can be made, let alone committed,
 * between the snapshot a loader counts with and the moment the counts are
 * published.  A queue that appears after that, restored or copied into the
 * table (pg_restore runs CREATE EXTENSION before its COPYs), is loaded alone
 * when a claim or a count first needs it (ij_ensure_queue_loaded says how
 * that stays exact); until then it is served from its rows.  Other changes
 * made to the tables other than through the extension's functions are not
 * seen until the next restart.  A read-only transaction
 * (a hot standby's, among others) does not load: the loader must also move
 * the lease tokens on (below), and until somebody loads, counts are counted.
 *
 * Lease tokens after a crash.  Transactions that only move leases may commit
 * without waiting for the WAL flush (commit.c), so a crash may lose a claim
 * after its worker got the token, and with it the lease_token_seq values
 * handed out since the sequence last reached the disk.  The next claim of
 * that job must not get the same token again, or the lost worker's late
 * completion would end a lease that is not its own.  So the loader, which
 * runs before anybody in the database can lease a job after a start, moves
 * the sequence 2^32 values on and flushes that to disk before it publishes.
 * It also moves it at least to the time in microseconds: a standby promoted
 * after its primary died may not have received the primary's last move,
 * but it starts beyond every token the primary handed out as long as the
 * primary handed out fewer tokens than microseconds went by.
 *
 * src/loader.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "access/xlog.h"
#include "storage/lmgr.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "shared.h"
#include "xact.h"

/* the job table whose counters this backend knows to be loaded */
static Oid	loaded_relid = InvalidOid;

/*
 * Read row row of a loader's result (IJ_PLAN_COUNTS_ALL or _QUEUE): the
 * queue's settings into queue, its counts into counts.
 */
static void
ij_result_loaded_queue(int row, IjQueue *queue, int64 *counts)
{
	bool		isnull;
	char	   *name;

	name = TextDatumGetCString(ij_result(row, ij_result_col("queue_name"),
										 &isnull));
	ij_result_queue(row, name, queue);
	for (int c = 0; c < IJ_NUM_COUNTS; c++)
		counts[c] = ij_result_int64(row, ij_result_col(ij_count_names[c]));
	pfree(name);
}

/*
 * Count every queue's jobs (IJ_PLAN_COUNTS_ALL): *queues gets the queues'
 * settings, *counts their counts, IJ_NUM_COUNTS per queue.  Returns how
 * many queues.
 */
static int
ij_count_all_queues(IjQueue **queues, int64 **counts)
{
	int			nrows;
	IjQueue    *q;
	int64	   *c;

	nrows = ij_execute(IJ_PLAN_COUNTS_ALL, NULL, NULL, 0);
	q = (IjQueue *) palloc(sizeof(IjQueue) * Max(nrows, 1));
	c = (int64 *) palloc(sizeof(int64) * IJ_NUM_COUNTS * Max(nrows, 1));
	for (int i = 0; i < nrows; i++)
		ij_result_loaded_queue(i, &q[i], &c[i * IJ_NUM_COUNTS]);
	*queues = q;
	*counts = c;
	return nrows;
}

/*
 * Publish the counts of a database's nrows queues, then its marker, unless
 * somebody published first.  Returns the name of a queue that found no
 * room ("(any)" if only the marker found none), or NULL; the caller says
 * so, without ij_lock.
 */
static const char *
ij_publish_loaded(Oid relid, IjQueue *queues, int64 *counts, int nrows)
{
	IjQueueState *e;
	bool		found;
	const char *full = NULL;

	ij_make_room(nrows + 1);
	LWLockAcquire(ij_lock, LW_EXCLUSIVE);
	if (ij_find(relid, 0) == NULL)
	{
		/*
		 * Entries of another installation of the extension in this database
		 * stay: that installation may be the committed one (ours may be in a
		 * CREATE EXTENSION that rolls back).  ij_make_room() removes them once
		 * their table is gone.
		 */
		for (int i = 0; i < nrows; i++)
		{
			e = ij_enter(relid, queues[i].queue_id, &queues[i], &found);
			if (e == NULL)
			{
				if (full == NULL)
					full = queues[i].name;
				continue;		/* served from its rows */
			}
			if (found)
				continue;		/* created by create_queue meanwhile */
			memcpy(e->count, &counts[i * IJ_NUM_COUNTS], sizeof(e->count));
		}
		/*
		 * The marker goes last.  If anything above fails, the entries added
		 * stay and the next loader keeps them: their counts are still exact,
		 * as no change can be made before the marker exists.  If even the
		 * marker finds no room, this backend does not try again; others will,
		 * once each.
		 */
		if (ij_enter(relid, 0, NULL, &found) == NULL && full == NULL)
			full = "(any)";
	}
	LWLockRelease(ij_lock);
	return full;
}

/*
 * Make sure this database's counters are in shared memory, counting every
 * queue's jobs if they are not.  Must be called, inside SPI, before a
 * function makes its first change to any job.
 */
void
ij_ensure_loaded(void)
{
	Oid			relid;
	Oid			seqrelid;
	int			nrows;
	IjQueue    *queues;
	int64	   *counts;
	const char *full;

	if (!ij_shmem_active())
		return;
	relid = ij_job_relid();
	if (relid == loaded_relid)
		return;

	if (ij_database_loaded(relid))
	{
		loaded_relid = relid;
		return;
	}
	if (XactReadOnly)
		return;

	/*
	 * One loader at a time moves the tokens on: they would take turns on
	 * the sequence anyway.  The lock is let go as soon as the counts are
	 * published, not held until the loader's transaction ends.
	 */
	seqrelid = ij_catalog_relid("lease_token_seq");
	LockRelationOid(seqrelid, ShareUpdateExclusiveLock);
	if (ij_database_loaded(relid))
	{
		UnlockRelationOid(seqrelid, ShareUpdateExclusiveLock);
		loaded_relid = relid;
		return;
	}
	ij_execute(IJ_PLAN_SKIP_TOKENS, NULL, NULL, 0);
	XLogFlush(XactLastRecEnd);

	/* count, then publish unless somebody published first */
	nrows = ij_count_all_queues(&queues, &counts);
	full = ij_publish_loaded(relid, queues, counts, nrows);
	UnlockRelationOid(seqrelid, ShareUpdateExclusiveLock);
	loaded_relid = relid;
	if (full != NULL)
		ij_table_full(full);
}

/* a late load that could not run is not tried again in this backend before */
#define IJ_LATE_LOAD_RETRY_MS 1000

/*
 * Lock the extension's tables for a late load, without waiting: the queue
 * table in ExclusiveLock (which conflicts with a row locked FOR UPDATE, as
 * claims on the row path lock their queue's, and with any change), the job
 * table and the completion log in ShareLock (which conflicts with any
 * change).  Returns false, holding nothing, if another transaction holds a
 * conflicting lock.
 */
static bool
ij_lock_for_late_load(Oid *relids)
{
	static const LOCKMODE modes[3] = {ExclusiveLock, ShareLock, ShareLock};

	relids[0] = ij_catalog_relid("queue");
	relids[1] = ij_job_relid();
	relids[2] = ij_catalog_relid("completed_log");
	for (int i = 0; i < 3; i++)
	{
		if (!ConditionalLockRelationOid(relids[i], modes[i]))
		{
			while (--i >= 0)
				UnlockRelationOid(relids[i], modes[i]);
			return false;
		}
	}
	return true;
}

static void
ij_unlock_for_late_load(const Oid *relids)
{
	UnlockRelationOid(relids[2], ShareLock);
	UnlockRelationOid(relids[1], ShareLock);
	UnlockRelationOid(relids[0], ExclusiveLock);
}

/*
 * Give a queue that shared memory does not know its entry, counting its
 * jobs: a queue restored or copied into the database after it was loaded
 * (pg_restore runs CREATE EXTENSION before its COPYs), or one left out while
 * the table was full.  From then on it is admitted and counted in shared
 * memory instead of on its rows.  Call inside SPI, before this transaction
 * changes the queue's jobs.
 *
 * The count is exact when no change to the queue's jobs or settings is in
 * progress while it is counted and published: a change the count does not
 * see must commit after the entry exists (its commit callback then applies
 * it), and a change it sees must have run its commit callback already
 * (without an entry: it is not applied twice).  So the loader holds, while
 * it counts and publishes, locks that conflict with every transaction in
 * progress that has changed the extension's tables, through its functions
 * or not (a COPY of a parallel pg_restore), or that claims on the queue's
 * row (ij_lock_for_late_load): such a transaction holds its locks until it
 * ends, after its commit callback.  It takes them without waiting; if it
 * cannot, the queue stays on its rows and a later call tries again.  A
 * claim that found no entry and then waited for its queue's row rereads
 * the entry (lease.c), so no claim admits on the row while others admit in
 * shared memory.  The loader must not have changed the queue's jobs itself
 * (the count would see its changes, and its commit apply them).
 */
void
ij_ensure_queue_loaded(int32 queue_id)
{
	static TimestampTz retry_after = 0;
	Oid			relid;
	Oid			relids[3];
	bool		known;
	bool		marked;
	bool		full;
	bool		warn = false;
	Datum		values[1];
	IjQueue		queue;
	int64		counts[IJ_NUM_COUNTS];
	IjQueueState *e = NULL;
	bool		found;
	TimestampTz now;

	if (!ij_shmem_active() || RecoveryInProgress())
		return;
	relid = ij_job_relid();
	LWLockAcquire(ij_lock, LW_SHARED);
	known = ij_find(relid, queue_id) != NULL;
	marked = ij_find(relid, 0) != NULL;
	LWLockRelease(ij_lock);

	/* the database's loader has not run: ij_ensure_loaded() loads all */
	if (known || !marked || ij_has_pending(relid, queue_id))
		return;
	now = GetCurrentTimestamp();
	if (now < retry_after)
		return;
	retry_after = TimestampTzPlusMilliseconds(now, IJ_LATE_LOAD_RETRY_MS);

	/* room first: a full table is no reason to count */
	ij_make_room(1);
	LWLockAcquire(ij_lock, LW_SHARED);
	full = hash_get_num_entries(ij_queues) >= ij_max_queues;
	LWLockRelease(ij_lock);
	if (full || !ij_lock_for_late_load(relids))
		return;

	values[0] = Int32GetDatum(queue_id);
	if (ij_execute_latest(IJ_PLAN_COUNTS_QUEUE, values, NULL) == 1)
	{
		ij_result_loaded_queue(0, &queue, counts);
		LWLockAcquire(ij_lock, LW_EXCLUSIVE);
		e = ij_enter(relid, queue_id, &queue, &found);
		if (e != NULL && !found)
			memcpy(e->count, counts, sizeof(e->count));
		else if (e == NULL)
		{
			/* filled meanwhile: say so once per database */
			IjQueueState *marker = ij_find(relid, 0);

			warn = marker != NULL && !marker->full_warned;
			if (warn)
				marker->full_warned = true;
		}
		LWLockRelease(ij_lock);
	}
	ij_unlock_for_late_load(relids);
	if (e != NULL)
		retry_after = 0;
	if (warn)
		ij_table_full(queue.name);
}
