/*-------------------------------------------------------------------------
 *
 * lease.c
 *	  Leasing jobs and ending leases: claim, complete, complete_many,
 *	  complete_and_claim, fail, heartbeat, release and reap.
 *
 * Fencing: every statement that ends or extends a lease matches the job's
 * id and its current lease_token together, under the row lock its UPDATE or
 * DELETE takes (a job has a token only while it is active).  A token that is
 * no longer current (the lease was reclaimed, cancelled, completed, or given
 * back) matches no row, so the call changes nothing and returns false or
 * NULL.
 *
 * src/lease.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "commands/async.h"
#include "fmgr.h"
#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/tuplestore.h"

#include "immich_jobs.h"

PG_FUNCTION_INFO_V1(ij_claim);
PG_FUNCTION_INFO_V1(ij_complete);
PG_FUNCTION_INFO_V1(ij_complete_many);
PG_FUNCTION_INFO_V1(ij_complete_and_claim);
PG_FUNCTION_INFO_V1(ij_fail);
PG_FUNCTION_INFO_V1(ij_heartbeat);
PG_FUNCTION_INFO_V1(ij_release);
PG_FUNCTION_INFO_V1(ij_reap);

/* set up a materialized result set; returns its tuplestore */
static Tuplestorestate *
ij_init_srf(FunctionCallInfo fcinfo)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;

#if PG_VERSION_NUM >= 150000
	InitMaterializedSRF(fcinfo, 0);
#else
	TupleDesc	tupdesc;
	MemoryContext oldcxt;

	if (rsinfo == NULL || !IsA(rsinfo, ReturnSetInfo) ||
		!(rsinfo->allowedModes & SFRM_Materialize))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("materialize mode required, but it is not allowed in this context")));
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	oldcxt = MemoryContextSwitchTo(rsinfo->econtext->ecxt_per_query_memory);
	rsinfo->returnMode = SFRM_Materialize;
	rsinfo->setDesc = CreateTupleDescCopy(tupdesc);
	rsinfo->setResult = tuplestore_begin_heap(true, false, work_mem);
	MemoryContextSwitchTo(oldcxt);
#endif
	return rsinfo->setResult;
}

/*
 * Admission without shared memory: the caller has locked the queue's row,
 * so claims of this queue take turns; count the active jobs with a snapshot
 * that sees every committed claim.
 */
static int
ij_admit_unshared(const IjQueue *queue, int want)
{
	Datum		values[1];
	int64		active;

	if (queue->paused)
		return 0;
	values[0] = Int32GetDatum(queue->queue_id);
	ij_execute_latest(IJ_PLAN_ACTIVE_COUNT, values, NULL);
	active = ij_result_int64(0, ij_result_col("active"));
	return (int) Max(0, Min(want, queue->concurrency - active));
}

/* make a queue's due delayed jobs waiting; returns how many */
int
ij_promote_due(int32 queue_id, const char *queue_name)
{
	Datum		values[1];
	int			n;

	values[0] = Int32GetDatum(queue_id);
	n = ij_execute(IJ_PLAN_PROMOTE, values, NULL, 0);
	if (n > 0)
	{
		ij_count_move(queue_id, IJ_DELAYED, IJ_WAITING, n);
		ij_cursor_reset(queue_id);
		ij_wake(queue_id, queue_name, IJ_WAKE_JOBS);
	}
	return n;
}

/* the worker_id argument argno, checked */
static text *
ij_worker_id_arg(FunctionCallInfo fcinfo, int argno)
{
	text	   *worker_id;

	ij_require_arg(fcinfo, argno, "worker_id");
	worker_id = PG_GETARG_TEXT_PP(argno);
	if (VARSIZE_ANY_EXHDR(worker_id) > IJ_KEY_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("worker_id must have at most %d bytes", IJ_KEY_MAX)));
	return worker_id;
}

/*
 * Look up the queue a claim admits by.  Admission follows the settings
 * committed last, whatever the isolation level: a claim in an older
 * REPEATABLE READ snapshot must not admit by a concurrency or a pause that
 * has since changed.  Shared memory has them (then a claim that is refused
 * runs no statement at all); else read the queue's row with the latest
 * snapshot, or lock it without the preload.  *connected says whether the
 * caller is inside SPI; this connects only when it must (and leaves it to
 * the caller to finish).
 */
static void
ij_claim_queue(const char *queue_name, IjQueue *queue, bool *connected)
{
	if (ij_shared_queue(queue_name, queue))
		return;
	if (!*connected)
		SPI_connect();
	*connected = true;
	ij_ensure_loaded();
	ij_get_queue(queue_name, queue,
				 ij_shmem_active() ? IJ_READ_LATEST : IJ_READ_LOCK);
	/* a queue restored or copied after the database was loaded */
	ij_ensure_queue_loaded(queue->queue_id);
}

/*
 * Lease up to max_jobs jobs of a queue (looked up by ij_claim_queue) to a
 * worker, adding a row per job to the result set; returns how many.
 * *connected as for ij_claim_queue.
 */
static int
ij_claim_jobs(FunctionCallInfo fcinfo, IjQueue *queue, text *worker_id,
			  int max_jobs, bool *connected)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	IjAdmission adm;
	int			used = 0;
	int32		last_priority = 0;
	int64		last_job_id = 0;

	ij_admit(queue, max_jobs, &adm);
	if (!adm.shared)
	{
		/* no shared state for this queue: take turns on its row */
		if (!*connected)
			SPI_connect();
		*connected = true;
		if (ij_shmem_active())
		{
			char		name[IJ_QUEUE_NAME_MAX + 1];

			strlcpy(name, queue->name, sizeof(name));
			ij_get_queue(name, queue, IJ_READ_LOCK);

			/*
			 * A late loader may have given the queue its entry while we
			 * waited for the row; none can while we hold it.  Admit where
			 * the others do.
			 */
			ij_admit(queue, max_jobs, &adm);
		}
		if (!adm.shared)
			adm.granted = ij_admit_unshared(queue, max_jobs);
	}

	if (adm.granted > 0)
	{
		Datum		values[6];
		int			job_col;
		int			priority_col;

		if (!*connected)
			SPI_connect();
		*connected = true;

		/* promoted jobs may sort before the cursor: scan from the head */
		if (adm.promote && ij_promote_due(queue->queue_id, queue->name) > 0)
			adm.start = ij_pos_start;
		values[0] = Int32GetDatum(queue->queue_id);
		values[1] = Int32GetDatum(adm.granted);
		values[2] = IntervalPGetDatum(&queue->lease_timeout);
		values[3] = PointerGetDatum(worker_id);
		values[4] = Int64GetDatum(adm.start.np);
		values[5] = Int64GetDatum(adm.start.id);
		used = ij_execute(IJ_PLAN_CLAIM, values, NULL, 0);
		job_col = ij_result_col("job_id") - 1;
		priority_col = ij_result_col("priority") - 1;
		for (int i = 0; i < used; i++)
		{
			Datum		row[7];
			bool		nulls[7];

			/*
			 * Copied whole, by position: the statement's first six columns
			 * are claim()'s result columns, in their order; the seventh,
			 * priority, is only for the cursor and is not returned.
			 */
			heap_deform_tuple(SPI_tuptable->vals[i], SPI_tuptable->tupdesc,
							  row, nulls);
			tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc,
								 row, nulls);
			last_job_id = DatumGetInt64(row[job_col]);
			last_priority = DatumGetInt32(row[priority_col]);
		}
		ij_count_move(queue->queue_id, IJ_WAITING, IJ_ACTIVE, used);
	}
	ij_admit_done(queue, &adm, used, last_priority, last_job_id);
	if (adm.self_notify)
		Async_Notify(IJ_CHANNEL, queue->name);
	return used;
}

/* claim(queue_name, worker_id, max_jobs) */
Datum
ij_claim(PG_FUNCTION_ARGS)
{
	char	   *queue_name = ij_queue_name_arg(fcinfo, 0);
	text	   *worker_id = ij_worker_id_arg(fcinfo, 1);
	IjQueue		queue;
	bool		connected = false;

	ij_require_arg(fcinfo, 2, "max_jobs");
	ij_check_int_range("max_jobs", PG_GETARG_INT32(2), 1, IJ_CONCURRENCY_MAX);
	ij_init_srf(fcinfo);

	ij_lease_call_begin();
	ij_claim_queue(queue_name, &queue, &connected);
	(void) ij_claim_jobs(fcinfo, &queue, worker_id, PG_GETARG_INT32(2),
						 &connected);
	if (connected)
		SPI_finish();
	ij_lease_call_end();
	return (Datum) 0;
}

/*
 * n leases ended in the given state: update the counts, wake who may wait
 * (for a slot, unless wake_slots is false: the caller decides that itself).
 */
static void
ij_leases_ended(int32 queue_id, char state, int64 n, bool wake_slots)
{
	ij_count_move(queue_id, IJ_ACTIVE, state, n);
	if (wake_slots)
		ij_wake(queue_id, NULL, IJ_WAKE_SLOTS);
	if (state == IJ_WAITING)
	{
		ij_cursor_reset(queue_id);
		ij_wake(queue_id, NULL, IJ_WAKE_JOBS);
	}
}

static void
ij_lease_ended(int32 queue_id, char state, int64 n)
{
	ij_leases_ended(queue_id, state, n, true);
}

/* complete(job_id, lease_token) */
Datum
ij_complete(PG_FUNCTION_ARGS)
{
	Datum		values[2];
	bool		done = false;

	ij_require_arg(fcinfo, 0, "job_id");
	ij_require_arg(fcinfo, 1, "lease_token");
	values[0] = PG_GETARG_DATUM(0);
	values[1] = PG_GETARG_DATUM(1);

	ij_lease_call_begin();
	SPI_connect();
	ij_ensure_loaded();
	if (ij_execute(IJ_PLAN_COMPLETE, values, NULL, 1) == 1)
	{
		ij_lease_ended(ij_result_int32(0, ij_result_col("queue_id")), 'c', 1);
		done = true;
	}
	SPI_finish();
	ij_lease_call_end();
	PG_RETURN_BOOL(done);
}

typedef struct IjLeasePair
{
	int64		id;
	int64		token;
} IjLeasePair;

static int
ij_cmp_pair(const void *a, const void *b)
{
	const IjLeasePair *x = (const IjLeasePair *) a;
	const IjLeasePair *y = (const IjLeasePair *) b;

	if (x->id != y->id)
		return (x->id > y->id) - (x->id < y->id);
	return (x->token > y->token) - (x->token < y->token);
}

/*
 * The pairs in job_id order: completing them then locks their rows in the
 * order every bulk change of jobs does (see plans.c), whatever the plan, so
 * a completion cannot deadlock with drop_queue(force => true).  *id_values
 * and *nids get the ids, sorted.
 */
static void
ij_sort_pairs(ArrayType **ids, ArrayType **tokens, Datum **id_values, int *nids)
{
	Datum	   *id_elems;
	Datum	   *token_elems;
	int			n;
	int			ntokens;
	IjLeasePair *pairs;
	bool		sorted = true;

	deconstruct_array(*ids, INT8OID, sizeof(int64), FLOAT8PASSBYVAL,
					  TYPALIGN_DOUBLE, &id_elems, NULL, &n);
	*id_values = id_elems;
	*nids = n;
	for (int i = 1; i < n && sorted; i++)
		sorted = DatumGetInt64(id_elems[i - 1]) <= DatumGetInt64(id_elems[i]);
	if (sorted)
		return;
	deconstruct_array(*tokens, INT8OID, sizeof(int64), FLOAT8PASSBYVAL,
					  TYPALIGN_DOUBLE, &token_elems, NULL, &ntokens);
	Assert(ntokens == n);
	pairs = palloc(sizeof(IjLeasePair) * n);
	for (int i = 0; i < n; i++)
	{
		pairs[i].id = DatumGetInt64(id_elems[i]);
		pairs[i].token = DatumGetInt64(token_elems[i]);
	}
	qsort(pairs, n, sizeof(IjLeasePair), ij_cmp_pair);
	for (int i = 0; i < n; i++)
	{
		id_elems[i] = Int64GetDatum(pairs[i].id);
		token_elems[i] = Int64GetDatum(pairs[i].token);
	}
	*ids = construct_array(id_elems, n, INT8OID, sizeof(int64),
						   FLOAT8PASSBYVAL, TYPALIGN_DOUBLE);
	*tokens = construct_array(token_elems, n, INT8OID, sizeof(int64),
							  FLOAT8PASSBYVAL, TYPALIGN_DOUBLE);
	pfree(pairs);
}

/*
 * The job_ids and lease_tokens arguments, starting at argno, checked and
 * sorted by job_id; *id_values and *nids get the ids.
 */
static void
ij_lease_pairs_args(FunctionCallInfo fcinfo, int argno,
					ArrayType **ids, ArrayType **tokens,
					Datum **id_values, int *nids)
{
	ij_require_arg(fcinfo, argno, "job_ids");
	ij_require_arg(fcinfo, argno + 1, "lease_tokens");
	*ids = PG_GETARG_ARRAYTYPE_P(argno);
	*tokens = PG_GETARG_ARRAYTYPE_P(argno + 1);
	if (ARR_NDIM(*ids) > 1 || ARR_NDIM(*tokens) > 1 ||
		ArrayGetNItems(ARR_NDIM(*ids), ARR_DIMS(*ids)) !=
		ArrayGetNItems(ARR_NDIM(*tokens), ARR_DIMS(*tokens)))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("job_ids and lease_tokens must be one-dimensional arrays of the same length")));
	if (array_contains_nulls(*ids) || array_contains_nulls(*tokens))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("job_ids and lease_tokens must not contain nulls")));
	ij_sort_pairs(ids, tokens, id_values, nids);
}

static int
ij_cmp_int64(const void *a, const void *b)
{
	int64		x = *(const int64 *) a;
	int64		y = *(const int64 *) b;

	return (x > y) - (x < y);
}

/*
 * Complete the jobs of the pairs (ids[i], tokens[i]) whose token is the
 * job's current lease.  Returns how many; *done gets their ids, sorted, in
 * memory that outlives SPI_finish(); *freed how many of them were of queue
 * own_queue_id, whose slot wake-up is left to the caller (a claim may reuse
 * those slots).  The caller is inside SPI.
 */
static int
ij_complete_pairs(ArrayType *ids, ArrayType *tokens, int32 own_queue_id,
				  int64 **done, int64 *freed)
{
	Datum		values[2];
	int			n;
	int64	   *keys;
	int			job_col;
	int			queue_col;

	values[0] = PointerGetDatum(ids);
	values[1] = PointerGetDatum(tokens);
	n = ij_execute(IJ_PLAN_COMPLETE_MANY, values, NULL, 0);
	*done = (int64 *) SPI_palloc(sizeof(int64) * Max(n, 1));
	*freed = 0;
	if (n == 0)
		return 0;

	/*
	 * Update the counts once per queue: sort by queue, then job.  Read every
	 * row first, as waking may run statements of its own.
	 */
	keys = (int64 *) palloc(sizeof(int64) * 2 * n);
	job_col = ij_result_col("job_id");
	queue_col = ij_result_col("queue_id");
	for (int i = 0; i < n; i++)
	{
		(*done)[i] = ij_result_int64(i, job_col);
		keys[2 * i] = ij_result_int32(i, queue_col);
		keys[2 * i + 1] = (*done)[i];
	}
	qsort(*done, n, sizeof(int64), ij_cmp_int64);
	qsort(keys, n, 2 * sizeof(int64), ij_cmp_int64);
	for (int i = 0; i < n;)
	{
		int			j = i;
		int32		queue_id = (int32) keys[2 * i];

		while (j < n && keys[2 * j] == keys[2 * i])
			j++;
		if (queue_id == own_queue_id)
			*freed = j - i;
		ij_leases_ended(queue_id, 'c', j - i, queue_id != own_queue_id);
		i = j;
	}
	pfree(keys);
	return n;
}

/* complete_many(job_ids, lease_tokens) */
Datum
ij_complete_many(PG_FUNCTION_ARGS)
{
	ArrayType  *ids;
	ArrayType  *tokens;
	int64	   *done;
	int64		freed;
	int			n;
	Datum	   *id_values;
	int			nids;

	ij_lease_pairs_args(fcinfo, 0, &ids, &tokens, &id_values, &nids);

	ij_lease_call_begin();
	SPI_connect();
	ij_ensure_loaded();
	n = ij_complete_pairs(ids, tokens, 0, &done, &freed);
	SPI_finish();
	ij_lease_call_end();
	PG_RETURN_INT64(n);
}

/*
 * complete_and_claim(queue_name, worker_id, max_jobs, job_ids, lease_tokens)
 *
 * complete_many, then claim, in one call and one transaction.  The claim
 * may reuse the slots the completions free in its queue (see admission.c);
 * only the slots it leaves free wake the claims that wait for one.  Returns
 * the jobs leased, then a row per pair whose job was not completed (its
 * token is not the job's current lease), with only job_id set.
 */
Datum
ij_complete_and_claim(PG_FUNCTION_ARGS)
{
	char	   *queue_name = ij_queue_name_arg(fcinfo, 0);
	text	   *worker_id = ij_worker_id_arg(fcinfo, 1);
	int32		max_jobs;
	ArrayType  *ids;
	ArrayType  *tokens;
	ReturnSetInfo *rsinfo;
	IjQueue		queue;
	int64	   *done;
	int64		freed;
	int			ndone;
	int			used = 0;
	bool		connected = true;
	Datum	   *id_values;
	int			nids;

	ij_require_arg(fcinfo, 2, "max_jobs");
	max_jobs = PG_GETARG_INT32(2);
	ij_check_int_range("max_jobs", max_jobs, 0, IJ_CONCURRENCY_MAX);
	ij_lease_pairs_args(fcinfo, 3, &ids, &tokens, &id_values, &nids);
	ij_init_srf(fcinfo);
	rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;

	ij_lease_call_begin();
	SPI_connect();
	ij_ensure_loaded();
	/* an unknown queue is an error, also when nothing is claimed */
	if (max_jobs > 0)
		ij_claim_queue(queue_name, &queue, &connected);
	else if (!ij_shared_queue(queue_name, &queue))
		ij_get_queue(queue_name, &queue, IJ_READ);
	ndone = ij_complete_pairs(ids, tokens, queue.queue_id, &done, &freed);
	if (max_jobs > 0)
		used = ij_claim_jobs(fcinfo, &queue, worker_id, max_jobs, &connected);
	if (freed > used)
		ij_wake(queue.queue_id, queue.name, IJ_WAKE_SLOTS);
	SPI_finish();

	/* the pairs that completed nothing */
	for (int i = 0; i < nids; i++)
	{
		int64		id = DatumGetInt64(id_values[i]);
		Datum		row[6] = {0};
		bool		nulls[6] = {false, true, true, true, true, true};

		if (bsearch(&id, done, ndone, sizeof(int64), ij_cmp_int64) != NULL)
			continue;
		row[0] = Int64GetDatum(id);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, row, nulls);
	}
	ij_lease_call_end();
	return (Datum) 0;
}

/* fail(job_id, lease_token, error, retry_in) */
Datum
ij_fail(PG_FUNCTION_ARGS)
{
	Datum		values[4];
	char		nulls[5] = "    ";
	char		state = '\0';

	ij_require_arg(fcinfo, 0, "job_id");
	ij_require_arg(fcinfo, 1, "lease_token");
	if (!PG_ARGISNULL(2))
		ij_check_size("error", VARSIZE_ANY_EXHDR(PG_GETARG_TEXT_PP(2)),
					  ij_max_error_size, "immich_jobs.max_error_size");
	if (!PG_ARGISNULL(3))
		ij_check_interval_range("retry_in", PG_GETARG_INTERVAL_P(3), 0, 7);
	for (int i = 0; i < 4; i++)
	{
		values[i] = PG_ARGISNULL(i) ? (Datum) 0 : PG_GETARG_DATUM(i);
		nulls[i] = PG_ARGISNULL(i) ? 'n' : ' ';
	}

	ij_lease_call_begin();
	SPI_connect();
	ij_ensure_loaded();
	if (ij_execute(IJ_PLAN_FAIL, values, nulls, 1) == 1)
	{
		bool		isnull;

		state = DatumGetChar(ij_result(0, ij_result_col("state"), &isnull));
		ij_lease_ended(ij_result_int32(0, ij_result_col("queue_id")), state, 1);
	}
	SPI_finish();
	ij_lease_call_end();

	if (state == '\0')
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(state == IJ_FAILED ? "failed" : "retrying"));
}

/* heartbeat(job_id, lease_token, extend_by) */
Datum
ij_heartbeat(PG_FUNCTION_ARGS)
{
	Datum		values[3];
	char		nulls[4] = "   ";
	bool		found;
	TimestampTz expires = 0;

	ij_require_arg(fcinfo, 0, "job_id");
	ij_require_arg(fcinfo, 1, "lease_token");
	if (!PG_ARGISNULL(2))
		ij_check_interval_range("extend_by", PG_GETARG_INTERVAL_P(2), 1, 7);
	values[0] = PG_GETARG_DATUM(0);
	values[1] = PG_GETARG_DATUM(1);
	values[2] = PG_ARGISNULL(2) ? (Datum) 0 : PG_GETARG_DATUM(2);
	nulls[2] = PG_ARGISNULL(2) ? 'n' : ' ';

	ij_lease_call_begin();
	SPI_connect();
	found = ij_execute(IJ_PLAN_HEARTBEAT, values, nulls, 1) == 1;
	if (found)
	{
		bool		isnull;

		expires = DatumGetTimestampTz(ij_result(0,
												ij_result_col("lease_expires_at"),
												&isnull));
	}
	SPI_finish();
	ij_lease_call_end();

	if (!found)
		PG_RETURN_NULL();
	PG_RETURN_TIMESTAMPTZ(expires);
}

/* release(job_id, lease_token, run_at) */
Datum
ij_release(PG_FUNCTION_ARGS)
{
	Datum		values[3];
	char		nulls[4] = "   ";
	bool		found;

	ij_require_arg(fcinfo, 0, "job_id");
	ij_require_arg(fcinfo, 1, "lease_token");
	if (!PG_ARGISNULL(2))
		ij_check_run_at(PG_GETARG_TIMESTAMPTZ(2));
	values[0] = PG_GETARG_DATUM(0);
	values[1] = PG_GETARG_DATUM(1);
	values[2] = PG_ARGISNULL(2) ? (Datum) 0 : PG_GETARG_DATUM(2);
	nulls[2] = PG_ARGISNULL(2) ? 'n' : ' ';

	ij_lease_call_begin();
	SPI_connect();
	ij_ensure_loaded();
	found = ij_execute(IJ_PLAN_RELEASE, values, nulls, 1) == 1;
	if (found)
	{
		bool		isnull;

		char		state = DatumGetChar(ij_result(0, ij_result_col("state"),
												   &isnull));

		ij_lease_ended(ij_result_int32(0, ij_result_col("queue_id")), state, 1);
	}
	SPI_finish();
	ij_lease_call_end();
	PG_RETURN_BOOL(found);
}

static int
ij_cmp_int32(const void *a, const void *b)
{
	int32		x = *(const int32 *) a;
	int32		y = *(const int32 *) b;

	return (x > y) - (x < y);
}

/*
 * Reclaim every expired lease, as reap() and the background worker do:
 * back to waiting, or failed when that was the last attempt.  Leases that a
 * complete() or fail() is ending right now are locked and skipped: that call
 * wins.  Returns how many were reclaimed.  The caller is inside SPI.
 */
int
ij_reap_expired(void)
{
	int			n;
	int64	   *keys;
	int			nkeys = 0;
	int			queue_col;
	int			state_col;

	n = ij_execute(IJ_PLAN_REAP, NULL, NULL, 0);
	if (n == 0)
		return 0;

	/* one key per reclaimed job: queue_id * 2 + (1 if back to waiting) */
	keys = (int64 *) palloc(sizeof(int64) * n);
	queue_col = ij_result_col("queue_id");
	state_col = ij_result_col("state");
	for (int i = 0; i < n; i++)
	{
		bool		isnull;
		int32		queue_id = ij_result_int32(i, queue_col);
		char		state = DatumGetChar(ij_result(i, state_col, &isnull));

		ij_count_move(queue_id, IJ_ACTIVE, state, 1);
		if (state == IJ_WAITING)
			ij_cursor_reset(queue_id);
		keys[nkeys++] = (int64) queue_id * 2 + (state == IJ_WAITING ? 1 : 0);
	}
	qsort(keys, nkeys, sizeof(int64), ij_cmp_int64);
	for (int i = 0; i < nkeys; i++)
	{
		if (i > 0 && keys[i] == keys[i - 1])
			continue;
		ij_wake((int32) (keys[i] / 2), NULL, IJ_WAKE_SLOTS);
		if (keys[i] % 2 == 1)
			ij_wake((int32) (keys[i] / 2), NULL, IJ_WAKE_JOBS);
	}
	pfree(keys);
	return n;
}

/*
 * Make the due delayed jobs of every queue waiting, and wake whoever waits
 * for them, as the background worker does.  Returns how many.
 */
int
ij_promote_all_due(void)
{
	int			n;
	int32	   *queue_ids;
	int			queue_col;

	n = ij_execute(IJ_PLAN_PROMOTE_ALL, NULL, NULL, 0);
	if (n == 0)
		return 0;
	queue_ids = (int32 *) palloc(sizeof(int32) * n);
	queue_col = ij_result_col("queue_id");
	for (int i = 0; i < n; i++)
		queue_ids[i] = ij_result_int32(i, queue_col);
	qsort(queue_ids, n, sizeof(int32), ij_cmp_int32);
	for (int i = 0; i < n;)
	{
		int			j = i;

		while (j < n && queue_ids[j] == queue_ids[i])
			j++;
		ij_count_move(queue_ids[i], IJ_DELAYED, IJ_WAITING, j - i);
		ij_cursor_reset(queue_ids[i]);
		ij_wake(queue_ids[i], NULL, IJ_WAKE_JOBS);
		i = j;
	}
	pfree(queue_ids);
	return n;
}

/*
 * Delete failed and cancelled jobs that finished more than retention
 * seconds ago.  Returns how many.
 */
int
ij_prune_finished(int retention)
{
	Datum		values[1];
	int			n;
	int			queue_col;
	int			state_col;

	values[0] = Float8GetDatum((double) retention);
	n = ij_execute(IJ_PLAN_PRUNE, values, NULL, 0);
	if (n == 0)
		return 0;
	queue_col = ij_result_col("queue_id");
	state_col = ij_result_col("state");
	for (int i = 0; i < n; i++)
	{
		bool		isnull;

		ij_count_move(ij_result_int32(i, queue_col),
					  DatumGetChar(ij_result(i, state_col, &isnull)), '\0', 1);
	}
	return n;
}

/* fold the completion log into the queues' completed counts */
void
ij_fold_completed_log(void)
{
	ij_execute(IJ_PLAN_FOLD_LOG, NULL, NULL, 0);
}

/* reap() */
Datum
ij_reap(PG_FUNCTION_ARGS)
{
	int			n;

	ij_xact_uses_jobs();

	SPI_connect();
	ij_ensure_loaded();
	n = ij_reap_expired();
	ij_fold_completed_log();
	SPI_finish();
	PG_RETURN_INT32(n);
}
