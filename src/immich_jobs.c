/*-------------------------------------------------------------------------
 *
 * immich_jobs.c
 *	  Module entry point of the immich_jobs extension.
 *
 * A durable job queue inside PostgreSQL for Immich: a job table leased
 * with SKIP LOCKED and fenced by lease tokens (lease.c), per-queue
 * admission, counts and wake-ups in shared memory (admission.c), queues and
 * their administration (queue.c), enqueueing (enqueue.c), every statement
 * in one place (plans.c), and the settings (settings.c).
 *
 * src/immich_jobs.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"
#include "utils/guc.h"

#include "immich_jobs.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

void
_PG_init(void)
{
	ij_define_settings();
	ij_register_xact_callbacks();

	if (process_shared_preload_libraries_in_progress)
	{
		ij_define_preload_settings();
		ij_shmem_request();
	}

#if PG_VERSION_NUM >= 150000
	MarkGUCPrefixReserved("immich_jobs");
#else
	EmitWarningsOnPlaceholders("immich_jobs");
#endif
}
