/*-------------------------------------------------------------------------
 *
 * queue.c
 *	  Queues and their administration: create_queue, alter_queue,
 *	  set_concurrency, pause_queue, resume_queue, drop_queue, retry_failed,
 *	  clear, drain, cancel, cancel_by_key, job_counts, and the counts behind
 *	  the queue_counts view.
 *
 * src/queue.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "commands/async.h"
#include "fmgr.h"
#include "funcapi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "storage/lmgr.h"

#include "immich_jobs.h"

PG_FUNCTION_INFO_V1(ij_create_queue);
PG_FUNCTION_INFO_V1(ij_alter_queue);
PG_FUNCTION_INFO_V1(ij_set_concurrency);
PG_FUNCTION_INFO_V1(ij_pause_queue);
PG_FUNCTION_INFO_V1(ij_resume_queue);
PG_FUNCTION_INFO_V1(ij_drop_queue);
PG_FUNCTION_INFO_V1(ij_retry_failed);
PG_FUNCTION_INFO_V1(ij_clear);
PG_FUNCTION_INFO_V1(ij_drain);
PG_FUNCTION_INFO_V1(ij_cancel);
PG_FUNCTION_INFO_V1(ij_cancel_by_key);
PG_FUNCTION_INFO_V1(ij_queue_counts);
PG_FUNCTION_INFO_V1(ij_job_counts);

/*
 * Read a queue's row (see IjRead).  Returns false if there is no such queue.
 */
bool
ij_lookup_queue(const char *name, IjQueue *queue, IjRead how)
{
	Datum		values[1];
	int			n;

	values[0] = CStringGetTextDatum(name);
	if (how == IJ_READ_LATEST)
		n = ij_execute_latest(IJ_PLAN_QUEUE_GET, values, NULL);
	else
		n = ij_execute(how == IJ_READ_LOCK ? IJ_PLAN_QUEUE_GET_LOCKED :
					   IJ_PLAN_QUEUE_GET, values, NULL, 1);
	if (n == 0)
		return false;
	ij_result_queue(0, name, queue);
	ij_remember_queue(queue);
	return true;
}

/* as ij_lookup_queue, but an unknown queue is an error */
void
ij_get_queue(const char *name, IjQueue *queue, IjRead how)
{
	if (!ij_lookup_queue(name, queue, how))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("queue \"%s\" does not exist", name)));
}

/*
 * Lock a queue (a lock on an object of our own, not on its row): enqueues
 * hold it shared, drop_queue exclusively.
 */
void
ij_lock_queue(int32 queue_id, LOCKMODE mode)
{
	LockDatabaseObject(ij_job_relid(), (Oid) queue_id, 0, mode);
}

/*
 * create_queue(queue_name, concurrency, lease_timeout, max_attempts,
 *				retry_backoff, if_not_exists)
 */
Datum
ij_create_queue(PG_FUNCTION_ARGS)
{
	char	   *name = ij_queue_name_arg(fcinfo, 0);
	Datum		values[5];

	ij_xact_uses_jobs();

	ij_require_arg(fcinfo, 1, "concurrency");
	ij_require_arg(fcinfo, 2, "lease_timeout");
	ij_require_arg(fcinfo, 3, "max_attempts");
	ij_require_arg(fcinfo, 4, "retry_backoff");
	ij_require_arg(fcinfo, 5, "if_not_exists");
	ij_check_int_range("concurrency", PG_GETARG_INT32(1), 1, IJ_CONCURRENCY_MAX);
	ij_check_interval_range("lease_timeout", PG_GETARG_INTERVAL_P(2), 1, 7);
	ij_check_int_range("max_attempts", PG_GETARG_INT32(3), 1, IJ_ATTEMPTS_MAX);
	ij_check_interval_range("retry_backoff", PG_GETARG_INTERVAL_P(4), 0, 7);

	values[0] = CStringGetTextDatum(name);
	values[1] = PG_GETARG_DATUM(1);
	values[2] = PG_GETARG_DATUM(2);
	values[3] = PG_GETARG_DATUM(3);
	values[4] = PG_GETARG_DATUM(4);

	SPI_connect();
	ij_ensure_loaded();
	if (ij_execute(IJ_PLAN_QUEUE_INSERT, values, NULL, 1) == 1)
	{
		IjQueue		queue;

		queue.queue_id = ij_result_int32(0, ij_result_col("queue_id"));
		queue.concurrency = PG_GETARG_INT32(1);
		queue.max_attempts = PG_GETARG_INT32(3);
		queue.paused = false;
		queue.lease_timeout = *PG_GETARG_INTERVAL_P(2);
		strlcpy(queue.name, name, sizeof(queue.name));
		ij_queue_created(&queue);
	}
	else if (PG_GETARG_BOOL(5))
		ereport(NOTICE,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("queue \"%s\" already exists, skipping", name)));
	else
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("queue \"%s\" already exists", name)));
	SPI_finish();
	PG_RETURN_VOID();
}

/*
 * Change a queue's settings (NULL: leave as is).  Raising the concurrency
 * may admit claims that are waiting, so it always notifies; so does
 * resume_queue.  The settings are read by every claim, so the change takes
 * effect at the next claim after this transaction commits.
 */
static void
ij_alter(FunctionCallInfo fcinfo, const char *name, Datum concurrency,
		 bool concurrency_null, int argbase)
{
	Datum		values[5];
	char		nulls[6] = "     ";
	IjQueue		queue;

	values[0] = CStringGetTextDatum(name);
	values[1] = concurrency;
	nulls[1] = concurrency_null ? 'n' : ' ';
	for (int i = 2; i < 5; i++)
	{
		int			argno = argbase + i - 2;

		if (argbase < 0 || PG_ARGISNULL(argno))
		{
			values[i] = (Datum) 0;
			nulls[i] = 'n';
		}
		else
			values[i] = PG_GETARG_DATUM(argno);
	}

	SPI_connect();
	/* the new settings go to shared memory at commit: it must have the queue */
	ij_ensure_loaded();
	if (ij_execute(IJ_PLAN_QUEUE_ALTER, values, nulls, 1) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("queue \"%s\" does not exist", name)));
	ij_result_queue(0, name, &queue);
	ij_queue_settings_changed(&queue);
	if (!concurrency_null)
	{
		/* counted as freeing slots, and a notification whatever the waiters */
		ij_wake(queue.queue_id, name, IJ_WAKE_SLOTS);
		Async_Notify(IJ_CHANNEL, name);
	}
	SPI_finish();
}

/*
 * alter_queue(queue_name, concurrency, lease_timeout, max_attempts,
 *			   retry_backoff)
 */
Datum
ij_alter_queue(PG_FUNCTION_ARGS)
{
	char	   *name = ij_queue_name_arg(fcinfo, 0);

	ij_xact_uses_jobs();

	if (!PG_ARGISNULL(1))
		ij_check_int_range("concurrency", PG_GETARG_INT32(1), 1,
						   IJ_CONCURRENCY_MAX);
	if (!PG_ARGISNULL(2))
		ij_check_interval_range("lease_timeout", PG_GETARG_INTERVAL_P(2),
								1, 7);
	if (!PG_ARGISNULL(3))
		ij_check_int_range("max_attempts", PG_GETARG_INT32(3), 1,
						   IJ_ATTEMPTS_MAX);
	if (!PG_ARGISNULL(4))
		ij_check_interval_range("retry_backoff", PG_GETARG_INTERVAL_P(4),
								0, 7);

	/* argument order of the statement: concurrency, lease, attempts, backoff */
	ij_alter(fcinfo, name, PG_ARGISNULL(1) ? (Datum) 0 : PG_GETARG_DATUM(1),
			 PG_ARGISNULL(1), 2);
	PG_RETURN_VOID();
}

/* set_concurrency(queue_name, concurrency) */
Datum
ij_set_concurrency(PG_FUNCTION_ARGS)
{
	char	   *name = ij_queue_name_arg(fcinfo, 0);

	ij_xact_uses_jobs();

	ij_require_arg(fcinfo, 1, "concurrency");
	ij_check_int_range("concurrency", PG_GETARG_INT32(1), 1,
					   IJ_CONCURRENCY_MAX);
	ij_alter(fcinfo, name, PG_GETARG_DATUM(1), false, -1);
	PG_RETURN_VOID();
}

static void
ij_set_paused(const char *name, bool paused)
{
	Datum		values[2];
	IjQueue		queue;

	values[0] = CStringGetTextDatum(name);
	values[1] = BoolGetDatum(paused);
	SPI_connect();
	ij_ensure_loaded();
	if (ij_execute(IJ_PLAN_QUEUE_PAUSE, values, NULL, 1) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("queue \"%s\" does not exist", name)));
	ij_result_queue(0, name, &queue);
	ij_queue_settings_changed(&queue);
	if (!paused)
	{
		ij_wake(queue.queue_id, name, IJ_WAKE_SLOTS);
		Async_Notify(IJ_CHANNEL, name);
	}
	SPI_finish();
}

/* pause_queue(queue_name) */
Datum
ij_pause_queue(PG_FUNCTION_ARGS)
{
	ij_xact_uses_jobs();
	ij_set_paused(ij_queue_name_arg(fcinfo, 0), true);
	PG_RETURN_VOID();
}

/* resume_queue(queue_name) */
Datum
ij_resume_queue(PG_FUNCTION_ARGS)
{
	ij_xact_uses_jobs();
	ij_set_paused(ij_queue_name_arg(fcinfo, 0), false);
	PG_RETURN_VOID();
}

/*
 * Delete a queue's jobs in the given states, recording the counts.
 * Returns how many were deleted.
 */
static int64
ij_delete_jobs(int32 queue_id, const char *states)
{
	int			nstates = strlen(states);
	Datum	   *elems = palloc(sizeof(Datum) * nstates);
	Datum		values[2];
	int64		total = 0;
	int			nrows;
	int			state_col;
	int			n_col;

	for (int i = 0; i < nstates; i++)
		elems[i] = CharGetDatum(states[i]);
	values[0] = Int32GetDatum(queue_id);
	values[1] = PointerGetDatum(construct_array(elems, nstates, CHAROID,
												1, true, TYPALIGN_CHAR));
	nrows = ij_execute(IJ_PLAN_DELETE_JOBS, values, NULL, 0);
	state_col = ij_result_col("state");
	n_col = ij_result_col("n");
	for (int i = 0; i < nrows; i++)
	{
		bool		isnull;
		char		state = DatumGetChar(ij_result(i, state_col, &isnull));
		int64		n = ij_result_int64(i, n_col);

		ij_count_move(queue_id, state, '\0', n);
		total += n;
	}
	return total;
}

/* drop_queue(queue_name, force) */
Datum
ij_drop_queue(PG_FUNCTION_ARGS)
{
	char	   *name = ij_queue_name_arg(fcinfo, 0);
	bool		force;
	IjQueue		queue;
	Datum		values[1];

	ij_xact_uses_jobs();

	ij_require_arg(fcinfo, 1, "force");
	force = PG_GETARG_BOOL(1);

	SPI_connect();
	ij_ensure_loaded();
	ij_get_queue(name, &queue, IJ_READ_LOCK);
	/* wait for enqueues in flight, and keep new ones out */
	ij_lock_queue(queue.queue_id, AccessExclusiveLock);
	values[0] = Int32GetDatum(queue.queue_id);
	ij_locks_waiting(queue.queue_id);

	/*
	 * Without force, delete all but the active jobs, then look for active
	 * ones with a fresh snapshot: deleting waited for any claim that had
	 * leased one of the queue's jobs, so every lease is visible now.
	 */
	(void) ij_delete_jobs(queue.queue_id, force ? "wdafx" : "wdfx");
	if (!force)
	{
		int64		active;

		ij_execute_latest(IJ_PLAN_ACTIVE_COUNT, values, NULL);
		active = ij_result_int64(0, ij_result_col("active"));
		if (active > 0)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_IN_USE),
					 errmsg("cannot drop queue \"%s\" because it has active jobs",
							name),
					 errdetail_plural("%lld job is active.",
									  "%lld jobs are active.",
									  active, (long long) active),
					 errhint("Wait for them to finish, cancel them, or use force => true.")));
	}
	ij_execute(IJ_PLAN_DELETE_LOG, values, NULL, 0);
	ij_execute(IJ_PLAN_QUEUE_DELETE, values, NULL, 0);
	ij_queue_dropped(queue.queue_id);
	SPI_finish();
	PG_RETURN_VOID();
}

/* retry_failed(queue_name) */
Datum
ij_retry_failed(PG_FUNCTION_ARGS)
{
	char	   *name = ij_queue_name_arg(fcinfo, 0);
	IjQueue		queue;
	Datum		values[1];
	int64		n;

	ij_xact_uses_jobs();

	SPI_connect();
	ij_ensure_loaded();
	ij_get_queue(name, &queue, IJ_READ);
	values[0] = Int32GetDatum(queue.queue_id);
	ij_execute(IJ_PLAN_RETRY_FAILED, values, NULL, 1);
	n = ij_result_int64(0, ij_result_col("retried"));
	if (n > 0)
	{
		ij_count_move(queue.queue_id, IJ_FAILED, IJ_WAITING, n);
		ij_cursor_reset(queue.queue_id);
		ij_wake(queue.queue_id, queue.name, IJ_WAKE_JOBS);
	}
	SPI_finish();
	PG_RETURN_INT64(n);
}

/*
 * Remove the jobs of a queue in the given states (codes), or with codes
 * NULL reset its completed count.  Returns how many.
 */
static int64
ij_clear_states(const char *name, const char *codes)
{
	IjQueue		queue;
	int64		n;

	SPI_connect();
	ij_ensure_loaded();
	/* the row lock orders us with the folding of the completion log */
	ij_get_queue(name, &queue, codes == NULL ? IJ_READ_LOCK : IJ_READ);
	if (codes != NULL)
	{
		ij_locks_waiting(queue.queue_id);
		n = ij_delete_jobs(queue.queue_id, codes);
	}
	else
	{
		Datum		values[1];

		values[0] = Int32GetDatum(queue.queue_id);
		ij_execute(IJ_PLAN_QUEUE_RESET_COMPLETED, values, NULL, 1);
		n = ij_result_int64(0, ij_result_col("completed"));
		ij_count_add(queue.queue_id, IJ_COUNT_COMPLETED, -n);
	}
	SPI_finish();
	return n;
}

/* clear(queue_name, state) */
Datum
ij_clear(PG_FUNCTION_ARGS)
{
	char	   *name = ij_queue_name_arg(fcinfo, 0);
	char	   *state;
	const char *codes = NULL;

	ij_xact_uses_jobs();

	ij_require_arg(fcinfo, 1, "state");
	state = text_to_cstring(PG_GETARG_TEXT_PP(1));
	if (strcmp(state, "waiting") == 0)
		codes = "wd";
	else if (strcmp(state, "delayed") == 0)
		codes = "d";
	else if (strcmp(state, "failed") == 0)
		codes = "f";
	else if (strcmp(state, "cancelled") == 0)
		codes = "x";
	else if (strcmp(state, "active") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("cannot clear active jobs"),
				 errhint("Cancel active jobs one by one with immich_jobs.cancel(job_id).")));
	else if (strcmp(state, "completed") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid job state \"%s\"", state),
				 errhint("Valid states are \"waiting\" (with \"delayed\"), \"delayed\", \"failed\", \"cancelled\" and \"completed\".")));

	PG_RETURN_INT64(ij_clear_states(name, codes));
}

/*
 * drain(queue_name, delayed): remove the waiting jobs, and the delayed ones
 * too only if delayed (BullMQ's drain()).
 */
Datum
ij_drain(PG_FUNCTION_ARGS)
{
	char	   *name = ij_queue_name_arg(fcinfo, 0);

	ij_xact_uses_jobs();

	ij_require_arg(fcinfo, 1, "delayed");
	PG_RETURN_INT64(ij_clear_states(name, PG_GETARG_BOOL(1) ? "wd" : "w"));
}

/* cancel(job_id) */
Datum
ij_cancel(PG_FUNCTION_ARGS)
{
	int64		job_id;
	Datum		values[1];
	bool		cancelled = false;

	ij_xact_uses_jobs();

	ij_require_arg(fcinfo, 0, "job_id");
	job_id = PG_GETARG_INT64(0);
	values[0] = Int64GetDatum(job_id);

	SPI_connect();
	ij_ensure_loaded();
	/* we are about to lock a job that may be waiting: say so first */
	if (ij_execute(IJ_PLAN_JOB_LOOKUP, values, NULL, 1) == 1)
		ij_locks_waiting(ij_result_int32(0, ij_result_col("queue_id")));
	if (ij_execute(IJ_PLAN_CANCEL, values, NULL, 1) == 1)
	{
		int32		queue_id = ij_result_int32(0, ij_result_col("queue_id"));
		bool		isnull;
		char		old = DatumGetChar(ij_result(0, ij_result_col("state"),
												 &isnull));

		ij_count_move(queue_id, old, IJ_CANCELLED, 1);
		if (old == IJ_ACTIVE)
			ij_wake(queue_id, NULL, IJ_WAKE_SLOTS);
		cancelled = true;
	}
	else if (ij_execute(IJ_PLAN_JOB_LOOKUP, values, NULL, 1) == 0)
	{
		/* not kept: completed and gone, or never enqueued at all? */
		ij_execute(IJ_PLAN_LAST_JOB_ID, NULL, NULL, 1);
		if (job_id < 1 ||
			job_id > ij_result_int64(0, ij_result_col("last_job_id")))
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("job %lld does not exist", (long long) job_id)));
	}
	SPI_finish();
	PG_RETURN_BOOL(cancelled);
}

/*
 * cancel_by_key(queue_name, dedup_key): cancel the queue's waiting, delayed
 * and failed jobs that have the key, so that it no longer blocks a new job.
 * Active jobs go on.  Returns the payload of the newest job cancelled, NULL
 * if none was.
 */
Datum
ij_cancel_by_key(PG_FUNCTION_ARGS)
{
	char	   *name = ij_queue_name_arg(fcinfo, 0);
	IjQueue		queue;
	Datum		values[2];
	Datum		payload = (Datum) 0;
	int64		newest = 0;
	int			n;
	int			job_col;
	int			state_col;
	int			payload_col;

	ij_xact_uses_jobs();

	ij_require_arg(fcinfo, 1, "dedup_key");
	values[1] = PointerGetDatum(PG_GETARG_TEXT_PP(1));

	SPI_connect();
	ij_ensure_loaded();
	ij_get_queue(name, &queue, IJ_READ);
	values[0] = Int32GetDatum(queue.queue_id);
	/* we are about to lock jobs that may be waiting: say so first */
	ij_locks_waiting(queue.queue_id);
	n = ij_execute(IJ_PLAN_CANCEL_KEY, values, NULL, 0);
	job_col = ij_result_col("job_id");
	state_col = ij_result_col("state");
	payload_col = ij_result_col("payload");
	for (int i = 0; i < n; i++)
	{
		int64		job_id = ij_result_int64(i, job_col);
		bool		isnull;
		char		old = DatumGetChar(ij_result(i, state_col, &isnull));

		ij_count_move(queue.queue_id, old, IJ_CANCELLED, 1);
		if (job_id > newest)
		{
			newest = job_id;
			payload = SPI_datumTransfer(ij_result(i, payload_col, &isnull),
										false, -1);
		}
	}
	SPI_finish();
	if (n == 0)
		PG_RETURN_NULL();
	PG_RETURN_DATUM(payload);
}

/* a queue's counts, from shared memory if they are kept there, else counted */
static void
ij_read_counts(int32 queue_id, int64 *counts)
{
	Datum		args[1];

	if (ij_shared_counts(queue_id, counts))
		return;
	args[0] = Int32GetDatum(queue_id);
	ij_execute(IJ_PLAN_COUNTS_ONE, args, NULL, 1);
	for (int c = 0; c < IJ_NUM_COUNTS; c++)
		counts[c] = ij_result_int64(0, ij_result_col(ij_count_names[c]));
}

/*
 * _queue_counts(queue_id): the counts behind the queue_counts view, from
 * shared memory if they are kept there, else counted.
 */
Datum
ij_queue_counts(PG_FUNCTION_ARGS)
{
	int32		queue_id = PG_GETARG_INT32(0);
	TupleDesc	tupdesc;
	int64		counts[IJ_NUM_COUNTS];
	Datum		values[5];
	bool		nulls[5] = {false};

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");

	SPI_connect();
	ij_read_counts(queue_id, counts);
	SPI_finish();

	values[0] = Int64GetDatum(counts[IJ_COUNT_ACTIVE]);
	values[1] = Int64GetDatum(counts[IJ_COUNT_WAITING]);
	values[2] = Int64GetDatum(counts[IJ_COUNT_DELAYED]);
	values[3] = Int64GetDatum(counts[IJ_COUNT_FAILED]);
	values[4] = Int64GetDatum(counts[IJ_COUNT_COMPLETED]);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}

/*
 * job_counts(queue_name): a queue's counts as BullMQ's getJobCounts() gives
 * them, which is what Immich shows: the waiting jobs of a paused queue are
 * counted as paused, not waiting.
 */
Datum
ij_job_counts(PG_FUNCTION_ARGS)
{
	char	   *name = ij_queue_name_arg(fcinfo, 0);
	IjQueue		queue;
	TupleDesc	tupdesc;
	int64		counts[IJ_NUM_COUNTS];
	Datum		values[6];
	bool		nulls[6] = {false};
	int64		waiting;

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");

	SPI_connect();
	ij_get_queue(name, &queue, IJ_READ);
	ij_read_counts(queue.queue_id, counts);
	SPI_finish();

	waiting = counts[IJ_COUNT_WAITING];
	values[0] = Int64GetDatum(counts[IJ_COUNT_ACTIVE]);
	values[1] = Int64GetDatum(counts[IJ_COUNT_COMPLETED]);
	values[2] = Int64GetDatum(counts[IJ_COUNT_FAILED]);
	values[3] = Int64GetDatum(counts[IJ_COUNT_DELAYED]);
	values[4] = Int64GetDatum(queue.paused ? 0 : waiting);
	values[5] = Int64GetDatum(queue.paused ? waiting : 0);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}
