/*-------------------------------------------------------------------------
 *
 * worker.c
 *	  The background workers: a launcher, and a reaper per database.
 *
 * The launcher starts with the server (library preloaded), once recovery
 * has finished: a hot standby runs none of this, and promotion starts it.
 * It is connected to no database.  Every round it lists the databases in
 * pg_database that immich_jobs.databases names (skipping templates and
 * databases that refuse connections) and makes sure each has a reaper.
 *
 * A reaper is a dynamic background worker connected to one database.  If
 * the extension is not installed there, it says so and exits; the launcher
 * tries again a few rounds later, so a CREATE EXTENSION is picked up within
 * a few reaper intervals.  Otherwise, every immich_jobs.reaper_interval it
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
 *	  preloaded) stops the database's reaper first, waits until it has gone,
 *	  and keeps the launcher from starting another until a few seconds after
 *	  the command.
 *
 * Shared state: one IjWorkerSlot per database the launcher has seen, under
 * IjWorkerShared->lock (an LWLock): hold it to read or change any slot.
 * A reaper publishes its pid in its slot before it connects to its database
 * and checks the slot's pause under the same lock, so the hook either sees
 * the reaper (and stops it) or the reaper sees the pause (and does not
 * start).
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

/* a database without the extension is looked at again after this many rounds */
#define IJ_ABSENT_ROUNDS	3

/* a reaper that failed is started again after this long at least */
#define IJ_RETRY_MS			5000

/* how long a reaper waits for its database's lock when it connects */
#define IJ_CONNECT_LOCK_TIMEOUT "5s"

typedef struct IjWorkerSlot
{
	Oid			dboid;			/* InvalidOid: the slot is free */
	pid_t		pid;			/* the reaper's, while it runs */
	bool		absent;			/* its last reaper found no extension */
	TimestampTz paused_until;	/* DDL wants no reaper here before this */
} IjWorkerSlot;

typedef struct IjWorkerShared
{
	LWLock	   *lock;
	int			nslots;
	IjWorkerSlot slots[FLEXIBLE_ARRAY_MEMBER];
} IjWorkerShared;

static IjWorkerShared *ij_workers = NULL;

static ProcessUtility_hook_type prev_utility_hook = NULL;

/* the launcher's own record of the reapers it started */
typedef struct IjReaper
{
	Oid			dboid;
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
					mul_size(max_worker_processes, sizeof(IjWorkerSlot)));
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
		ij_workers->nslots = max_worker_processes;
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
 * SIGTERM (shutdown, or the hook stopping a reaper): between rounds a worker
 * just leaves, quietly; during a round, which may wait for a lock, it dies
 * at once as any backend would.
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

/* the databases to serve, as a List of Oids */
static List *
ij_served_databases(void)
{
	List	   *dbs = NIL;
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tup;
	MemoryContext cxt = CurrentMemoryContext;

	StartTransactionCommand();
	(void) GetTransactionSnapshot();
	rel = table_open(DatabaseRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while (HeapTupleIsValid(tup = heap_getnext(scan, ForwardScanDirection)))
	{
		Form_pg_database db = (Form_pg_database) GETSTRUCT(tup);
		MemoryContext oldcxt;

		if (!db->datallowconn || db->datistemplate ||
#ifdef DATCONNLIMIT_INVALID_DB
			database_is_invalid_form(db) ||
#endif
			!ij_serves_database(NameStr(db->datname)))
			continue;
		oldcxt = MemoryContextSwitchTo(cxt);
		dbs = lappend_oid(dbs, db->oid);
		MemoryContextSwitchTo(oldcxt);
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	CommitTransactionCommand();
	return dbs;
}

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
	return &reapers[nreapers++];
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
 * One round of the launcher: stop the reapers of databases no longer
 * served, notice the ones that exited, start the missing ones.
 */
static void
ij_launcher_round(void)
{
	List	   *dbs = ij_served_databases();
	TimestampTz now = GetCurrentTimestamp();

	for (int i = 0; i < nreapers; i++)
	{
		IjReaper   *r = &reapers[i];
		pid_t		pid;

		if (r->handle == NULL)
			continue;
		if (GetBackgroundWorkerPid(r->handle, &pid) == BGWH_STOPPED)
		{
			bool		absent = false;
			IjWorkerSlot *slot;

			LWLockAcquire(ij_workers->lock, LW_SHARED);
			slot = ij_worker_slot(r->dboid, false);
			if (slot != NULL)
				absent = slot->absent;
			LWLockRelease(ij_workers->lock);

			/* no extension: look again a few rounds later; an error: later */
			pfree(r->handle);
			r->handle = NULL;
			r->next_start = TimestampTzPlusMilliseconds(now, absent ?
														IJ_ABSENT_ROUNDS * ij_reaper_interval :
														Max(ij_reaper_interval, IJ_RETRY_MS));
		}
		else if (!list_member_oid(dbs, r->dboid))
			TerminateBackgroundWorker(r->handle);
	}

	/* free the slots of databases no longer served, once nobody uses them */
	LWLockAcquire(ij_workers->lock, LW_EXCLUSIVE);
	for (int i = 0; i < ij_workers->nslots; i++)
	{
		IjWorkerSlot *slot = &ij_workers->slots[i];

		if (slot->dboid != InvalidOid && slot->pid == 0 &&
			slot->paused_until < now && !list_member_oid(dbs, slot->dboid))
			slot->dboid = InvalidOid;
	}
	LWLockRelease(ij_workers->lock);

	for (int i = 0; i < list_length(dbs); i++)
	{
		Oid			dboid = list_nth_oid(dbs, i);
		IjReaper   *r = ij_reaper_entry(dboid);
		IjWorkerSlot *slot;
		bool		paused;

		if (r->handle != NULL || r->next_start > now)
			continue;

		/*
		 * A reaper may run that this launcher did not start (it started
		 * before this launcher was restarted): then there is nothing to do.
		 */
		LWLockAcquire(ij_workers->lock, LW_EXCLUSIVE);
		slot = ij_worker_slot(dboid, true);
		paused = slot == NULL || slot->paused_until > now || slot->pid != 0;
		if (slot != NULL && !paused)
			slot->absent = false;
		LWLockRelease(ij_workers->lock);
		if (paused)
			continue;

		if (ij_start_reaper(r))
			r->warned = false;
		else
		{
			r->handle = NULL;
			r->next_start = TimestampTzPlusMilliseconds(now, 10 * 1000);
			if (!r->warned)
				ereport(WARNING,
						(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
						 errmsg("immich_jobs could not start a reaper for database %u",
								dboid),
						 errdetail("No background worker slot is free."),
						 errhint("Increase max_worker_processes.")));
			r->warned = true;
		}
	}
	list_free(dbs);
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
		*installed = ij_reaper_round();
	}
	PG_CATCH();
	{
		HOLD_INTERRUPTS();
		MemoryContextSwitchTo(cxt);
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

void
ij_reaper_main(Datum main_arg)
{
	IjWorkerSlot *slot;
	bool		paused;
	ErrorContextCallback errcallback;

	reaper_dboid = DatumGetObjectId(main_arg);
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, ij_sigterm);
	BackgroundWorkerUnblockSignals();

	/* publish our pid before connecting, unless DDL wants us away */
	LWLockAcquire(ij_workers->lock, LW_EXCLUSIVE);
	slot = ij_worker_slot(reaper_dboid, false);
	paused = slot == NULL || slot->paused_until > GetCurrentTimestamp() ||
		slot->pid != 0;			/* one reaper per database */
	if (!paused)
		slot->pid = MyProcPid;
	LWLockRelease(ij_workers->lock);
	if (paused)
		proc_exit(0);
	before_shmem_exit(ij_reaper_detach, (Datum) 0);

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

	for (;;)
	{
		bool		installed;
		long		wait = ij_reaper_interval;

		in_round = true;
		if (!ij_reaper_round_safe(&installed))
			wait = Max(wait, IJ_RETRY_MS);
		in_round = false;
		if (!installed)
		{
			LWLockAcquire(ij_workers->lock, LW_EXCLUSIVE);
			slot = ij_worker_slot(reaper_dboid, false);
			if (slot != NULL)
				slot->absent = true;
			LWLockRelease(ij_workers->lock);
			proc_exit(0);
		}

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

	(void) kill(pid, SIGTERM);
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

static void
ij_utility_hook(PlannedStmt *pstmt, const char *queryString,
				bool readOnlyTree, ProcessUtilityContext context,
				ParamListInfo params, QueryEnvironment *queryEnv,
				DestReceiver *dest, QueryCompletion *qc)
{
	Oid			dboid = ij_ddl_database(pstmt->utilityStmt);

	/*
	 * Only for those allowed to run the command on that database (they own
	 * it), so that nobody else can keep its reaper away by trying.
	 */
	if (OidIsValid(dboid) &&
		(ij_workers == NULL || !ij_owns_database(dboid)))
		dboid = InvalidOid;

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
}

void
ij_install_utility_hook(void)
{
	prev_utility_hook = ProcessUtility_hook;
	ProcessUtility_hook = ij_utility_hook;
}
