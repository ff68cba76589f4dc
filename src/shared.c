/*-------------------------------------------------------------------------
 *
 * shared.c
 *	  The table of per-queue state in shared memory: setting it up, finding,
 *	  adding and making room for entries, and the notice given when the
 *	  library is not preloaded.
 *
 * When the library is in shared_preload_libraries, shared memory holds one
 * IjQueueState per queue of every database that uses the extension.  It
 * answers three questions without touching a table row that many sessions
 * would update (and so serialize on, and bloat under a held snapshot):
 *
 *	- Admission: may this claim lease n more jobs?  (admission.c)
 *
 *	- Counts: count[] holds the number of jobs in each state, so queue_counts
 *	  costs one lookup per queue however many jobs there are.  (lookup.c)
 *
 *	- Wake-ups: who may be waiting for a NOTIFY, so that only transactions
 *	  that may wake somebody send one (NOTIFY serializes commits).
 *	  (wakeup.c)
 *
 * Each entry also holds the queue's settings as last committed, and its
 * claim cursor (admission.c).  Transactions change entries through their
 * bookkeeping (xact.c); after a restart the entries are filled by the
 * loaders (loader.c).  Besides a queue's entries, each database that has
 * been loaded has a marker entry, of queue_id 0.
 *
 * Without the preload none of this exists: claims serialize on the queue's
 * row, counts are counted, and every waking transaction notifies.
 *
 * shared.h gives the locking rules.
 *
 * src/shared.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "commands/extension.h"
#include "fmgr.h"
#include "storage/shmem.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"

#include "shared.h"

HTAB	   *ij_queues = NULL;
LWLock	   *ij_lock = NULL;

/* the smallest position, where a cursor starts */
const IjPos ij_pos_start = {PG_INT64_MIN, PG_INT64_MIN};

/*
 * Room for the databases' "loaded" markers beyond immich_jobs.max_queues:
 * queues stop taking entries at max_queues, so that a database can still be
 * marked loaded (and its queues served from their rows) when the table is
 * full of other databases' queues.
 */
#define IJ_MARKER_ROOM 64

/* shared memory for the per-queue state (called while preloading) */
Size
ij_shared_shmem_size(void)
{
	return hash_estimate_size(ij_max_queues + IJ_MARKER_ROOM,
							  sizeof(IjQueueState));
}

/* set up the per-queue state; the caller holds AddinShmemInitLock */
void
ij_shared_shmem_init(LWLock *lock)
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

/* at an end of a transaction: give the notice ij_preloaded() asked for */
void
ij_preload_notice_at(XactEvent event)
{
	if (!preload_notice_pending)
		return;
	if (event == XACT_EVENT_PRE_COMMIT)
		ij_preload_notice();
	else if (event == XACT_EVENT_ABORT)
		preload_notice_pending = false;
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
IjQueueState *
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
IjQueueState *
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
void
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
void
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
bool
ij_database_loaded(Oid relid)
{
	bool		loaded;

	LWLockAcquire(ij_lock, LW_SHARED);
	loaded = ij_find(relid, 0) != NULL;
	LWLockRelease(ij_lock);
	return loaded;
}
