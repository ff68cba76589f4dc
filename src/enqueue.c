/*-------------------------------------------------------------------------
 *
 * enqueue.c
 *	  Adding jobs: enqueue() and enqueue_many().
 *
 * enqueue_many() reads its JSON array one element at a time and writes the
 * jobs in batches of up to IJ_BATCH_SIZE rows the way COPY does (bulk.c),
 * in the order of the array, so that memory stays bounded whatever the
 * size of the array.  Elements with a dedup key go one at a time through
 * INSERT ... ON CONFLICT, because each may have to return an existing job
 * instead.  Any error rolls the whole call back.
 *
 * src/enqueue.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "mb/pg_wchar.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/numeric.h"

#include "immich_jobs.h"

PG_FUNCTION_INFO_V1(ij_enqueue);
PG_FUNCTION_INFO_V1(ij_enqueue_many);

/* how many times a dedup insert races with a claim before giving up */
#define IJ_DEDUP_TRIES 100

/* a job about to be inserted */
typedef struct IjNewJob
{
	char		state;
	int32		priority;
	TimestampTz run_at;
	int32		max_attempts;
	text	   *name;
	Jsonb	   *payload;
	text	   *dedup_key;		/* NULL if none */
	bool		dedup_kept;		/* dedup_mode 'kept' rather than 'unstarted' */
} IjNewJob;

/* enqueue_many's batch of rows not yet written */
typedef struct IjBatch
{
	IjBulk	   *bulk;
	int			n;				/* rows in the batch */
	int			held;			/* elements read since the last flush */
	int64		waiting;		/* rows of the batch that are waiting */
	int64		delayed;
	IjPos		first;			/* the first waiting row, in claim order */
	MemoryContext cxt;			/* holds the rows' values */
} IjBatch;

/*
 * Check the length of a job name or dedup key (what); index is the element
 * of enqueue_many's array, or -1 for enqueue's arguments.
 */
static void
ij_check_length(const char *what, const char *value, int len, int max,
				int index)
{
	if (len > 0 && len <= max)
		return;
	if (index >= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid element %d of the jobs array", index),
				 errdetail("\"%s\" must have 1 to %d bytes.",
						   strcmp(what, "job name") == 0 ? "name" : "dedup_key",
						   max)));
	if (strcmp(what, "job name") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid job name \"%.*s\"",
						pg_mbcliplen(value, len, 64), value),
				 errdetail("A job name has 1 to %d bytes.", max)));
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid dedup key \"%.*s\"",
					pg_mbcliplen(value, len, 64), value),
			 errdetail("A dedup key has 1 to %d bytes.", max)));
}

/*
 * Find the queue to enqueue into, and hold its share lock to the end of
 * the transaction, so that a drop_queue cannot delete the queue under jobs
 * we are adding.  Looked up again after the lock: a drop may have
 * committed while we waited.
 */
static void
ij_open_queue_for_enqueue(const char *name, IjQueue *queue)
{
	IjQueue		again;

	if (!ij_shared_queue(name, queue))
	{
		ij_ensure_loaded();
		ij_get_queue(name, queue, IJ_READ);
	}
	ij_lock_queue(queue->queue_id, AccessShareLock);
	if (!ij_shared_queue(name, &again) &&
		!ij_lookup_queue(name, &again, IJ_READ_LATEST))
		again.queue_id = 0;
	if (again.queue_id != queue->queue_id)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("queue \"%s\" does not exist", name)));
}

/* the job's state from its run_at: delayed if in the future */
static void
ij_set_run_at(IjNewJob *job, bool given, TimestampTz run_at)
{
	TimestampTz now = GetCurrentTransactionStartTimestamp();

	if (given)
		ij_check_run_at(run_at);
	job->run_at = given ? run_at : now;
	job->state = job->run_at > now ? IJ_DELAYED : IJ_WAITING;
}

/*
 * Read a dedup mode: 'unstarted' (the default) or 'kept'.  index is the
 * element of enqueue_many's array, or -1 for enqueue().
 */
static bool
ij_parse_dedup_mode(const char *mode, int len, int index)
{
	if (len == 9 && strncmp(mode, "unstarted", len) == 0)
		return false;
	if (len == 4 && strncmp(mode, "kept", len) == 0)
	{
		/* the library may be newer than the extension's objects */
		if (get_attnum(ij_job_relid(), "dedup_kept") == InvalidAttrNumber)
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("dedup mode \"kept\" needs version 1.2 of extension \"immich_jobs\""),
					 errhint("Run ALTER EXTENSION immich_jobs UPDATE.")));
		return true;
	}
	if (index < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid dedup mode \"%.*s\"", len, mode),
				 errhint("The modes are \"unstarted\" and \"kept\".")));
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid element %d of the jobs array", index),
			 errdetail("Invalid dedup mode \"%.*s\".", len, mode),
			 errhint("The modes are \"unstarted\" and \"kept\".")));
	return false;				/* keep compiler quiet */
}

/*
 * After a kept insert that added nothing and found no job with its key:
 * raise what a plain insert would have, if what stopped it was its job_id
 * (the sequence was set back below existing ids).
 */
static void
ij_check_job_id_free(void)
{
	bool		isnull;
	bool		taken;

	ij_execute(IJ_PLAN_JOB_ID_TAKEN, NULL, NULL, 1);
	taken = DatumGetBool(ij_result(0, ij_result_col("taken"), &isnull));
	SPI_freetuptable(SPI_tuptable);
	if (taken)
		ereport(ERROR,
				(errcode(ERRCODE_UNIQUE_VIOLATION),
				 errmsg("duplicate key value violates unique constraint \"job_pkey\""),
				 errdetail("immich_jobs.job_id_seq hands out ids that jobs already have."),
				 errhint("Set it past the largest job_id with setval().")));
}

/*
 * Insert one job.  With a dedup key that a job of the queue that has not
 * started already has (or, in mode 'kept', a job of the queue that is
 * waiting, delayed, active or failed and was enqueued in that mode), insert
 * nothing and return that job's id, with *added set to false.
 */
static int64
ij_insert_job(const IjQueue *queue, IjNewJob *job, bool *added)
{
	Datum		values[8];
	Datum		find[2];
	int64		job_id;

	values[0] = Int32GetDatum(queue->queue_id);
	values[1] = CharGetDatum(job->state);
	values[2] = Int32GetDatum(job->priority);
	values[3] = TimestampTzGetDatum(job->run_at);
	values[4] = Int32GetDatum(job->max_attempts);
	values[5] = PointerGetDatum(job->name);
	values[6] = JsonbPGetDatum(job->payload);

	if (job->dedup_key == NULL)
	{
		ij_execute(IJ_PLAN_JOB_INSERT, values, NULL, 1);
		*added = true;
		job_id = ij_result_int64(0, ij_result_col("job_id"));
		SPI_freetuptable(SPI_tuptable);
		return job_id;
	}

	/*
	 * ON CONFLICT DO NOTHING waits for a concurrent insert of the same key to
	 * commit or abort.  If the job that has the key is claimed between our
	 * insert and our look-up, it has started, so try the insert again.
	 */
	values[7] = PointerGetDatum(job->dedup_key);
	find[0] = values[0];
	find[1] = values[7];
	for (int try = 0; try < IJ_DEDUP_TRIES; try++)
	{
		/* free every result, empty ones too: this may run 100,000 times */
		if (ij_execute(job->dedup_kept ? IJ_PLAN_JOB_INSERT_KEPT :
					   IJ_PLAN_JOB_INSERT_DEDUP, values, NULL, 1) == 1)
			*added = true;
		else
		{
			SPI_freetuptable(SPI_tuptable);
			if (ij_execute(job->dedup_kept ? IJ_PLAN_JOB_FIND_KEPT :
						   IJ_PLAN_JOB_FIND_DEDUP, find, NULL, 1) == 1)
				*added = false;
			else
			{
				SPI_freetuptable(SPI_tuptable);
				if (job->dedup_kept)
					ij_check_job_id_free();
				continue;
			}
		}
		job_id = ij_result_int64(0, ij_result_col("job_id"));
		SPI_freetuptable(SPI_tuptable);
		return job_id;
	}
	ereport(ERROR,
			(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
			 errmsg("could not enqueue a job with dedup key \"%s\" in queue \"%s\"",
					text_to_cstring(job->dedup_key), queue->name),
			 errdetail("The job that had the key was claimed each time it was looked up."),
			 errhint("Try again.")));
	return 0;					/* keep compiler quiet */
}

/*
 * enqueue(queue_name, job_name, payload, priority, run_at, dedup_key,
 *		   max_attempts, dedup_mode)
 *
 * dedup_mode came with 1.2: the 1.0 and 1.1 definitions pass seven arguments.
 */
Datum
ij_enqueue(PG_FUNCTION_ARGS)
{
	char	   *queue_name = ij_queue_name_arg(fcinfo, 0);
	IjQueue		queue;
	IjNewJob	job;
	bool		added;
	int64		job_id;

	ij_xact_uses_jobs();

	ij_require_arg(fcinfo, 1, "job_name");
	ij_require_arg(fcinfo, 2, "payload");
	ij_require_arg(fcinfo, 3, "priority");
	job.name = PG_GETARG_TEXT_PP(1);
	ij_check_length("job name", VARDATA_ANY(job.name),
					VARSIZE_ANY_EXHDR(job.name), IJ_JOB_NAME_MAX, -1);
	job.payload = PG_GETARG_JSONB_P(2);
	ij_check_size("payload", VARSIZE(job.payload), ij_max_payload_size,
				  "immich_jobs.max_payload_size");
	job.priority = PG_GETARG_INT32(3);
	ij_set_run_at(&job, !PG_ARGISNULL(4),
				  PG_ARGISNULL(4) ? 0 : PG_GETARG_TIMESTAMPTZ(4));
	job.dedup_key = NULL;
	if (!PG_ARGISNULL(5))
	{
		job.dedup_key = PG_GETARG_TEXT_PP(5);
		ij_check_length("dedup key", VARDATA_ANY(job.dedup_key),
						VARSIZE_ANY_EXHDR(job.dedup_key), IJ_KEY_MAX, -1);
	}
	if (!PG_ARGISNULL(6))
		ij_check_int_range("max_attempts", PG_GETARG_INT32(6), 1,
						   IJ_ATTEMPTS_MAX);
	job.dedup_kept = false;
	if (PG_NARGS() > 7)
	{
		text	   *mode;

		ij_require_arg(fcinfo, 7, "dedup_mode");
		mode = PG_GETARG_TEXT_PP(7);
		job.dedup_kept = ij_parse_dedup_mode(VARDATA_ANY(mode),
											 VARSIZE_ANY_EXHDR(mode), -1);
	}

	SPI_connect();
	ij_open_queue_for_enqueue(queue_name, &queue);
	job.max_attempts = PG_ARGISNULL(6) ? queue.max_attempts : PG_GETARG_INT32(6);
	job_id = ij_insert_job(&queue, &job, &added);
	if (added)
	{
		ij_count_move(queue.queue_id, '\0', job.state, 1);
		if (job.state == IJ_WAITING)
		{
			ij_cursor_lower(queue.queue_id, job.priority, job_id);
			ij_wake(queue.queue_id, queue.name, IJ_WAKE_JOBS);
		}
	}
	SPI_finish();
	PG_RETURN_INT64(job_id);
}

/*
 * enqueue_many: reading the elements of the jobs array
 */

/* error context: the element being read */
static void
ij_element_context(void *arg)
{
	errcontext("element %d of the jobs array", *(int *) arg);
}

static const char *
ij_json_type(JsonbValue *v)
{
	switch (v->type)
	{
		case jbvNull:
			return "null";
		case jbvString:
			return "a string";
		case jbvNumeric:
			return "a number";
		case jbvBool:
			return "a boolean";
		case jbvBinary:
			return JsonContainerIsArray(v->val.binary.data) ?
				"an array" : "an object";
		default:
			return "a JSON value";
	}
}

static void
ij_bad_element(int index, const char *key, const char *expected,
			   JsonbValue *v)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid element %d of the jobs array", index),
			 errdetail("\"%s\" must be %s, not %s.", key, expected,
					   ij_json_type(v))));
}

/* a JSON number that must be an integer between lo and hi */
static int32
ij_json_int(int index, const char *key, JsonbValue *v, int32 lo, int32 hi)
{
	bool		overflow = false;
	int32		result;

	if (v->type != jbvNumeric)
		ij_bad_element(index, key, "an integer", v);
	result = numeric_int4_opt_error(v->val.numeric, &overflow);
	if (overflow || result < lo || result > hi ||
		!DatumGetBool(DirectFunctionCall2(numeric_eq,
										  NumericGetDatum(v->val.numeric),
										  DirectFunctionCall1(int4_numeric,
															  Int32GetDatum(result)))))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid element %d of the jobs array", index),
				 errdetail("\"%s\" must be an integer between %d and %d.",
						   key, lo, hi)));
	return result;
}

/* a string value of element index, of at most max bytes, as text */
static text *
ij_json_text(int index, const char *key, JsonbValue *v, const char *what,
			 int max)
{
	if (v->type != jbvString)
		ij_bad_element(index, key, "a string", v);
	ij_check_length(what, v->val.string.val, v->val.string.len, max, index);
	return cstring_to_text_with_len(v->val.string.val, v->val.string.len);
}

/*
 * Read the value v of the key key of element index into job; a run_at goes
 * to *run_at, and sets *run_at_given.
 */
static void
ij_read_element_key(int index, const char *key, JsonbValue *v, IjNewJob *job,
					bool *run_at_given, TimestampTz *run_at)
{
	if (strcmp(key, "name") == 0)
		job->name = ij_json_text(index, key, v, "job name", IJ_JOB_NAME_MAX);
	else if (strcmp(key, "payload") == 0)
	{
		job->payload = JsonbValueToJsonb(v);
		ij_check_size("payload", VARSIZE(job->payload),
					  ij_max_payload_size, "immich_jobs.max_payload_size");
	}
	else if (strcmp(key, "priority") == 0)
		job->priority = ij_json_int(index, key, v, PG_INT32_MIN,
									PG_INT32_MAX);
	else if (strcmp(key, "max_attempts") == 0)
		job->max_attempts = ij_json_int(index, key, v, 1,
										IJ_ATTEMPTS_MAX);
	else if (strcmp(key, "run_at") == 0)
	{
		if (v->type != jbvString)
			ij_bad_element(index, key, "a timestamp string", v);
		*run_at = DatumGetTimestampTz(DirectFunctionCall3(timestamptz_in,
								  CStringGetDatum(pnstrdup(v->val.string.val,
											   v->val.string.len)),
								  ObjectIdGetDatum(InvalidOid),
								  Int32GetDatum(-1)));
		*run_at_given = true;
	}
	else if (strcmp(key, "dedup_key") == 0)
		job->dedup_key = ij_json_text(index, key, v, "dedup key", IJ_KEY_MAX);
	else if (strcmp(key, "dedup_mode") == 0)
	{
		if (v->type != jbvString)
			ij_bad_element(index, key, "a string", v);
		job->dedup_kept = ij_parse_dedup_mode(v->val.string.val,
											  v->val.string.len, index);
	}
	else
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid element %d of the jobs array", index),
				 errdetail("Unknown key \"%s\".", key),
				 errhint("The keys are \"name\", \"payload\", \"priority\", \"run_at\", \"dedup_key\", \"dedup_mode\" and \"max_attempts\".")));
}

/*
 * Read one element into job.  Keys with a JSON null are taken as absent.
 */
static void
ij_read_element(int index, JsonbValue *elem, const IjQueue *queue,
				IjNewJob *job)
{
	JsonbIterator *it;
	JsonbIteratorToken tok;
	JsonbValue	k;
	JsonbValue	v;
	bool		run_at_given = false;
	TimestampTz run_at = 0;

	if (elem->type != jbvBinary || !JsonContainerIsObject(elem->val.binary.data))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid element %d of the jobs array", index),
				 errdetail("Each element must be a JSON object, not %s.",
						   ij_json_type(elem))));

	job->name = NULL;
	job->payload = NULL;
	job->priority = 0;
	job->max_attempts = queue->max_attempts;
	job->dedup_key = NULL;
	job->dedup_kept = false;

	it = JsonbIteratorInit(elem->val.binary.data);
	while ((tok = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
	{
		char	   *key;

		if (tok != WJB_KEY)
			continue;
		key = pnstrdup(k.val.string.val, k.val.string.len);
		tok = JsonbIteratorNext(&it, &v, true);
		Assert(tok == WJB_VALUE);
		if (v.type == jbvNull && strcmp(key, "name") != 0)
			continue;

		ij_read_element_key(index, key, &v, job, &run_at_given, &run_at);
	}

	if (job->name == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid element %d of the jobs array", index),
				 errdetail("The key \"name\" is required.")));
	if (job->payload == NULL)
		job->payload = DatumGetJsonbP(DirectFunctionCall1(jsonb_in,
														  CStringGetDatum("{}")));
	ij_set_run_at(job, run_at_given, run_at);
}

/* write the batched rows; count them and lower the cursor */
static void
ij_flush_batch(const IjQueue *queue, IjBatch *b)
{
	MemoryContext oldcxt = MemoryContextSwitchTo(b->cxt);

	ij_bulk_flush(b->bulk);
	MemoryContextSwitchTo(oldcxt);
	ij_count_move(queue->queue_id, '\0', IJ_WAITING, b->waiting);
	ij_count_move(queue->queue_id, '\0', IJ_DELAYED, b->delayed);
	if (b->waiting > 0)
		ij_cursor_lower(queue->queue_id, (int32) -b->first.np, b->first.id);
	b->n = 0;
	b->waiting = 0;
	b->delayed = 0;
	b->held = 0;
	MemoryContextReset(b->cxt);
}

/* add a job without a dedup key to the batch */
static void
ij_bulk_add_job(const IjQueue *queue, IjBatch *b, IjNewJob *job,
				int64 *added, int64 *waiting)
{
	int64		job_id;

	job_id = ij_bulk_add(b->bulk, queue->queue_id, job->state, job->priority,
						 job->run_at, job->max_attempts, job->name,
						 job->payload);
	b->n++;
	(*added)++;
	if (job->state == IJ_WAITING)
	{
		IjPos		pos = {-(int64) job->priority, job_id};

		if (b->waiting == 0 || pos.np < b->first.np)
			b->first = pos;
		b->waiting++;
		(*waiting)++;
	}
	else
		b->delayed++;
}

/* insert a job with a dedup key now, counting it if it is added */
static void
ij_insert_dedup_job(const IjQueue *queue, IjNewJob *job, int64 *added,
					int64 *waiting)
{
	bool		new_job;
	int64		job_id;

	job_id = ij_insert_job(queue, job, &new_job);
	if (new_job)
	{
		(*added)++;
		ij_count_move(queue->queue_id, '\0', job->state, 1);
		if (job->state == IJ_WAITING)
		{
			(*waiting)++;
			ij_cursor_lower(queue->queue_id, job->priority, job_id);
		}
	}
}

/* the jobs argument argno of enqueue_many, checked to be a JSON array */
static Jsonb *
ij_jobs_arg(FunctionCallInfo fcinfo, int argno)
{
	Jsonb	   *jobs;

	ij_require_arg(fcinfo, argno, "jobs");
	jobs = PG_GETARG_JSONB_P(argno);
	if (!JB_ROOT_IS_ARRAY(jobs) || JB_ROOT_IS_SCALAR(jobs))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("jobs must be a JSON array"),
				 errdetail("The value given is %s.",
						   JB_ROOT_IS_OBJECT(jobs) ? "an object" : "a scalar")));
	return jobs;
}

/* an empty batch, with its memory context and its bulk insert begun */
static IjBatch *
ij_batch_begin(void)
{
	IjBatch    *b;

	b = (IjBatch *) palloc0(sizeof(IjBatch));
	b->cxt = AllocSetContextCreate(CurrentMemoryContext,
								   "immich_jobs batch",
								   ALLOCSET_DEFAULT_SIZES);
	b->bulk = ij_bulk_begin(ij_job_relid());
	return b;
}

/* enqueue_many(queue_name, jobs) */
Datum
ij_enqueue_many(PG_FUNCTION_ARGS)
{
	char	   *queue_name = ij_queue_name_arg(fcinfo, 0);
	Jsonb	   *jobs;
	IjQueue		queue;
	IjBatch    *b;
	JsonbIterator *it;
	JsonbIteratorToken tok;
	JsonbValue	elem;
	int			index = -1;
	int64		added = 0;
	int64		waiting = 0;
	ErrorContextCallback errcallback;

	ij_xact_uses_jobs();

	jobs = ij_jobs_arg(fcinfo, 1);

	SPI_connect();
	ij_open_queue_for_enqueue(queue_name, &queue);

	b = ij_batch_begin();
	errcallback.callback = ij_element_context;
	errcallback.arg = &index;

	it = JsonbIteratorInit(&jobs->root);
	while ((tok = JsonbIteratorNext(&it, &elem, true)) != WJB_DONE)
	{
		MemoryContext oldcxt;
		IjNewJob	job;

		if (tok != WJB_ELEM)
			continue;
		index++;

		/* errors while reading the element name it */
		errcallback.previous = error_context_stack;
		error_context_stack = &errcallback;
		oldcxt = MemoryContextSwitchTo(b->cxt);
		ij_read_element(index, &elem, &queue, &job);
		MemoryContextSwitchTo(oldcxt);
		error_context_stack = errcallback.previous;

		/*
		 * Ids follow the array's order either way: a batched job takes its id
		 * when it is added, a job with a dedup key when it is inserted.
		 */
		b->held++;
		if (job.dedup_key != NULL)
			ij_insert_dedup_job(&queue, &job, &added, &waiting);
		else
			ij_bulk_add_job(&queue, b, &job, &added, &waiting);
		if (b->n == IJ_BATCH_SIZE || b->held == IJ_BATCH_SIZE)
			ij_flush_batch(&queue, b);
	}
	ij_flush_batch(&queue, b);
	ij_bulk_end(b->bulk);

	if (waiting > 0)
		ij_wake(queue.queue_id, queue.name, IJ_WAKE_JOBS);
	SPI_finish();
	PG_RETURN_INT64(added);
}
