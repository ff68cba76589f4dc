/*-------------------------------------------------------------------------
 *
 * worker.c
 *	  The background workers: a launcher, and a reaper per database.
 *
 * The launcher starts with the server (library preloaded), once recovery
 * has finished: a hot standby runs none of this, and promotion starts it.
 * It is connected to no database.  Every round it lists the databases in
 * pg_database that immich_jobs.databases names (skipping templates and
 * databases that refuse connections) and makes sure that each one that has
 * the extension has a reaper.
 *
 * Connected to no database, the launcher cannot see which ones have the
 * extension: the reapers and CREATE EXTENSION tell it.  A database it has
 * not met before (every one at server start or promotion, then each new
 * one) gets one reaper, which looks: if the extension is not there, the
 * reaper marks its slot "absent" and exits, and the launcher starts no
 * reaper there again, however many rounds pass, until a CREATE EXTENSION
 * there says otherwise.  The ProcessUtility hook below notices a statement
 * after which the database has the extension (CREATE EXTENSION, also one
 * that pg_restore runs or that CASCADE makes for another extension; ALTER
 * EXTENSION ... UPDATE; COMMIT PREPARED); when its transaction commits, it
 * marks the database's slot "check" and sets the launcher's latch.  A
 * database without the extension thus costs one backend start per server
 * start and holds no worker slot.
 *
 * When no background worker slot is free for a reaper, the launcher says
 * so once (a WARNING naming the database and how to size
 * max_worker_processes), tries again every round, and says so again only
 * after the database was served in between.
 *
 * A reaper is a dynamic background worker connected to one database.  If
 * the extension is not installed there (or no longer is), it says so in
 * its slot and exits.  Otherwise, every immich_jobs.reaper_interval it
 * runs one short transaction that reclaims expired leases (what reap()
 * does), makes due delayed jobs waiting and wakes whoever waits for them,
 * folds the completion log, and deletes failed and cancelled jobs older
 * than immich_jobs.finished_retention.  Between rounds it holds no
 * transaction, snapshot or lock.
 *
 * Staying out of the way of DDL:
 *	- DROP EXTENSION: each round takes a share lock on the extension object
 *	  before looking at the extension's tables, so a DROP EXTENSION waits for
 *	  the round in progress (milliseconds), and the next round sees the
 *	  extension gone and exits.
 *	- DROP DATABASE, ALTER DATABASE ... RENAME / SET TABLESPACE, CREATE
 *	  DATABASE ... TEMPLATE refuse to run while anyone is connected to the
 *	  database.  A ProcessUtility hook (in every backend, as the library is
 *	  preloaded) stops the database's reaper first (SIGUSR2: it leaves
 *	  quietly, a round in progress cancelled), waits until it has gone, and
 *	  keeps the launcher from starting another until a few seconds after the
 *	  command.
 *
 * Shared state: an IjWorkerSlot for each database that has a reaper, is
 * kept from having one by DDL, or has news for the launcher, under
 * IjWorkerShared->lock (an LWLock): hold it to read or change any slot.
 * The launcher frees the other slots every round; what it knows of the
 * databases without the extension it keeps in its own memory, so that they
 * take no slot.  A reaper publishes its pid in its slot before it connects
 * to its database and checks the slot's pause under the same lock, so the
 * hook either sees the reaper (and stops it) or the reaper sees the pause
 * (and does not start).  The launcher clears a slot's findings and news
 * before it starts a reaper there, which looks only after that: news of a
 * CREATE EXTENSION that the reaper may have missed is never lost.
 *
 * src/worker.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <signal.h>

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_database.h"
#include "catalog/pg_extension.h"
#include "commands/dbcommands.h"
#include "commands/defrem.h"
#include "commands/extension.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lmgr.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "tcop/tcopprot.h"
#include "tcop/utility.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "immich_jobs.h"

PGDLLEXPORT void ij_launcher_main(Datum main_arg);
PGDLLEXPORT void ij_reaper_main(Datum main_arg);

/* how long DDL keeps a database's reaper away, at most and after it ends */
#define IJ_PAUSE_MAX_MS		60000
#define IJ_PAUSE_AFTER_MS	5000

/* how long the hook waits for a reaper to exit */
#define IJ_STOP_WAIT_MS		10000

/* a reaper that failed is started again after this long at least */
#define IJ_RETRY_MS			5000

/* how long a reaper waits for its database's lock when it connects */
#define IJ_CONNECT_LOCK_TIMEOUT "5s"

/*
 * Slots for the databases that DDL keeps from having a reaper or that have
 * news for the launcher, beyond one for each reaper that can run.
 */
#define IJ_SPARE_SLOTS		64

typedef struct IjWorkerSlot
{
	Oid			dboid;			/* InvalidOid: the slot is free */
	pid_t		pid;			/* the reaper's, while it runs */
	bool		absent;			/* its last reaper found no extension */
	bool		served;			/* its reaper found the extension */
	bool		check;			/* the extension was created since the
								 * launcher last started a reaper here */
	TimestampTz paused_until;	/* DDL wants no reaper here before this */
} IjWorkerSlot;

typedef struct IjWorkerShared
{
	LWLock	   *lock;
	PGPROC	   *launcher;		/* whose latch to set; NULL: none runs */
	bool		check_all;		/* news that found no free slot: look at
								 * every database again */
	int			nslots;
	IjWorkerSlot slots[FLEXIBLE_ARRAY_MEMBER];
} IjWorkerShared;

static IjWorkerShared *ij_workers = NULL;

static ProcessUtility_hook_type prev_utility_hook = NULL;

/* what the launcher knows of a database's extension */
typedef enum IjExtState
{
	IJ_EXT_UNKNOWN,				/* not looked yet: start a reaper to look */
	IJ_EXT_INSTALLED,			/* serve it */
	IJ_EXT_ABSENT				/* start nothing until a CREATE EXTENSION */
} IjExtState;

/* the launcher's own record of the databases it serves */
typedef struct IjReaper
{
	Oid			dboid;
	NameData	dbname;
	IjExtState	ext;
	bool		listed;			/* in this round's list of databases */
	BackgroundWorkerHandle *handle; /* NULL: none running */
	TimestampTz next_start;		/* do not start one before */
	bool		warned;			/* logged that no worker slot was free */
} IjReaper;

static IjReaper *reapers = NULL;
static int	nreapers = 0;

Size
ij_worker_shmem_size(void)
{
	return add_size(offsetof(IjWorkerShared, slots),
					mul_size(add_size(max_worker_processes, IJ_SPARE_SLOTS),
							 sizeof(IjWorkerSlot)));
}

/* set up the slots; the caller holds AddinShmemInitLock */
void
ij_worker_shmem_init(LWLock *lock)
{
	bool		found;

	ij_workers = ShmemInitStruct("immich_jobs workers",
								 ij_worker_shmem_size(), &found);
	if (!found)
	{
		memset(ij_workers, 0, ij_worker_shmem_size());
		ij_workers->nslots = max_worker_processes + IJ_SPARE_SLOTS;
	}
	ij_workers->lock = lock;
}

/* the slot of a database, or a free one made its own; caller holds lock */
static IjWorkerSlot *
ij_worker_slot(Oid dboid, bool create)
{
	IjWorkerSlot *free_slot = NULL;

	for (int i = 0; i < ij_workers->nslots; i++)
	{
		IjWorkerSlot *slot = &ij_workers->slots[i];

		if (slot->dboid == dboid)
			return slot;
		if (slot->dboid == InvalidOid && free_slot == NULL)
			free_slot = slot;
	}
	if (create && free_slot != NULL)
	{
		memset(free_slot, 0, sizeof(IjWorkerSlot));
		free_slot->dboid = dboid;
	}
	return create ? free_slot : NULL;
}

void
ij_register_launcher(void)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS |
		BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = 5;
	strlcpy(worker.bgw_library_name, "immich_jobs", BGW_MAXLEN);
	strlcpy(worker.bgw_function_name, "ij_launcher_main", BGW_MAXLEN);
	strlcpy(worker.bgw_name, "immich_jobs launcher", BGW_MAXLEN);
	strlcpy(worker.bgw_type, "immich_jobs launcher", BGW_MAXLEN);
	RegisterBackgroundWorker(&worker);
}

/*
 * SIGTERM (shutdown, pg_terminate_backend): between rounds a worker just
 * leaves, quietly; during a round or while it connects, either of which may
 * wait for a lock, it dies at once as any backend would.
 */
static volatile sig_atomic_t in_round = false;

static void
ij_sigterm(SIGNAL_ARGS)
{
	if (in_round)
		die(postgres_signal_arg);
	else
		SignalHandlerForShutdownRequest(postgres_signal_arg);
}

/*
 * SIGUSR2: DDL that needs the database to itself asks its reaper to leave
 * (ij_stop_reaper).  That is no failure, so the reaper leaves quietly, with
 * exit code 0: a round in progress, which may wait for a lock, is cancelled
 * (it rolls back and logs nothing); a connection in progress is completed
 * first (it waits for a lock IJ_CONNECT_LOCK_TIMEOUT at most, less than the
 * hook waits for the reaper to leave).
 */
static volatile sig_atomic_t ddl_stop = false;
static volatile sig_atomic_t round_cancellable = false;

static void
ij_sigusr2(SIGNAL_ARGS)
{
	int			save_errno = errno;

	ddl_stop = true;
	ShutdownRequestPending = true;
	if (round_cancellable)
	{
		QueryCancelPending = true;
		InterruptPending = true;
	}
	SetLatch(MyLatch);
	errno = save_errno;
}

/*
 * After a wait: leave on SIGTERM, reload on SIGHUP.  The launcher leaves
 * with exit code 1, so that the postmaster starts it again (unless it is
 * shutting down): a pg_terminate_backend() must not stop reclaiming for
 * good.  A reaper leaves with 0; the launcher starts reapers.
 */
static void
ij_worker_interrupts(int exit_code)
{
	CHECK_FOR_INTERRUPTS();
	if (ShutdownRequestPending)
		proc_exit(exit_code);
	if (ConfigReloadPending)
	{
		ConfigReloadPending = false;
		ProcessConfigFile(PGC_SIGHUP);
	}
}

/*
 * The launcher
 */

/* the launcher's record of a database, made if it is new: not looked at yet */
static IjReaper *
ij_reaper_entry(Oid dboid)
{
	for (int i = 0; i < nreapers; i++)
	{
		if (reapers[i].dboid == dboid)
			return &reapers[i];
	}
	if (nreapers % 16 == 0)
		reapers = reapers == NULL ?
			MemoryContextAllocZero(TopMemoryContext, sizeof(IjReaper) * 16) :
			repalloc(reapers, sizeof(IjReaper) * (nreapers + 16));
	memset(&reapers[nreapers], 0, sizeof(IjReaper));
	reapers[nreapers].dboid = dboid;
	reapers[nreapers].ext = IJ_EXT_UNKNOWN;
	return &reapers[nreapers++];
}

/*
 * List the databases to serve: mark their records "listed" (making records
 * for the new ones) and keep their names up to date.
 */
static void
ij_list_databases(void)
{
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tup;

	for (int i = 0; i < nreapers; i++)
		reapers[i].listed = false;

	StartTransactionCommand();
	(void) GetTransactionSnapshot();
	rel = table_open(DatabaseRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while (HeapTupleIsValid(tup = heap_getnext(scan, ForwardScanDirection)))
	{
		Form_pg_database db = (Form_pg_database) GETSTRUCT(tup);
		IjReaper   *r;

		if (!db->datallowconn || db->datistemplate ||
#ifdef DATCONNLIMIT_INVALID_DB
			database_is_invalid_form(db) ||
#endif
			!ij_serves_database(NameStr(db->datname)))
			continue;
		r = ij_reaper_entry(db->oid);
		r->listed = true;
		namestrcpy(&r->dbname, NameStr(db->datname));
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	CommitTransactionCommand();
}

/* start a reaper for a database; false if no worker slot was free */
static bool
ij_start_reaper(IjReaper *r)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS |
		BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	strlcpy(worker.bgw_library_name, "immich_jobs", BGW_MAXLEN);
	strlcpy(worker.bgw_function_name, "ij_reaper_main", BGW_MAXLEN);
	snprintf(worker.bgw_name, BGW_MAXLEN,
			 "immich_jobs reaper for database %u", r->dboid);
	strlcpy(worker.bgw_type, "immich_jobs reaper", BGW_MAXLEN);
	worker.bgw_main_arg = ObjectIdGetDatum(r->dboid);
	worker.bgw_notify_pid = MyProcPid;
	return RegisterDynamicBackgroundWorker(&worker, &r->handle);
}

/*
 * No background worker slot was free for a database's reaper: say which
 * database, and how many workers immich_jobs needs.
 */
static void
ij_warn_no_worker(IjReaper *r)
{
	int			needed = 1;		/* the launcher */

	for (int i = 0; i < nreapers; i++)
	{
		if (reapers[i].listed && reapers[i].ext != IJ_EXT_ABSENT)
			needed++;
	}
	ereport(WARNING,
			(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
			 errmsg("immich_jobs could not start a reaper for database \"%s\"",
					NameStr(r->dbname)),
			 r->ext == IJ_EXT_INSTALLED ?
			 errdetail("No background worker slot is free.  Until one is, expired leases in this database are not reclaimed; immich_jobs tries again every round.") :
			 errdetail("No background worker slot is free.  Until one is, immich_jobs cannot see whether this database has the extension, nor reclaim its expired leases if it has; it tries again every round."),
			 errhint("immich_jobs needs a background worker for its launcher and one for each database that has the extension: %d now.  Set max_worker_processes (%d now) to at least that plus what parallel query, logical replication and other extensions use, and restart the server.",
					 needed, max_worker_processes)));
}

/*
 * What happened since the last round, under the lock: what the reapers
 * found, which databases a CREATE EXTENSION names, and the slots nobody
 * needs any more.  stopped[i]: the reaper of reapers[i] has exited.
 */
static void
ij_launcher_news(const bool *stopped, TimestampTz now)
{
	/* a reaper that failed, or exited for DDL, is started again then */
	TimestampTz retry = TimestampTzPlusMilliseconds(now,
													Max(ij_reaper_interval,
														IJ_RETRY_MS));

	LWLockAcquire(ij_workers->lock, LW_EXCLUSIVE);

	/* news that found no free slot: whichever database it was, look again */
	if (ij_workers->check_all)
	{
		ij_workers->check_all = false;
		for (int i = 0; i < nreapers; i++)
		{
			if (reapers[i].ext == IJ_EXT_ABSENT)
				reapers[i].ext = IJ_EXT_UNKNOWN;
		}
	}

	for (int i = 0; i < nreapers; i++)
	{
		IjReaper   *r = &reapers[i];
		IjWorkerSlot *slot = ij_worker_slot(r->dboid, false);

		if (slot == NULL)
		{
			/* (a reaper of ours always has its slot: defensive) */
			if (stopped[i])
				r->next_start = retry;
			continue;
		}

		/* a reaper that runs or ran says what it found */
		if ((r->handle != NULL || stopped[i]) && slot->served)
			r->ext = IJ_EXT_INSTALLED;
		if (r->handle != NULL)
			continue;			/* its slot->check waits until it exits */
		if (stopped[i])
		{
			/* no extension: start nothing until a CREATE EXTENSION */
			if (slot->absent)
				r->ext = IJ_EXT_ABSENT;
			else
				r->next_start = retry;
		}

		/*
		 * A CREATE EXTENSION here committed since the last reaper was
		 * started, maybe after that reaper looked: serve the database now.
		 */
		if (slot->check)
		{
			r->ext = IJ_EXT_INSTALLED;
			slot->check = false;
		}
	}

	/*
	 * Free the slots that nobody uses: no reaper of ours may start there,
	 * none runs, and no DDL keeps one away.  A reaper's findings are in
	 * reapers[] by now, and news for a database that is not listed is of no
	 * use: when it is listed, its first reaper will look.
	 */
	for (int j = 0; j < ij_workers->nslots; j++)
	{
		IjWorkerSlot *slot = &ij_workers->slots[j];
		bool		ours = false;

		if (slot->dboid == InvalidOid || slot->pid != 0 ||
			slot->paused_until > now)
			continue;
		for (int i = 0; i < nreapers && !ours; i++)
			ours = reapers[i].dboid == slot->dboid &&
				reapers[i].handle != NULL;
		if (!ours)
			slot->dboid = InvalidOid;
	}

	LWLockRelease(ij_workers->lock);
}

/*
 * Notice the reapers that have exited (stopped[i] is set for each), and
 * stop those of databases no longer served.
 */
static void
ij_check_reapers(bool *stopped)
{
	for (int i = 0; i < nreapers; i++)
	{
		IjReaper   *r = &reapers[i];
		pid_t		pid;

		if (r->handle == NULL)
			continue;
		if (GetBackgroundWorkerPid(r->handle, &pid) == BGWH_STOPPED)
		{
			pfree(r->handle);
			r->handle = NULL;
			stopped[i] = true;
		}
		else if (!r->listed)
			TerminateBackgroundWorker(r->handle);
	}
}

/* forget the databases no longer served, once their reaper has gone */
static void
ij_forget_unlisted(void)
{
	int			n = 0;

	for (int i = 0; i < nreapers; i++)
	{
		if (reapers[i].listed || reapers[i].handle != NULL)
			reapers[n++] = reapers[i];
	}
	nreapers = n;
}

/*
 * A reaper that looks whether its database has the extension exits at
 * once if it has not: while one does, a worker slot is about to be free
 * and no slot is worth a warning.  Is one looking?
 */
static bool
ij_reaper_looking(void)
{
	for (int i = 0; i < nreapers; i++)
	{
		if (reapers[i].handle != NULL && reapers[i].ext == IJ_EXT_UNKNOWN)
			return true;
	}
	return false;
}

/*
 * Make the worker slot of r's database ready for a new reaper.  Returns
 * false if none is to start now: the database's reapers are paused, a
 * reaper runs there already, or no slot is left.
 *
 * A reaper may run that this launcher did not start (it started before
 * this launcher was restarted): then there is nothing to do.  Otherwise the
 * slot starts afresh for the reaper to fill in; news of a CREATE EXTENSION
 * before this point is news to it.
 */
static bool
ij_reaper_slot_ready(IjReaper *r, TimestampTz now)
{
	IjWorkerSlot *slot;
	bool		paused;

	LWLockAcquire(ij_workers->lock, LW_EXCLUSIVE);
	slot = ij_worker_slot(r->dboid, true);
	paused = slot == NULL || slot->paused_until > now || slot->pid != 0;
	if (!paused)
	{
		slot->absent = false;
		slot->served = false;
		slot->check = false;
	}
	LWLockRelease(ij_workers->lock);
	return !paused;
}

/*
 * One round of the launcher: stop the reapers of databases no longer
 * served, notice the ones that exited and the news, start the missing
 * ones.
 */
static void
ij_launcher_round(void)
{
	TimestampTz now;
	bool	   *stopped;
	bool		looking;

	ij_list_databases();
	now = GetCurrentTimestamp();

	stopped = palloc0(sizeof(bool) * (nreapers + 1));
	ij_check_reapers(stopped);
	ij_launcher_news(stopped, now);
	pfree(stopped);

	ij_forget_unlisted();
	looking = ij_reaper_looking();

	for (int i = 0; i < nreapers; i++)
	{
		IjReaper   *r = &reapers[i];

		if (!r->listed || r->handle != NULL || r->ext == IJ_EXT_ABSENT ||
			r->next_start > now)
			continue;
		if (!ij_reaper_slot_ready(r, now))
			continue;

		if (ij_start_reaper(r))
		{
			r->warned = false;
			if (r->ext == IJ_EXT_UNKNOWN)
				looking = true;
		}
		else
		{
			/* no worker slot: say so once, and try again next round */
			r->handle = NULL;
			if (!r->warned && !looking)
			{
				ij_warn_no_worker(r);
				r->warned = true;
			}
		}
	}
}

/* the launcher exits: nobody need set its latch */
static void
ij_launcher_detach(int code pg_attribute_unused(),
				   Datum arg pg_attribute_unused())
{
	LWLockAcquire(ij_workers->lock, LW_EXCLUSIVE);
	if (ij_workers->launcher == MyProc)
		ij_workers->launcher = NULL;
	LWLockRelease(ij_workers->lock);
}

void
ij_launcher_main(Datum main_arg pg_attribute_unused())
{
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, ij_sigterm);
	BackgroundWorkerUnblockSignals();

	/* no database: pg_database is a shared catalog */
	in_round = true;
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);
	in_round = false;
	pgstat_report_appname("immich_jobs launcher");

	/* CREATE EXTENSION sets our latch from now on */
	LWLockAcquire(ij_workers->lock, LW_EXCLUSIVE);
	ij_workers->launcher = MyProc;
	LWLockRelease(ij_workers->lock);
	before_shmem_exit(ij_launcher_detach, (Datum) 0);

	for (;;)
	{
		in_round = true;
		ij_launcher_round();
		in_round = false;

		/* reapers exiting set our latch too (bgw_notify_pid) */
		(void) WaitLatch(MyLatch,
						 WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 Max(ij_reaper_interval, 100),
						 PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		ij_worker_interrupts(1);
	}
}

/*
 * A reaper
 */

static Oid	reaper_dboid = InvalidOid;
static char reaper_dbname[NAMEDATALEN];

static void
ij_reaper_detach(int code pg_attribute_unused(), Datum arg pg_attribute_unused())
{
	IjWorkerSlot *slot;

	LWLockAcquire(ij_workers->lock, LW_EXCLUSIVE);
	slot = ij_worker_slot(reaper_dboid, false);
	if (slot != NULL && slot->pid == MyProcPid)
		slot->pid = 0;
	LWLockRelease(ij_workers->lock);
}

/* this reaper has told the launcher what it found */
static bool reaper_reported = false;

static void ij_reaper_report(bool installed);

/*
 * One round in the reaper's database.  Returns false if the extension is
 * not installed there.
 */
static bool
ij_reaper_round(void)
{
	Oid			extoid;
	bool		installed = false;
	int			reclaimed = 0;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, "immich_jobs: reclaiming expired leases");

	/* DROP EXTENSION waits for this round, and the next sees it gone */
	extoid = get_extension_oid("immich_jobs", true);
	if (OidIsValid(extoid))
	{
		LockDatabaseObject(ExtensionRelationId, extoid, 0, AccessShareLock);
		installed = get_extension_name(extoid) != NULL;
	}

	if (installed)
	{
		/* tell the launcher now, not after a first round that may be long */
		if (!reaper_reported)
			ij_reaper_report(true);
		ij_ensure_loaded();
		reclaimed = ij_reap_expired();
		(void) ij_promote_all_due();
		(void) ij_wake_stranded();
		ij_fold_completed_log();
		if (ij_finished_retention >= 0)
			(void) ij_prune_finished(ij_finished_retention);
	}

	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);

	if (reclaimed > 0)
		ereport(LOG,
				(errmsg_plural("immich_jobs reclaimed %d expired lease in database \"%s\"",
							   "immich_jobs reclaimed %d expired leases in database \"%s\"",
							   reclaimed, reclaimed, reaper_dbname)));
	return installed;
}

/*
 * A round that fails (a serialization failure, a lock timeout, a trigger
 * someone added) is logged and rolled back, and the reaper goes on: the
 * next round may well succeed, and a reaper that exits costs a backend start
 * and leaves leases unreclaimed until the launcher starts another.  Returns
 * false after an error (*installed is then true: try again).
 */
static bool
ij_reaper_round_safe(bool *installed)
{
	MemoryContext cxt = CurrentMemoryContext;
	volatile bool ok = true;

	PG_TRY();
	{
		round_cancellable = true;
		/* asked to leave before the round could be cancelled */
		if (ddl_stop)
			ereport(ERROR,
					(errcode(ERRCODE_QUERY_CANCELED),
					 errmsg("immich_jobs reaper asked to leave")));
		*installed = ij_reaper_round();
		round_cancellable = false;
	}
	PG_CATCH();
	{
		round_cancellable = false;
		HOLD_INTERRUPTS();
		MemoryContextSwitchTo(cxt);
		/* the cancel of a round asked to leave is no error to log */
		if (!ddl_stop || geterrcode() != ERRCODE_QUERY_CANCELED)
			EmitErrorReport();
		FlushErrorState();
		AbortOutOfAnyTransaction();
		pgstat_report_activity(STATE_IDLE, NULL);
		RESUME_INTERRUPTS();
		*installed = true;
		ok = false;
	}
	PG_END_TRY();
	return ok;
}

/*
 * Settings of the database (ALTER DATABASE ... SET) or of the server that
 * would make every round fail or hang: a reaper overrides them.
 */
static void
ij_reaper_settings(void)
{
	SetConfigOption("default_transaction_read_only", "off",
					PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("default_transaction_isolation", "read committed",
					PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("statement_timeout", "0", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("idle_in_transaction_session_timeout", "0",
					PGC_SUSET, PGC_S_OVERRIDE);
}

/* error context while a reaper connects */
static void
ij_connect_context(void *arg pg_attribute_unused())
{
	errcontext("immich_jobs reaper connecting to database %u; it tries again later",
			   reaper_dboid);
}

/*
 * Publish this reaper's pid in its database's slot before it connects.
 * Returns false if it must not run: DDL wants the database's reapers away,
 * or another reaper runs there (one reaper per database).
 */
static bool
ij_reaper_take_slot(void)
{
	IjWorkerSlot *slot;
	bool		paused;

	LWLockAcquire(ij_workers->lock, LW_EXCLUSIVE);
	slot = ij_worker_slot(reaper_dboid, false);
	paused = slot == NULL || slot->paused_until > GetCurrentTimestamp() ||
		slot->pid != 0;			/* one reaper per database */
	if (!paused)
		slot->pid = MyProcPid;
	LWLockRelease(ij_workers->lock);
	return !paused;
}

/*
 * Connect to the reaper's database, override the settings that would stop
 * its rounds, and remember the database's name.
 */
static void
ij_reaper_connect(void)
{
	ErrorContextCallback errcallback;

	/*
	 * Connecting takes the database's lock, which ALTER DATABASE ... RENAME
	 * holds to the end of its transaction: do not wait for it longer than
	 * IJ_CONNECT_LOCK_TIMEOUT (the ERROR ends this reaper, and the launcher
	 * tries again later), and let SIGTERM end the wait.
	 */
	SetConfigOption("lock_timeout", IJ_CONNECT_LOCK_TIMEOUT,
					PGC_SUSET, PGC_S_OVERRIDE);
	errcallback.callback = ij_connect_context;
	errcallback.arg = NULL;
	errcallback.previous = error_context_stack;
	error_context_stack = &errcallback;
	in_round = true;
	BackgroundWorkerInitializeConnectionByOid(reaper_dboid, InvalidOid, 0);
	in_round = false;
	error_context_stack = errcallback.previous;
	SetConfigOption("lock_timeout", "0", PGC_SUSET, PGC_S_OVERRIDE);
	ij_reaper_settings();
	pgstat_report_appname("immich_jobs reaper");

	StartTransactionCommand();
	strlcpy(reaper_dbname, get_database_name(reaper_dboid), NAMEDATALEN);
	CommitTransactionCommand();
}

/*
 * Tell the launcher what a round found: the extension is not there (then
 * it starts no reaper here until a CREATE EXTENSION, and this one exits),
 * or it is (a round that failed counts: we stay, and try again).
 */
static void
ij_reaper_report(bool installed)
{
	IjWorkerSlot *slot;

	reaper_reported = true;

	LWLockAcquire(ij_workers->lock, LW_EXCLUSIVE);
	slot = ij_worker_slot(reaper_dboid, false);
	if (slot != NULL)
	{
		if (installed)
			slot->served = true;
		else
			slot->absent = true;
	}
	LWLockRelease(ij_workers->lock);
	if (!installed)
		proc_exit(0);
}

/* a reaper: one database's background worker, a round at a time */
void
ij_reaper_main(Datum main_arg)
{
	reaper_dboid = DatumGetObjectId(main_arg);
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, ij_sigterm);
	pqsignal(SIGUSR2, ij_sigusr2);
	BackgroundWorkerUnblockSignals();

	/* publish our pid before connecting, unless DDL wants us away */
	if (!ij_reaper_take_slot())
		proc_exit(0);
	before_shmem_exit(ij_reaper_detach, (Datum) 0);

	ij_reaper_connect();
	if (ddl_stop)
		proc_exit(0);

	for (;;)
	{
		bool		installed;
		long		wait = ij_reaper_interval;

		in_round = true;
		if (!ij_reaper_round_safe(&installed))
			wait = Max(wait, IJ_RETRY_MS);
		in_round = false;
		if (ddl_stop)
			proc_exit(0);

		/* tell the launcher, once, that we serve the database; or exit */
		if (!installed || !reaper_reported)
			ij_reaper_report(installed);

		(void) WaitLatch(MyLatch,
						 WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 wait,
						 PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		ij_worker_interrupts(0);

		/* a reload may have taken this database out of immich_jobs.databases */
		if (!ij_serves_database(reaper_dbname))
			proc_exit(0);
	}
}

/*
 * DDL that needs a database to itself
 */

/*
 * Keep the launcher from starting a reaper for a database until `until`,
 * stop the one that runs, and wait until it has gone.
 */
static void
ij_stop_reaper(Oid dboid, TimestampTz until)
{
	IjWorkerSlot *slot;
	pid_t		pid = 0;
	TimestampTz deadline;

	LWLockAcquire(ij_workers->lock, LW_EXCLUSIVE);
	slot = ij_worker_slot(dboid, true);
	if (slot != NULL)
	{
		slot->paused_until = until;
		pid = slot->pid;
	}
	LWLockRelease(ij_workers->lock);
	if (pid == 0)
		return;

	(void) kill(pid, SIGUSR2);
	deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
										   IJ_STOP_WAIT_MS);
	for (;;)
	{
		LWLockAcquire(ij_workers->lock, LW_SHARED);
		slot = ij_worker_slot(dboid, false);
		pid = slot != NULL ? slot->pid : 0;
		LWLockRelease(ij_workers->lock);
		if (pid == 0 || GetCurrentTimestamp() > deadline)
			break;
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 10, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
}

/* let the launcher start a reaper again a little after the DDL ended */
static void
ij_resume_reaper(Oid dboid)
{
	IjWorkerSlot *slot;

	LWLockAcquire(ij_workers->lock, LW_EXCLUSIVE);
	slot = ij_worker_slot(dboid, false);
	if (slot != NULL)
		slot->paused_until =
			TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
										IJ_PAUSE_AFTER_MS);
	LWLockRelease(ij_workers->lock);
}

/* the value of a CREATE/ALTER DATABASE option, or NULL */
static char *
ij_db_option(List *options, const char *name)
{
	ListCell   *lc;

	foreach(lc, options)
	{
		DefElem    *def = (DefElem *) lfirst(lc);

		if (strcmp(def->defname, name) == 0 && def->arg != NULL)
			return defGetString(def);
	}
	return NULL;
}

/* the database a utility statement needs to itself, or InvalidOid */
static Oid
ij_ddl_database(Node *parsetree)
{
	const char *dbname = NULL;

	switch (nodeTag(parsetree))
	{
		case T_DropdbStmt:
			dbname = ((DropdbStmt *) parsetree)->dbname;
			break;
		case T_RenameStmt:
			if (((RenameStmt *) parsetree)->renameType == OBJECT_DATABASE)
				dbname = ((RenameStmt *) parsetree)->subname;
			break;
		case T_AlterDatabaseStmt:
			if (ij_db_option(((AlterDatabaseStmt *) parsetree)->options,
							 "tablespace") != NULL)
				dbname = ((AlterDatabaseStmt *) parsetree)->dbname;
			break;
		case T_CreatedbStmt:
			dbname = ij_db_option(((CreatedbStmt *) parsetree)->options,
								  "template");
			break;
		default:
			break;
	}
	return dbname != NULL ? get_database_oid(dbname, true) : InvalidOid;
}

static bool
ij_owns_database(Oid dboid)
{
#if PG_VERSION_NUM >= 160000
	return object_ownercheck(DatabaseRelationId, dboid, GetUserId());
#else
	return pg_database_ownercheck(dboid, GetUserId());
#endif
}

/*
 * CREATE EXTENSION: tell the launcher
 */

/*
 * News for the launcher from this transaction, given when it commits: a
 * database that may have the extension now (this one after CREATE
 * EXTENSION, a new one made from a template), or InvalidOid; and whether a
 * database may have become one to serve (ALTER DATABASE ... ALLOW_CONNECTIONS,
 * IS_TEMPLATE), which it lists at its next round.
 */
static Oid	news_dboid = InvalidOid;
static bool news_wake = false;

/*
 * Might the database have the extension after this statement, where it had
 * not before?  A CREATE EXTENSION of any extension may create ours
 * (CASCADE); COMMIT PREPARED may commit one.
 */
static bool
ij_may_create_extension(Node *parsetree)
{
	switch (nodeTag(parsetree))
	{
		case T_CreateExtensionStmt:
		case T_AlterExtensionStmt:	/* ALTER EXTENSION ... UPDATE */
			return true;
		case T_TransactionStmt:
			return ((TransactionStmt *) parsetree)->kind ==
				TRANS_STMT_COMMIT_PREPARED;
		default:
			return false;
	}
}

/*
 * The transaction that created the extension (or a database from a
 * template) committed: mark the database's slot, so that the launcher
 * serves it even if a reaper there found no extension a moment ago (or its
 * OID was a dropped database's), and wake the launcher.  No slot free: the
 * launcher looks at every database again.  (A CREATE EXTENSION undone by
 * ROLLBACK TO SAVEPOINT still counts: it costs one look.)
 */
static void
ij_worker_xact_callback(XactEvent event, void *arg pg_attribute_unused())
{
	IjWorkerSlot *slot;
	PGPROC	   *launcher;
	Oid			dboid = news_dboid;

	if (!OidIsValid(news_dboid) && !news_wake)
		return;
	if (event != XACT_EVENT_COMMIT)
	{
		/* aborted, or prepared: then COMMIT PREPARED has the news */
		if (event == XACT_EVENT_ABORT || event == XACT_EVENT_PREPARE ||
			event == XACT_EVENT_PARALLEL_ABORT)
		{
			news_dboid = InvalidOid;
			news_wake = false;
		}
		return;
	}
	news_dboid = InvalidOid;
	news_wake = false;

	LWLockAcquire(ij_workers->lock, LW_EXCLUSIVE);
	if (OidIsValid(dboid))
	{
		slot = ij_worker_slot(dboid, true);
		if (slot != NULL)
			slot->check = true;
		else
			ij_workers->check_all = true;
	}
	launcher = ij_workers->launcher;
	LWLockRelease(ij_workers->lock);
	if (launcher != NULL)
		SetLatch(&launcher->procLatch);
}

static void
ij_utility_hook(PlannedStmt *pstmt, const char *queryString,
				bool readOnlyTree, ProcessUtilityContext context,
				ParamListInfo params, QueryEnvironment *queryEnv,
				DestReceiver *dest, QueryCompletion *qc)
{
	Oid			dboid = ij_ddl_database(pstmt->utilityStmt);
	bool		may_create = ij_may_create_extension(pstmt->utilityStmt);
	bool		had_extension = false;

	/*
	 * Only for those allowed to run the command on that database (they own
	 * it), so that nobody else can keep its reaper away by trying.
	 */
	if (OidIsValid(dboid) &&
		(ij_workers == NULL || !ij_owns_database(dboid)))
		dboid = InvalidOid;

	/*
	 * News only when the extension was not there before the statement.
	 * (Not looked up before COMMIT PREPARED: on 18 the extension that it
	 * commits was then not seen after it, in this backend.)
	 */
	if (may_create && ij_workers != NULL && IsTransactionState() &&
		!IsA(pstmt->utilityStmt, TransactionStmt))
		had_extension = OidIsValid(get_extension_oid("immich_jobs", true));

	PG_TRY();
	{
		if (OidIsValid(dboid))
			ij_stop_reaper(dboid,
						   TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													   IJ_PAUSE_MAX_MS));
		if (prev_utility_hook)
			prev_utility_hook(pstmt, queryString, readOnlyTree, context,
							  params, queryEnv, dest, qc);
		else
			standard_ProcessUtility(pstmt, queryString, readOnlyTree,
									context, params, queryEnv, dest, qc);
	}
	PG_FINALLY();
	{
		if (OidIsValid(dboid))
			ij_resume_reaper(dboid);
	}
	PG_END_TRY();

	/* the statement succeeded: tell the launcher when it commits */
	if (ij_workers == NULL || !IsTransactionState())
		return;

	if (may_create && !had_extension &&
		OidIsValid(get_extension_oid("immich_jobs", true)))
		news_dboid = MyDatabaseId;
	else if (IsA(pstmt->utilityStmt, CreatedbStmt))
		news_dboid = get_database_oid(((CreatedbStmt *) pstmt->utilityStmt)->dbname,
									  true);
	else if (IsA(pstmt->utilityStmt, AlterDatabaseStmt))
		news_wake = true;
}

/* in every backend (the library is preloaded): the hook and its callback */
void
ij_install_utility_hook(void)
{
	prev_utility_hook = ProcessUtility_hook;
	ProcessUtility_hook = ij_utility_hook;
	RegisterXactCallback(ij_worker_xact_callback, NULL);
}
