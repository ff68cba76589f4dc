/*-------------------------------------------------------------------------
 *
 * immich_jobs.h
 *	  Declarations shared by the files of the immich_jobs extension.
 *
 * src/immich_jobs.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef IMMICH_JOBS_H
#define IMMICH_JOBS_H

#include "executor/spi.h"
#include "storage/lockdefs.h"
#include "storage/lwlock.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"

#define IJ_SCHEMA			"immich_jobs"
#define IJ_CHANNEL			"immich_jobs"
#define IJ_QUEUE_NAME_MAX	63
#define IJ_JOB_NAME_MAX		255
#define IJ_KEY_MAX			255
#define IJ_CONCURRENCY_MAX	10000
#define IJ_ATTEMPTS_MAX		1000
#define IJ_BATCH_SIZE		1000	/* rows enqueue_many writes at once */

/* job.state codes */
#define IJ_WAITING		'w'
#define IJ_DELAYED		'd'
#define IJ_ACTIVE		'a'
#define IJ_FAILED		'f'
#define IJ_CANCELLED	'x'

/* the per-queue job counts kept in shared memory */
typedef enum IjCount
{
	IJ_COUNT_WAITING,
	IJ_COUNT_DELAYED,
	IJ_COUNT_ACTIVE,
	IJ_COUNT_FAILED,
	IJ_COUNT_CANCELLED,
	IJ_COUNT_COMPLETED,
	IJ_NUM_COUNTS
} IjCount;

/* what a wake-up is for: runnable jobs, or room to run them */
typedef enum IjWakeKind
{
	IJ_WAKE_JOBS,
	IJ_WAKE_SLOTS
} IjWakeKind;

/* a queue's row, as read by ij_lookup_queue() */
typedef struct IjQueue
{
	int32		queue_id;
	int32		concurrency;
	int32		max_attempts;
	bool		paused;
	Interval	lease_timeout;
	char		name[IJ_QUEUE_NAME_MAX + 1];
} IjQueue;

/* a position in claim order: (-priority, job_id); see doc/claim-cursor.md */
typedef struct IjPos
{
	int64		np;
	int64		id;
} IjPos;

/* the outcome of asking for admission (see ij_admit) */
typedef struct IjAdmission
{
	bool		shared;			/* decided in shared memory */
	int			granted;		/* slots this claim may lease */
	int			raised;			/* what it added to the queue's reservations */
	int64		own_delta;		/* this transaction's net change of active jobs */
	int64		own_reserved;	/* and its reservations, before the claim */
	bool		promote;		/* the queue has delayed jobs */
	uint64		job_wake_seq;	/* wake-up sequence seen before the scan */
	bool		self_notify;	/* a waker raced with us: notify ourselves */
	IjPos		start;			/* where the claim's scan starts */
	uint64		cursor_version; /* the cursor's version when read */
} IjAdmission;

/* settings.c */
extern int	ij_max_queues;
extern int	ij_reaper_interval;
extern char *ij_databases;
extern int	ij_finished_retention;
extern bool ij_synchronous_lease_commit;
extern int	ij_max_payload_size;
extern int	ij_max_error_size;
extern void ij_define_settings(void);
extern void ij_define_preload_settings(void);

/* commit.c */
extern void ij_xact_uses_jobs(void);
extern void ij_lease_call_begin(void);
extern void ij_lease_call_end(void);
extern void ij_register_commit_callback(void);

/* catalog.c */
extern Oid	ij_job_relid(void);
extern Oid	ij_catalog_relid(const char *name);
extern char *ij_queue_name_by_id(int32 queue_id);

/* shared.c (and shared.h, for the files that use the table itself) */
extern Size ij_shared_shmem_size(void);
extern void ij_shared_shmem_init(LWLock *lock);
extern bool ij_shmem_active(void);
extern const IjPos ij_pos_start;

/* xact.c (and xact.h) */
extern void ij_register_xact_callbacks(void);
extern void ij_queue_created(const IjQueue *queue);
extern void ij_queue_settings_changed(const IjQueue *queue);
extern void ij_queue_dropped(int32 queue_id);
extern void ij_count_move(int32 queue_id, char from, char to, int64 n);
extern void ij_count_add(int32 queue_id, IjCount count, int64 n);

/* loader.c */
extern void ij_ensure_loaded(void);
extern void ij_ensure_queue_loaded(int32 queue_id);

/* admission.c */
extern void ij_admit(const IjQueue *queue, int want, IjAdmission *adm);
extern void ij_admit_done(const IjQueue *queue, IjAdmission *adm, int used,
						  int32 last_priority, int64 last_job_id);
extern void ij_cursor_lower(int32 queue_id, int32 priority, int64 job_id);
extern void ij_cursor_reset(int32 queue_id);
extern void ij_locks_waiting(int32 queue_id);

/* lookup.c */
extern void ij_remember_queue(const IjQueue *queue);
extern bool ij_shared_queue(const char *name, IjQueue *queue);
extern bool ij_shared_counts(int32 queue_id, int64 *counts);

/* wakeup.c */
extern void ij_wake(int32 queue_id, const char *queue_name, IjWakeKind kind);
extern int	ij_wake_stranded(void);

/* args.c */
extern void ij_check_queue_name(const char *name);
extern void ij_require_arg(FunctionCallInfo fcinfo, int argno,
						   const char *argname);
extern void ij_check_int_range(const char *argname, int32 value,
							   int32 lo, int32 hi);
extern void ij_check_run_at(TimestampTz run_at);
extern void ij_check_size(const char *what, Size size, int limit,
						  const char *setting);
extern void ij_check_interval_range(const char *argname, Interval *value,
									int64 lo_seconds, int32 hi_days);
extern char *ij_queue_name_arg(FunctionCallInfo fcinfo, int argno);

/* queue.c */
/* how ij_get_queue reads the queue's row */
typedef enum IjRead
{
	IJ_READ,					/* with the statement's snapshot */
	IJ_READ_LATEST,				/* with the latest snapshot, even in REPEATABLE READ */
	IJ_READ_LOCK				/* and lock it until the end of the transaction */
} IjRead;

extern bool ij_lookup_queue(const char *name, IjQueue *queue, IjRead how);
extern void ij_get_queue(const char *name, IjQueue *queue, IjRead how);
extern void ij_lock_queue(int32 queue_id, LOCKMODE mode);

/* plans.c */
typedef enum IjPlanId
{
	IJ_PLAN_QUEUE_GET,
	IJ_PLAN_QUEUE_GET_LOCKED,
	IJ_PLAN_QUEUE_NAME,
	IJ_PLAN_QUEUE_INSERT,
	IJ_PLAN_QUEUE_ALTER,
	IJ_PLAN_QUEUE_PAUSE,
	IJ_PLAN_QUEUE_DELETE,
	IJ_PLAN_QUEUE_RESET_COMPLETED,
	IJ_PLAN_ACTIVE_COUNT,
	IJ_PLAN_COUNTS_ALL,
	IJ_PLAN_COUNTS_QUEUE,
	IJ_PLAN_COUNTS_ONE,
	IJ_PLAN_JOB_INSERT,
	IJ_PLAN_JOB_INSERT_DEDUP,
	IJ_PLAN_JOB_FIND_DEDUP,
	IJ_PLAN_JOB_INSERT_KEPT,
	IJ_PLAN_JOB_FIND_KEPT,
	IJ_PLAN_JOB_ID_TAKEN,
	IJ_PLAN_PROMOTE,
	IJ_PLAN_PROMOTE_ALL,
	IJ_PLAN_PRUNE,
	IJ_PLAN_CLAIM,
	IJ_PLAN_COMPLETE,
	IJ_PLAN_COMPLETE_MANY,
	IJ_PLAN_FAIL,
	IJ_PLAN_HEARTBEAT,
	IJ_PLAN_RELEASE,
	IJ_PLAN_REAP,
	IJ_PLAN_FOLD_LOG,
	IJ_PLAN_DELETE_LOG,
	IJ_PLAN_DELETE_JOBS,
	IJ_PLAN_RETRY_FAILED,
	IJ_PLAN_JOB_LOOKUP,
	IJ_PLAN_CANCEL,
	IJ_PLAN_CANCEL_KEY,
	IJ_PLAN_SKIP_TOKENS,
	IJ_PLAN_LAST_JOB_ID,
	IJ_NUM_PLANS
} IjPlanId;

extern int	ij_execute(IjPlanId id, Datum *values, const char *nulls,
					   long tcount);
extern int	ij_execute_latest(IjPlanId id, Datum *values, const char *nulls);
extern Datum ij_result(int row, int col, bool *isnull);
extern int64 ij_result_int64(int row, int col);
extern int32 ij_result_int32(int row, int col);
extern int	ij_result_col(const char *name);
extern void ij_result_queue(int row, const char *name, IjQueue *queue);
extern const char *const ij_count_names[IJ_NUM_COUNTS];

/* worker.c */
extern Size ij_worker_shmem_size(void);
extern void ij_worker_shmem_init(LWLock *lock);
extern void ij_register_launcher(void);
extern void ij_install_utility_hook(void);
extern bool ij_serves_database(const char *dbname);

/* bulk.c */
typedef struct IjBulk IjBulk;
extern IjBulk *ij_bulk_begin(Oid relid);
extern int64 ij_bulk_add(IjBulk *bulk, int32 queue_id, char state,
						 int32 priority, TimestampTz run_at,
						 int32 max_attempts, text *name, Jsonb *payload);
extern void ij_bulk_flush(IjBulk *bulk);
extern void ij_bulk_end(IjBulk *bulk);

/* lease.c */
extern int	ij_reap_expired(void);
extern void ij_fold_completed_log(void);
extern int	ij_promote_all_due(void);
extern int	ij_prune_finished(int retention_seconds);
extern int	ij_promote_due(int32 queue_id, const char *queue_name);

#endif							/* IMMICH_JOBS_H */
