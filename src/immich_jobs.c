/*-------------------------------------------------------------------------
 *
 * immich_jobs.c
 *	  Module entry point of the immich_jobs extension.
 *
 * A durable job queue inside PostgreSQL for Immich: a job table leased
 * with SKIP LOCKED and fenced by lease tokens (lease.c), queues and their
 * administration (queue.c), enqueueing (enqueue.c, bulk.c), the checks of
 * the functions' arguments (args.c), every statement in one place
 * (plans.c), the lookups of the extension's objects (catalog.c), how
 * lease-only transactions commit (commit.c), the background workers that
 * reclaim expired leases (worker.c), and the settings (settings.c).
 *
 * Per-queue state in shared memory, in layers that each use only the ones
 * before: the table of entries (shared.c, shared.h), each transaction's
 * changes to it, applied at commit (xact.c, xact.h), the loaders that fill
 * it after a start (loader.c), and what is built on them: admission and
 * the claim cursor (admission.c), reading a queue's settings and counts
 * (lookup.c), and wake-ups (wakeup.c).
 *
 * Shared memory exists only when the library is preloaded; this file asks
 * for it and hands each part its share.
 *
 * src/immich_jobs.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/guc.h"

#include "immich_jobs.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

#if PG_VERSION_NUM >= 150000
static shmem_request_hook_type prev_shmem_request_hook = NULL;
#endif
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

/* one LWLock for the per-queue state, one for the workers' slots */
#define IJ_NUM_LWLOCKS 2

static void
ij_request_shmem(void)
{
	RequestAddinShmemSpace(add_size(ij_shared_shmem_size(),
									ij_worker_shmem_size()));
	RequestNamedLWLockTranche("immich_jobs", IJ_NUM_LWLOCKS);
}

#if PG_VERSION_NUM >= 150000
static void
ij_shmem_request_hook(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	ij_request_shmem();
}
#endif

static void
ij_shmem_startup_hook(void)
{
	LWLockPadded *locks;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	locks = GetNamedLWLockTranche("immich_jobs");
	ij_shared_shmem_init(&locks[0].lock);
	ij_worker_shmem_init(&locks[1].lock);
	LWLockRelease(AddinShmemInitLock);
}

void
_PG_init(void)
{
	ij_define_settings();
	ij_register_xact_callbacks();
	ij_register_commit_callback();

	if (process_shared_preload_libraries_in_progress)
	{
		ij_define_preload_settings();
#if PG_VERSION_NUM >= 150000
		prev_shmem_request_hook = shmem_request_hook;
		shmem_request_hook = ij_shmem_request_hook;
#else
		ij_request_shmem();
#endif
		prev_shmem_startup_hook = shmem_startup_hook;
		shmem_startup_hook = ij_shmem_startup_hook;
		ij_install_utility_hook();
		/* pg_upgrade's servers (-b) must run nothing but the upgrade */
		if (!IsBinaryUpgrade)
			ij_register_launcher();
	}

#if PG_VERSION_NUM >= 150000
	MarkGUCPrefixReserved("immich_jobs");
#else
	EmitWarningsOnPlaceholders("immich_jobs");
#endif
}
