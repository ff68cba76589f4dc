/*-------------------------------------------------------------------------
 *
 * admission.c
 *	  Per-queue state shared by every backend: admission, job counts and
 *	  wake-ups.
 *
 * When the library is in shared_preload_libraries, shared memory holds one
 * IjQueueState per queue of every database that uses the extension.  It
 * answers three questions without touching a table row that many sessions
 * would update (and so serialize on, and bloat under a held snapshot):
 *
 *	- Admission: may this claim lease n more jobs?  count[ACTIVE] is the number
 *	  of committed active jobs, reserved what transactions in progress hold
 *	  for the jobs they lease.  A claim reserves under the spinlock only while
 *	  count[ACTIVE] + reserved <= concurrency afterwards, so the number of
 *	  active jobs never exceeds the limit, whichever way the transactions end.
 *
 *	  A transaction that ends leases (complete, fail, release, cancel) and
 *	  then claims in the same queue may reuse the slots it frees: what it
 *	  reserves is the net number of jobs it makes active, max(0, leased -
 *	  ended), not the number it leases.  If it commits, both its leases and
 *	  its ends take effect at once; if it aborts, neither does; so the bound
 *	  above holds for every outcome.  Its reservation never shrinks before
 *	  the transaction ends (only what a claim did not use is given back at
 *	  once), because a subtransaction that ended a lease may still abort and
 *	  give that lease back.  Aborting a subtransaction gives back what its
 *	  claims reserved: nothing done after it started is left to need it.
 *
 *	- Counts: count[] holds the number of jobs in each state, so queue_counts
 *	  costs one lookup per queue however many jobs there are.
 *
 *	- Wake-ups: who may be waiting for a NOTIFY, so that only transactions
 *	  that may wake somebody send one (NOTIFY serializes commits).
 *
 * Transactional updates.  A function that changes jobs records its deltas
 * in backend-local IjPending entries (one per queue and subtransaction
 * level).  They are applied to shared memory by the commit callback, which
 * runs after the transaction has become visible to others, and discarded by
 * the abort callbacks.  Reservations and "wakers in flight" counters are the
 * exception: they take effect at once, and end-of-transaction undoes them.
 * Until a commit is applied the shared counts lag the table by that one
 * transaction, always on the safe side for admission: a completed job keeps
 * its slot until its completion is visible.
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
 * Wake-ups.  A claim that comes back empty announces itself as a waiter;
 * a transaction that makes jobs runnable (or frees a slot) sends NOTIFY if
 * it sees a waiter.  Both sides do that under the entry's spinlock, so one
 * of them sees the other: either the waker sees the waiter, or the waiter
 * sees the waker in flight (job_wakers) or already committed since the
 * claim started (job_wake_seq changed), and then notifies itself so that
 * its client claims again.
 *
 * Claim cursor.  Each entry also holds the position in claim order before
 * which the queue has no claimable job, so that claims start their index
 * scan there instead of stepping over the dead entries that earlier claims
 * left at the head of the index.  doc/claim-cursor.md says how transactions
 * that make jobs claimable lower it, and why that keeps it right.
 *
 * Without the preload none of this exists: claims serialize on the queue's
 * row, counts are counted, and every waking transaction notifies.
 *
 * Locking rules:
 *	- ij_lock (LWLock) protects the hash table's structure: hold it shared to
 *	  look an entry up and use it, exclusive to add or remove entries.  A
 *	  pointer to an entry is valid only while ij_lock is held.
 *	- Each entry's mutex (spinlock) protects its other fields; it is taken
 *	  only while ij_lock is held, for a few instructions, never around
 *	  anything that can fail.
 *
 * src/admission.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/namespace.h"
#include "commands/async.h"
#include "commands/extension.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/lmgr.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "storage/proc.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "immich_jobs.h"

/* the key of a queue's entry; queue_id 0 marks "this database is loaded" */
typedef struct IjQueueKey
{
	Oid			dbid;
	Oid			relid;			/* immich_jobs.job of that database */
	int32		queue_id;
} IjQueueKey;

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

/* this backend's map of queue names to ids, for ij_shared_queue */
typedef struct IjNameEntry
{
	char		name[IJ_QUEUE_NAME_MAX + 1];	/* hash key */
	Oid			relid;
	int32		queue_id;
} IjNameEntry;

static HTAB *name_cache = NULL;

/* the smallest and the largest positions */
const IjPos ij_pos_start = {PG_INT64_MIN, PG_INT64_MIN};
static const IjPos ij_pos_end = {PG_INT64_MAX, PG_INT64_MAX};

/* once a second per queue, one claim scans from the head (defence in depth) */
#define IJ_HEAD_SCAN_INTERVAL_MS 1000

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

static HTAB *ij_queues = NULL;
static LWLock *ij_lock = NULL;

/* this transaction's changes, in TopTransactionContext */
static List *pending = NIL;

/* the job table whose counters this backend knows to be loaded */
static Oid	loaded_relid = InvalidOid;

/*
 * Room for the databases' "loaded" markers beyond immich_jobs.max_queues:
 * queues stop taking entries at max_queues, so that a database can still be
 * marked loaded (and its queues served from their rows) when the table is
 * full of other databases' queues.
 */
#define IJ_MARKER_ROOM 64

/* shared memory for the per-queue state (called while preloading) */
Size
ij_admission_shmem_size(void)
{
	return hash_estimate_size(ij_max_queues + IJ_MARKER_ROOM,
							  sizeof(IjQueueState));
}

/* set up the per-queue state; the caller holds AddinShmemInitLock */
void
ij_admission_shmem_init(LWLock *lock)
{
	HASHCTL		info;

	info.keysize = sizeof(IjQueueKey);
	info.entrysize = sizeof(IjQueueState);
	ij_queues = ShmemInitHash("immich_jobs queues",
							  ij_max_queues + IJ_MARKER_ROOM,
							  ij_max_queues + IJ_MARKER_ROOM,
							  &info, HASH_ELEM | HASH_BLOBS);
	ij_lock = lock;
}

/* is the shared state there (the library was preloaded)? */
bool
ij_shmem_active(void)
{
	return ij_queues != NULL;
}

PG_FUNCTION_INFO_V1(ij_preloaded);

/* CREATE EXTENSION without the preload: say so when it commits */
static bool preload_notice_pending = false;

/*
 * _preloaded(): is the library preloaded?  Called by the install script:
 * without the preload, the transaction says so (NOTICE) when it commits.
 * Not from the script itself: PostgreSQL runs extension scripts with
 * client_min_messages at least WARNING, so a NOTICE there is never seen.
 */
Datum
ij_preloaded(PG_FUNCTION_ARGS)
{
	if (!ij_shmem_active() && creating_extension)
		preload_notice_pending = true;
	PG_RETURN_BOOL(ij_shmem_active());
}

static void
ij_preload_notice(void)
{
	preload_notice_pending = false;
	ereport(NOTICE,
			(errmsg("immich_jobs is not in shared_preload_libraries"),
			 errdetail("Expired leases are reclaimed only by calling immich_jobs.reap(), claims on a queue take turns on its row, and queue_counts counts rows."),
			 errhint("Add immich_jobs to shared_preload_libraries and restart the server.")));
}

static inline IjQueueKey
ij_key(Oid relid, int32 queue_id)
{
	IjQueueKey	key;

	memset(&key, 0, sizeof(key));
	key.dbid = MyDatabaseId;
	key.relid = relid;
	key.queue_id = queue_id;
	return key;
}

/* look an entry up; the caller holds ij_lock */
static IjQueueState *
ij_find(Oid relid, int32 queue_id)
{
	IjQueueKey	key = ij_key(relid, queue_id);

	return (IjQueueState *) hash_search(ij_queues, &key, HASH_FIND, NULL);
}

/*
 * Add an entry with zero counts, or return the existing one; the caller holds
 * ij_lock exclusively.  Returns NULL (with *found false) when the table is
 * full: immich_jobs.max_queues entries, or for a marker IJ_MARKER_ROOM more.
 * The queue is then served from its rows (ij_table_full() says so).
 */
static IjQueueState *
ij_enter(Oid relid, int32 queue_id, const IjQueue *settings, bool *found)
{
	IjQueueKey	key = ij_key(relid, queue_id);
	IjQueueState *e;

	e = (IjQueueState *) hash_search(ij_queues, &key, HASH_FIND, NULL);
	if (e != NULL)
	{
		*found = true;
		return e;
	}
	if (hash_get_num_entries(ij_queues) >=
		ij_max_queues + (queue_id == 0 ? IJ_MARKER_ROOM : 0))
	{
		*found = false;
		return NULL;
	}
	e = (IjQueueState *) hash_search(ij_queues, &key, HASH_ENTER, found);
	Assert(!*found);
	SpinLockInit(&e->mutex);
	memset(e->name, 0, sizeof(e->name));
	e->concurrency = 0;
	e->max_attempts = 1;
	e->paused = true;
	memset(&e->lease_timeout, 0, sizeof(Interval));
	if (settings != NULL)
	{
		strlcpy(e->name, settings->name, sizeof(e->name));
		e->concurrency = settings->concurrency;
		e->max_attempts = settings->max_attempts;
		e->paused = settings->paused;
		e->lease_timeout = settings->lease_timeout;
	}
	memset(e->count, 0, sizeof(e->count));
	e->reserved = 0;
	e->job_waiters = 0;
	e->slot_waiters = 0;
	e->job_wakers = 0;
	e->slot_wakers = 0;
	e->job_wake_seq = 0;
	e->cursor = ij_pos_start;
	e->cursor_version = 0;
	e->last_head_scan = 0;
	e->full_warned = false;
	return e;
}

/*
 * A queue got no entry because the table is full: it is admitted by its
 * row (as without the preload) and counted by its jobs until the next
 * start.  Say so once per backend, never as an ERROR: one database filling
 * the table must not stop another.  Call without ij_lock.
 */
static void
ij_table_full(const char *queue_name)
{
	static bool warned = false;

	if (warned)
		return;
	warned = true;
	ereport(WARNING,
			(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
			 errmsg("immich_jobs.max_queues is reached: queue \"%s\" is served without shared memory",
					queue_name),
			 errdetail("immich_jobs.max_queues is %d, counting the queues of every database; "
					   "the queues beyond it take turns on their rows to admit jobs, and are counted by reading their jobs.",
					   ij_max_queues),
			 errhint("Increase immich_jobs.max_queues and restart the server.")));
}

/*
 * Before adding n entries to a full table, remove the entries that nobody
 * can use any more: those of databases that no longer exist, and those of
 * another installation of the extension in this database whose job table
 * no longer exists.
 */
static void
ij_make_room(int n)
{
	HASH_SEQ_STATUS scan;
	IjQueueState *e;
	Oid			relid = ij_job_relid();
	Oid		   *dbids;
	Oid		   *relids;
	int			ndbs = 0;
	int			nrels = 0;
	int			size;

	LWLockAcquire(ij_lock, LW_SHARED);
	size = (int) hash_get_num_entries(ij_queues);
	if (size + n <= ij_max_queues)
	{
		LWLockRelease(ij_lock);
		return;
	}
	/* the databases, and this database's installations, that have entries */
	dbids = (Oid *) palloc(sizeof(Oid) * (size + 1));
	relids = (Oid *) palloc(sizeof(Oid) * (size + 1));
	hash_seq_init(&scan, ij_queues);
	while ((e = (IjQueueState *) hash_seq_search(&scan)) != NULL)
	{
		if (e->key.queue_id != 0)
			continue;
		if (e->key.dbid != MyDatabaseId)
			dbids[ndbs++] = e->key.dbid;
		else if (e->key.relid != relid)
			relids[nrels++] = e->key.relid;
	}
	LWLockRelease(ij_lock);

	/* look them up without holding the lock */
	for (int i = 0; i < ndbs; i++)
	{
		if (SearchSysCacheExists1(DATABASEOID, ObjectIdGetDatum(dbids[i])))
			dbids[i] = InvalidOid;
	}

	/* and the tables of other installations in this database */
	for (int i = 0; i < nrels; i++)
	{
		if (get_rel_name(relids[i]) != NULL)
			relids[i] = InvalidOid;
	}

	LWLockAcquire(ij_lock, LW_EXCLUSIVE);
	hash_seq_init(&scan, ij_queues);
	while ((e = (IjQueueState *) hash_seq_search(&scan)) != NULL)
	{
		bool		gone = false;

		for (int i = 0; i < ndbs && !gone; i++)
			gone = (e->key.dbid == dbids[i]);
		for (int i = 0; i < nrels && !gone; i++)
			gone = (e->key.dbid == MyDatabaseId && e->key.relid == relids[i]);
		if (gone)
			hash_search(ij_queues, &e->key, HASH_REMOVE, NULL);
	}
	LWLockRelease(ij_lock);
	pfree(dbids);
	pfree(relids);
}

/* has a loader published this database's counters? */
static bool
ij_database_loaded(Oid relid)
{
	bool		loaded;

	LWLockAcquire(ij_lock, LW_SHARED);
	loaded = ij_find(relid, 0) != NULL;
	LWLockRelease(ij_lock);
	return loaded;
}

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
	IjQueueState *e;
	bool		found;
	IjQueue    *queues;
	int64	   *counts;
	const char *full = NULL;

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
	seqrelid = ij_token_seq_relid();
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
	nrows = ij_execute(IJ_PLAN_COUNTS_ALL, NULL, NULL, 0);
	queues = (IjQueue *) palloc(sizeof(IjQueue) * Max(nrows, 1));
	counts = (int64 *) palloc(sizeof(int64) * IJ_NUM_COUNTS * Max(nrows, 1));
	for (int i = 0; i < nrows; i++)
		ij_result_loaded_queue(i, &queues[i], &counts[i * IJ_NUM_COUNTS]);

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
	UnlockRelationOid(seqrelid, ShareUpdateExclusiveLock);
	loaded_relid = relid;
	if (full != NULL)
		ij_table_full(full);
}

/*
 * The lock that keeps a queue's late loader (ij_ensure_queue_loaded) apart
 * from the transactions that change the queue's jobs while it has no entry:
 * an object lock in this database, of the job table's OID, the queue's id
 * and sub-id 1 (pg_locks shows it as locktype "object").
 */
static inline void
ij_load_locktag(LOCKTAG *tag, Oid relid, int32 queue_id)
{
	SET_LOCKTAG_OBJECT(*tag, MyDatabaseId, relid, (uint32) queue_id, 1);
}

/* has this transaction recorded anything for a queue, at any level? */
static bool
ij_has_pending(Oid relid, int32 queue_id)
{
	ListCell   *lc;

	foreach(lc, pending)
	{
		IjPending  *p = (IjPending *) lfirst(lc);

		if (p->queue_id == queue_id && p->relid == relid)
			return true;
	}
	return false;
}

/*
 * Give a queue that shared memory does not know its entry, counting its
 * jobs: a queue restored or copied into the database after it was loaded
 * (pg_restore runs CREATE EXTENSION before its COPYs), or one left out while
 * the table was full.  From then on it is admitted and counted in shared
 * memory instead of on its rows.  Call inside SPI, before this transaction
 * changes the queue's jobs.
 *
 * The count is exact for the reason the database's loader is: no change to
 * the queue's jobs is left out of it, or applied to it twice.  Every
 * transaction that changes the queue's jobs while the queue has no entry
 * holds the queue's load lock in ShareLock from its first change
 * (ij_pending) until it ends, which is after its commit callback.  The
 * loader takes the lock in ExclusiveLock, counts with the latest snapshot
 * and publishes before it lets go.  So a change the count sees was
 * committed, and its callback ran without an entry, before the loader had
 * the lock; a change the count does not see commits after the entry exists
 * and is applied to it.  The loader must not have changed the queue's jobs
 * itself (the count would see its changes, and its commit apply them).
 * A loader that cannot have the lock at once leaves the queue on its rows
 * this time: the next call tries again.
 */
void
ij_ensure_queue_loaded(int32 queue_id)
{
	static TimestampTz last_full = 0;
	Oid			relid;
	bool		known;
	bool		marked;
	bool		full;
	bool		warn = false;
	LOCKTAG		tag;
	Datum		values[1];
	IjQueue		queue;
	int64		counts[IJ_NUM_COUNTS];
	IjQueueState *e = NULL;
	bool		found;

	if (!ij_shmem_active() || RecoveryInProgress())
		return;
	relid = ij_job_relid();
	LWLockAcquire(ij_lock, LW_SHARED);
	known = ij_find(relid, queue_id) != NULL;
	marked = ij_find(relid, 0) != NULL;
	full = hash_get_num_entries(ij_queues) >= ij_max_queues;
	LWLockRelease(ij_lock);

	/* the database's loader has not run: ij_ensure_loaded() loads all */
	if (known || !marked || ij_has_pending(relid, queue_id))
		return;
	/* while the table is full, look for room once a second */
	if (full)
	{
		TimestampTz now = GetCurrentTimestamp();

		if (!TimestampDifferenceExceeds(last_full, now, 1000))
			return;
		last_full = now;
	}

	ij_load_locktag(&tag, relid, queue_id);
	if (LockAcquire(&tag, ExclusiveLock, false, true) == LOCKACQUIRE_NOT_AVAIL)
		return;
	values[0] = Int32GetDatum(queue_id);
	if (ij_execute_latest(IJ_PLAN_COUNTS_QUEUE, values, NULL) == 1)
	{
		ij_result_loaded_queue(0, &queue, counts);
		ij_make_room(1);
		LWLockAcquire(ij_lock, LW_EXCLUSIVE);
		e = ij_enter(relid, queue_id, &queue, &found);
		if (e != NULL && !found)
			memcpy(e->count, counts, sizeof(e->count));
		else if (e == NULL)
		{
			/* say so once per database, not in every backend */
			IjQueueState *marker = ij_find(relid, 0);

			warn = marker != NULL && !marker->full_warned;
			if (warn)
				marker->full_warned = true;
		}
		LWLockRelease(ij_lock);
		if (warn)
			ij_table_full(queue.name);
	}
	LockRelease(&tag, ExclusiveLock, false);
}

/*
 * This transaction's pending entry for a queue at the current nesting level.
 * A transaction that records something for a queue without an entry holds
 * the queue's load lock in ShareLock until it ends (see
 * ij_ensure_queue_loaded).
 */
static IjPending *
ij_pending(int32 queue_id)
{
	int			level = GetCurrentTransactionNestLevel();
	Oid			relid = ij_job_relid();
	ListCell   *lc;
	IjPending  *p;
	bool		known;
	MemoryContext oldcxt;

	foreach(lc, pending)
	{
		p = (IjPending *) lfirst(lc);
		if (p->queue_id == queue_id && p->nest_level == level &&
			p->relid == relid)
			return p;
	}

	LWLockAcquire(ij_lock, LW_SHARED);
	known = ij_find(relid, queue_id) != NULL;
	LWLockRelease(ij_lock);
	if (!known)
	{
		LOCKTAG		tag;

		ij_load_locktag(&tag, relid, queue_id);
		(void) LockAcquire(&tag, ShareLock, false, false);
	}

	oldcxt = MemoryContextSwitchTo(TopTransactionContext);
	p = (IjPending *) palloc0(sizeof(IjPending));
	p->relid = relid;
	p->queue_id = queue_id;
	p->nest_level = level;
	pending = lappend(pending, p);
	MemoryContextSwitchTo(oldcxt);
	return p;
}

static int
ij_count_of_state(char state)
{
	switch (state)
	{
		case IJ_WAITING:
			return IJ_COUNT_WAITING;
		case IJ_DELAYED:
			return IJ_COUNT_DELAYED;
		case IJ_ACTIVE:
			return IJ_COUNT_ACTIVE;
		case IJ_FAILED:
			return IJ_COUNT_FAILED;
		case IJ_CANCELLED:
			return IJ_COUNT_CANCELLED;
		case 'c':
			return IJ_COUNT_COMPLETED;
	}
	elog(ERROR, "unexpected immich_jobs job state \"%c\"", state);
	return -1;					/* keep compiler quiet */
}

/*
 * Record that n jobs of a queue moved from one state to another, for the
 * counters.  A state of '\0' means "none" (a new job, or a deleted one); 'c'
 * stands for completed.
 */
void
ij_count_move(int32 queue_id, char from, char to, int64 n)
{
	IjPending  *p;

	if (!ij_shmem_active() || n == 0 || from == to)
		return;
	p = ij_pending(queue_id);
	if (from != '\0')
		p->delta[ij_count_of_state(from)] -= n;
	if (to != '\0')
		p->delta[ij_count_of_state(to)] += n;
}

/* add n to one counter of a queue (n may be negative) */
void
ij_count_add(int32 queue_id, IjCount count, int64 n)
{
	if (!ij_shmem_active() || n == 0)
		return;
	ij_pending(queue_id)->delta[count] += n;
}

/*
 * A queue was created by this transaction: give it an entry now, removed
 * again if the transaction aborts.
 */
void
ij_queue_created(const IjQueue *queue)
{
	IjPending  *p;
	IjQueueState *e;
	bool		found;

	if (!ij_shmem_active())
		return;
	p = ij_pending(queue->queue_id);
	ij_make_room(1);
	LWLockAcquire(ij_lock, LW_EXCLUSIVE);
	e = ij_enter(ij_job_relid(), queue->queue_id, queue, &found);
	LWLockRelease(ij_lock);
	p->created = e != NULL && !found;
	if (e == NULL)
		ij_table_full(queue->name);
}

/* this transaction changed a queue's settings: publish them at commit */
void
ij_queue_settings_changed(const IjQueue *queue)
{
	IjPending  *p;

	if (!ij_shmem_active())
		return;
	p = ij_pending(queue->queue_id);
	p->has_settings = true;
	p->settings = *queue;
}

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
	ListCell   *lc;

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
	foreach(lc, pending)
	{
		IjPending  *p = (IjPending *) lfirst(lc);

		if (p->queue_id == queue->queue_id && p->relid == relid &&
			p->has_settings)
			*queue = p->settings;
	}
	return true;
}

/* a queue is dropped by this transaction: remove its entry at commit */
void
ij_queue_dropped(int32 queue_id)
{
	if (!ij_shmem_active())
		return;
	ij_pending(queue_id)->dropped = true;
}

/*
 * This transaction's share of a queue over all its (sub)transaction levels:
 * its net change of the number of active jobs, and what it holds reserved.
 */
static void
ij_own_share(Oid relid, int32 queue_id, int64 *delta, int64 *reserved)
{
	ListCell   *lc;

	*delta = 0;
	*reserved = 0;
	foreach(lc, pending)
	{
		IjPending  *q = (IjPending *) lfirst(lc);

		if (q->queue_id == queue_id && q->relid == relid)
		{
			*delta += q->delta[IJ_COUNT_ACTIVE];
			*reserved += q->reserved;
		}
	}
}

/*
 * Ask for up to want slots of a queue.  Fills adm; adm->granted is 0 when
 * the queue is paused or full, and the caller is then counted as waiting
 * for a slot.  adm->shared is false when there is no shared state for the
 * queue (no preload, a full table, or a queue whose late loader could not
 * run): the caller must then do admission itself, on the queue's row.
 */
void
ij_admit(const IjQueue *queue, int want, IjAdmission *adm)
{
	IjPending  *p;
	IjQueueState *e;
	TimestampTz now;
	bool		own_settings = false;
	bool		paused;
	int32		concurrency;
	ListCell   *lc;

	adm->shared = false;
	adm->granted = 0;
	adm->raised = 0;
	adm->promote = true;
	adm->job_wake_seq = 0;
	adm->self_notify = false;
	adm->start = ij_pos_start;
	adm->cursor_version = 0;
	if (!ij_shmem_active())
		return;
	now = GetCurrentTimestamp();

	p = ij_pending(queue->queue_id);
	ij_own_share(p->relid, queue->queue_id, &adm->own_delta,
				 &adm->own_reserved);

	/*
	 * Admit by the settings committed last (read under the spinlock, so that
	 * none can change between the check and the reservation), or by this
	 * transaction's own changes to them.
	 */
	paused = queue->paused;
	concurrency = queue->concurrency;
	foreach(lc, pending)
	{
		IjPending  *q = (IjPending *) lfirst(lc);

		if (q->queue_id == queue->queue_id && q->relid == p->relid &&
			q->has_settings)
		{
			own_settings = true;
			paused = q->settings.paused;
			concurrency = q->settings.concurrency;
		}
	}

	LWLockAcquire(ij_lock, LW_SHARED);
	e = ij_find(p->relid, queue->queue_id);
	if (e != NULL)
	{
		int64		room;
		int64		need;

		SpinLockAcquire(&e->mutex);
		if (!own_settings)
		{
			paused = e->paused;
			concurrency = e->concurrency;
		}

		/*
		 * room: the slots left when every other transaction in progress gets
		 * what it reserved; this transaction may make up to that many jobs
		 * active, net of the leases it has ended (own_delta < 0) or leased
		 * (own_delta > 0) so far.
		 */
		room = concurrency - e->count[IJ_COUNT_ACTIVE] -
			(e->reserved - adm->own_reserved);
		if (paused || room < 0)
			adm->granted = 0;
		else
			adm->granted = (int) Max(0, Min(want, room - adm->own_delta));
		need = Max(0, adm->own_delta + adm->granted);
		adm->raised = (int) Max(0, need - adm->own_reserved);
		e->reserved += adm->raised;
		if (adm->granted == 0)
		{
			if (e->slot_waiters < PG_INT32_MAX)
				e->slot_waiters++;
			adm->self_notify = e->slot_wakers > 0;
		}
		adm->promote = e->count[IJ_COUNT_DELAYED] > 0;
		adm->job_wake_seq = e->job_wake_seq;
		adm->start = e->cursor;
		adm->cursor_version = e->cursor_version;
		if (adm->granted > 0 &&
			TimestampDifferenceExceeds(e->last_head_scan, now,
									   IJ_HEAD_SCAN_INTERVAL_MS))
		{
			adm->start = ij_pos_start;
			e->last_head_scan = now;
		}
		SpinLockRelease(&e->mutex);
		adm->shared = true;
	}
	LWLockRelease(ij_lock);
	p->reserved += adm->raised;
	/* a claim locks waiting jobs: if it aborts, others may have passed them */
	if (adm->granted > 0)
		p->reset_on_abort = true;
}

/*
 * A claim leased used of the adm->granted slots it may lease: give back now
 * what it reserved for the others.  What it keeps stays reserved until the
 * transaction commits (when its jobs become active) or aborts.  A claim
 * that found no job becomes a waiter.  The cursor moves past the last job
 * leased (to the end if none), unless something lowered it since the claim
 * read it.
 */
void
ij_admit_done(const IjQueue *queue, IjAdmission *adm, int used,
			  int32 last_priority, int64 last_job_id)
{
	IjPending  *p;
	IjQueueState *e;
	bool		wait = (used == 0 && adm->granted > 0);
	IjPos		next = ij_pos_end;
	int64		keep;
	int			unused;

	if (!adm->shared || adm->granted == 0)
		return;
	if (used > 0)
	{
		next.np = -(int64) last_priority;
		next.id = last_job_id + 1;
	}
	/* the reservation this transaction needs now, beyond what it had */
	keep = Max(adm->own_reserved, adm->own_delta + used) - adm->own_reserved;
	unused = adm->raised - (int) Max(0, keep);

	p = ij_pending(queue->queue_id);
	LWLockAcquire(ij_lock, LW_SHARED);
	e = ij_find(ij_job_relid(), queue->queue_id);
	if (e != NULL)
	{
		SpinLockAcquire(&e->mutex);
		e->reserved -= unused;
		if (wait)
		{
			if (e->job_waiters < PG_INT32_MAX)
				e->job_waiters++;
			adm->self_notify = e->job_wakers > 0 ||
				e->job_wake_seq != adm->job_wake_seq;
		}
		/*
		 * The argument of doc/claim-cursor.md needs the claim's snapshot to
		 * be taken after it read the cursor: not so in REPEATABLE READ.
		 */
		if (!IsolationUsesXactSnapshot() &&
			e->cursor_version == adm->cursor_version &&
			ij_pos_cmp(next, e->cursor) > 0)
			e->cursor = next;
		SpinLockRelease(&e->mutex);
	}
	LWLockRelease(ij_lock);
	p->reserved -= unused;
}

/*
 * This transaction makes a job claimable at a position (or, for
 * ij_cursor_reset, anywhere): lower the queue's cursor now, so that this
 * transaction's own claims see it, and again when it commits.
 */
static void
ij_lower(int32 queue_id, IjPos pos)
{
	IjPending  *p;
	IjQueueState *e;

	if (!ij_shmem_active())
		return;
	p = ij_pending(queue_id);
	LWLockAcquire(ij_lock, LW_SHARED);
	e = ij_find(ij_job_relid(), queue_id);
	if (e != NULL)
	{
		SpinLockAcquire(&e->mutex);
		ij_lower_locked(e, pos);
		SpinLockRelease(&e->mutex);
	}
	LWLockRelease(ij_lock);
	p->lowest = p->lowered ? ij_pos_min(p->lowest, pos) : pos;
	p->lowered = true;
}

void
ij_cursor_lower(int32 queue_id, int32 priority, int64 job_id)
{
	IjPos		pos;

	pos.np = -(int64) priority;
	pos.id = job_id;
	ij_lower(queue_id, pos);
}

void
ij_cursor_reset(int32 queue_id)
{
	ij_lower(queue_id, ij_pos_start);
}

/* this transaction locks waiting jobs of a queue: reset the cursor if it aborts */
void
ij_locks_waiting(int32 queue_id)
{
	if (ij_shmem_active())
		ij_pending(queue_id)->reset_on_abort = true;
}

/*
 * This transaction makes jobs of a queue runnable (IJ_WAKE_JOBS) or frees
 * slots in it (IJ_WAKE_SLOTS): send NOTIFY immich_jobs, '<queue>' if a claim
 * may be waiting for that.  queue_name may be NULL if the caller does not
 * have it at hand.
 */
void
ij_wake(int32 queue_id, const char *queue_name, IjWakeKind kind)
{
	IjPending  *p;
	IjQueueState *e;
	bool		notify = false;
	bool		known = false;
	char		name[IJ_QUEUE_NAME_MAX + 1];

	if (ij_shmem_active())
	{
		p = ij_pending(queue_id);
		LWLockAcquire(ij_lock, LW_SHARED);
		e = ij_find(ij_job_relid(), queue_id);
		if (e != NULL)
		{
			SpinLockAcquire(&e->mutex);
			if (kind == IJ_WAKE_JOBS)
			{
				if (p->job_wakers == 0)
				{
					e->job_wakers++;
					p->job_wakers++;
				}
				notify = e->job_waiters > 0;
			}
			else
			{
				if (p->slot_wakers == 0)
				{
					e->slot_wakers++;
					p->slot_wakers++;
				}
				notify = e->slot_waiters > 0;
			}
			SpinLockRelease(&e->mutex);
			memcpy(name, e->name, sizeof(name));
			known = true;
		}
		LWLockRelease(ij_lock);
		if (notify)
		{
			p->notified = true;
			if (queue_name == NULL)
				queue_name = name;
		}
	}

	/* without shared state for the queue, anybody may be waiting */
	if (!known || notify)
	{
		if (queue_name == NULL)
			queue_name = ij_queue_name_by_id(queue_id);
		if (queue_name != NULL)
			Async_Notify(IJ_CHANNEL, queue_name);
	}
}

/*
 * For the background worker: send NOTIFY for every queue of this database
 * where a claim came back empty although jobs are waiting.  That happens
 * when the jobs were locked by a transaction that then aborted (a claim,
 * cancel, clear), or were invisible to a REPEATABLE READ claim: nobody
 * else would wake the worker that waits for them.  Returns how many queues.
 */
int
ij_wake_stranded(void)
{
	HASH_SEQ_STATUS scan;
	IjQueueState *e;
	Oid			relid;
	List	   *ids = NIL;
	List	   *names = NIL;
	ListCell   *lc1;
	ListCell   *lc2;

	if (!ij_shmem_active())
		return 0;
	relid = ij_job_relid();
	LWLockAcquire(ij_lock, LW_SHARED);
	hash_seq_init(&scan, ij_queues);
	while ((e = (IjQueueState *) hash_seq_search(&scan)) != NULL)
	{
		bool		stranded;

		if (e->key.dbid != MyDatabaseId || e->key.relid != relid ||
			e->key.queue_id == 0)
			continue;
		SpinLockAcquire(&e->mutex);
		stranded = e->job_waiters > 0 && e->count[IJ_COUNT_WAITING] > 0 &&
			!e->paused;
		SpinLockRelease(&e->mutex);
		if (stranded)
		{
			ids = lappend_int(ids, e->key.queue_id);
			names = lappend(names, pstrdup(e->name));
		}
	}
	LWLockRelease(ij_lock);

	forboth(lc1, ids, lc2, names)
	{
		ij_pending(lfirst_int(lc1))->notified = true;
		Async_Notify(IJ_CHANNEL, (char *) lfirst(lc2));
	}
	return list_length(ids);
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
	{
		Oid			relid = ij_job_relid();
		ListCell   *lc;

		foreach(lc, pending)
		{
			IjPending  *p = (IjPending *) lfirst(lc);

			if (p->queue_id == queue_id && p->relid == relid)
				for (int c = 0; c < IJ_NUM_COUNTS; c++)
					counts[c] += p->delta[c];
		}
	}
	return found;
}

/*
 * Apply (commit) or undo (abort) one pending entry.  Never fails.
 */
static void
ij_finish_pending(IjPending *p, bool commit)
{
	IjQueueState *e;
	bool		remove = commit ? p->dropped : p->created;

	LWLockAcquire(ij_lock, remove ? LW_EXCLUSIVE : LW_SHARED);
	e = ij_find(p->relid, p->queue_id);
	if (e != NULL && remove)
		hash_search(ij_queues, &e->key, HASH_REMOVE, NULL);
	else if (e != NULL)
	{
		SpinLockAcquire(&e->mutex);
		e->reserved -= p->reserved;
		e->job_wakers -= p->job_wakers;
		e->slot_wakers -= p->slot_wakers;
		if (commit)
		{
			for (int c = 0; c < IJ_NUM_COUNTS; c++)
				e->count[c] += p->delta[c];
			if (p->job_wakers > 0)
				e->job_wake_seq++;
			/* every waiter listens, so our NOTIFY reaches all of them */
			if (p->notified)
			{
				e->job_waiters = 0;
				e->slot_waiters = 0;
			}
			/* our jobs are visible now: lower the cursor again */
			if (p->lowered)
				ij_lower_locked(e, p->lowest);
			if (p->has_settings)
			{
				e->concurrency = p->settings.concurrency;
				e->max_attempts = p->settings.max_attempts;
				e->paused = p->settings.paused;
				e->lease_timeout = p->settings.lease_timeout;
			}
		}
		else if (p->reset_on_abort)
		{
			/* jobs we had locked are waiting again, maybe behind the cursor */
			ij_lower_locked(e, ij_pos_start);
		}
		SpinLockRelease(&e->mutex);
	}
	LWLockRelease(ij_lock);
}

/* has this transaction changed anything that its end must apply or undo? */
static bool
ij_pending_matters(void)
{
	ListCell   *lc;

	foreach(lc, pending)
	{
		IjPending  *p = (IjPending *) lfirst(lc);

		if (p->reserved != 0 || p->job_wakers != 0 || p->slot_wakers != 0 ||
			p->notified || p->created || p->dropped || p->lowered ||
			p->reset_on_abort || p->has_settings)
			return true;
		for (int c = 0; c < IJ_NUM_COUNTS; c++)
			if (p->delta[c] != 0)
				return true;
	}
	return false;
}

static void
ij_xact_callback(XactEvent event, void *arg pg_attribute_unused())
{
	ListCell   *lc;

	if (preload_notice_pending)
	{
		if (event == XACT_EVENT_PRE_COMMIT)
			ij_preload_notice();
		else if (event == XACT_EVENT_ABORT)
			preload_notice_pending = false;
	}

	if (pending == NIL)
		return;

	switch (event)
	{
		case XACT_EVENT_PRE_PREPARE:
			if (!ij_pending_matters())
			{
				pending = NIL;
				break;
			}
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("cannot PREPARE a transaction that has changed immich_jobs jobs")));
			break;
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_ABORT:
			foreach(lc, pending)
				ij_finish_pending((IjPending *) lfirst(lc),
								  event == XACT_EVENT_COMMIT);
			pending = NIL;
			break;
		case XACT_EVENT_PREPARE:
			/* cannot happen: PRE_PREPARE refused it */
			pending = NIL;
			break;
		default:
			break;
	}
}

/*
 * At subtransaction commit, hand the subtransaction's changes to its
 * parent; at subtransaction abort, undo them.
 */
static void
ij_subxact_callback(SubXactEvent event,
					SubTransactionId mySubid pg_attribute_unused(),
					SubTransactionId parentSubid pg_attribute_unused(),
					void *arg pg_attribute_unused())
{
	int			level = GetCurrentTransactionNestLevel();
	List	   *keep = NIL;
	ListCell   *lc;
	MemoryContext oldcxt;

	if (pending == NIL)
		return;
	if (event != SUBXACT_EVENT_COMMIT_SUB && event != SUBXACT_EVENT_ABORT_SUB)
		return;

	oldcxt = MemoryContextSwitchTo(TopTransactionContext);
	foreach(lc, pending)
	{
		IjPending  *p = (IjPending *) lfirst(lc);
		IjPending  *parent = NULL;
		ListCell   *lc2;

		if (p->nest_level < level)
		{
			keep = lappend(keep, p);
			continue;
		}
		if (event == SUBXACT_EVENT_ABORT_SUB)
		{
			ij_finish_pending(p, false);
			continue;
		}

		/* commit: merge into the parent level's entry, or become it */
		foreach(lc2, pending)
		{
			IjPending  *q = (IjPending *) lfirst(lc2);

			if (q->queue_id == p->queue_id && q->relid == p->relid &&
				q->nest_level == level - 1)
				parent = q;
		}
		if (parent == NULL)
		{
			p->nest_level = level - 1;
			keep = lappend(keep, p);
			continue;
		}
		for (int c = 0; c < IJ_NUM_COUNTS; c++)
			parent->delta[c] += p->delta[c];
		parent->reserved += p->reserved;
		parent->job_wakers += p->job_wakers;
		parent->slot_wakers += p->slot_wakers;
		parent->notified |= p->notified;
		parent->created |= p->created;
		parent->dropped |= p->dropped;
		if (p->lowered)
		{
			parent->lowest = parent->lowered ?
				ij_pos_min(parent->lowest, p->lowest) : p->lowest;
			parent->lowered = true;
		}
		parent->reset_on_abort |= p->reset_on_abort;
		if (p->has_settings)
		{
			parent->has_settings = true;
			parent->settings = p->settings;
		}
	}
	list_free(pending);
	pending = keep;
	MemoryContextSwitchTo(oldcxt);
}

void
ij_register_xact_callbacks(void)
{
	RegisterXactCallback(ij_xact_callback, NULL);
	RegisterSubXactCallback(ij_subxact_callback, NULL);
}
