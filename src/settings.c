/*-------------------------------------------------------------------------
 *
 * settings.c
 *	  The extension's configuration parameters (GUCs).
 *
 * src/settings.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "nodes/pg_list.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/varlena.h"

#include "immich_jobs.h"

/* immich_jobs.max_queues: entries of the shared per-queue state */
int			ij_max_queues = 1024;

/* immich_jobs.reaper_interval: ms between two rounds of the reapers */
int			ij_reaper_interval = 1000;

/* immich_jobs.databases: "*", or a comma-separated list of names */
char	   *ij_databases = NULL;

/* immich_jobs.finished_retention: seconds failed/cancelled jobs are kept */
int			ij_finished_retention = 7 * 24 * 3600;

/* immich_jobs.synchronous_lease_commit: see commit.c */
bool		ij_synchronous_lease_commit = true;

/* immich_jobs.max_payload_size, immich_jobs.max_error_size (bytes) */
int			ij_max_payload_size = 1024 * 1024;
int			ij_max_error_size = 64 * 1024;

/*
 * immich_jobs.databases is "*" (every database that has the extension), a
 * comma-separated list of database names (quoted where needed, as in
 * search_path), or empty (no database).
 */
static bool
ij_check_databases(char **newval, void **extra pg_attribute_unused(),
				   GucSource source pg_attribute_unused())
{
	char	   *copy;
	List	   *names;
	bool		ok;

	if (strcmp(*newval, "*") == 0)
		return true;
	copy = pstrdup(*newval);
	ok = SplitGUCList(copy, ',', &names);
	if (!ok)
		GUC_check_errdetail("List syntax is invalid: give \"*\" or database names separated by commas.");
	list_free(names);
	pfree(copy);
	return ok;
}

/*
 * Is a database named by immich_jobs.databases?  ("*" names them all.)
 */
bool
ij_serves_database(const char *dbname)
{
	char	   *copy;
	List	   *names;
	ListCell   *lc;
	bool		found = false;

	if (ij_databases == NULL)
		return false;
	if (strcmp(ij_databases, "*") == 0)
		return true;
	copy = pstrdup(ij_databases);
	if (SplitGUCList(copy, ',', &names))
	{
		foreach(lc, names)
		{
			if (strcmp((char *) lfirst(lc), dbname) == 0)
				found = true;
		}
	}
	list_free(names);
	pfree(copy);
	return found;
}

/*
 * Settings that can change at any time (a reload).  Defined by every
 * process that loads the library, so that SHOW shows them.
 */
void
ij_define_settings(void)
{
	DefineCustomStringVariable("immich_jobs.databases",
							   "Databases whose expired leases the background workers reclaim.",
							   "\"*\" means every database in which the extension is installed; "
							   "otherwise a comma-separated list of database names; empty means none.",
							   &ij_databases,
							   "*",
							   PGC_SIGHUP,
							   0,
							   ij_check_databases,
							   NULL,
							   NULL);

	DefineCustomIntVariable("immich_jobs.reaper_interval",
							"Time between two rounds of the background workers.",
							"Each round reclaims expired leases, wakes workers for delayed jobs that came due, "
							"and prunes old finished jobs.",
							&ij_reaper_interval,
							1000,
							10,
							3600000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL,
							NULL,
							NULL);

	DefineCustomIntVariable("immich_jobs.finished_retention",
							"How long failed and cancelled jobs are kept before the background workers delete them.",
							"-1 keeps them until they are retried or cleared.",
							&ij_finished_retention,
							7 * 24 * 3600,
							-1,
							INT_MAX,
							PGC_SIGHUP,
							GUC_UNIT_S,
							NULL,
							NULL,
							NULL);

	DefineCustomIntVariable("immich_jobs.max_payload_size",
							"Largest payload a job may have.",
							"enqueue and enqueue_many refuse a job whose payload, stored as jsonb, is larger.",
							&ij_max_payload_size,
							1024 * 1024,
							1024,
							MaxAllocSize / 2,
							PGC_SUSET,
							GUC_UNIT_BYTE,
							NULL,
							NULL,
							NULL);

	DefineCustomIntVariable("immich_jobs.max_error_size",
							"Largest error text that fail may record.",
							NULL,
							&ij_max_error_size,
							64 * 1024,
							1024,
							MaxAllocSize / 2,
							PGC_SUSET,
							GUC_UNIT_BYTE,
							NULL,
							NULL,
							NULL);

	DefineCustomBoolVariable("immich_jobs.synchronous_lease_commit",
							 "Whether transactions that only lease jobs and end leases wait for the WAL flush at commit.",
							 "Off: a transaction whose only writes were made by claim, complete, complete_many, "
							 "complete_and_claim, fail, heartbeat and release commits as with synchronous_commit = off. "
							 "A crash may then lose its last changes: their jobs run again. "
							 "Needs the library in shared_preload_libraries.",
							 &ij_synchronous_lease_commit,
							 true,
							 PGC_USERSET,
							 0,
							 NULL,
							 NULL,
							 NULL);
}

/*
 * Settings that size shared memory: only meaningful, and only defined, when
 * the library is in shared_preload_libraries.
 */
void
ij_define_preload_settings(void)
{
	DefineCustomIntVariable("immich_jobs.max_queues",
							"Maximum number of queues, over all databases, whose admission state and counts are kept in shared memory.",
							NULL,
							&ij_max_queues,
							1024,
							16,
							65536,
							PGC_POSTMASTER,
							0,
							NULL,
							NULL,
							NULL);
}
