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

#include "utils/guc.h"

#include "immich_jobs.h"

/* immich_jobs.max_queues: entries of the shared per-queue state */
int			ij_max_queues = 1024;

/*
 * Settings that can be set at any time.  Defined by every process that loads
 * the library.
 */
void
ij_define_settings(void)
{
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
