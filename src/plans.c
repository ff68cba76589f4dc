/*-------------------------------------------------------------------------
 *
 * plans.c
 *	  Every SQL statement the extension runs, prepared once per backend.
 *
 * Each statement is parsed and planned the first time a backend needs it,
 * then kept (SPI_keepplan) for the life of the backend; the plan cache
 * revalidates it if the extension's tables change.  The statements name
 * every table, function, type and operator with its schema, so that a
 * caller's search_path, which the plan cache honours when it re-parses,
 * cannot change what runs.  Plans are generic: their parameters never make a
 * custom plan worth the planning time.
 *
 * src/plans.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "nodes/parsenodes.h"
#include "utils/snapmgr.h"

#include "immich_jobs.h"

/*
 * Operators and functions, always from pg_catalog.  Written as OPERATOR(),
 * every operator has the same precedence and groups to the left, so mixed
 * expressions need their parentheses.
 */
#define EQ	" OPERATOR(pg_catalog.=) "
#define NE	" OPERATOR(pg_catalog.<>) "
#define LT	" OPERATOR(pg_catalog.<) "
#define LE	" OPERATOR(pg_catalog.<=) "
#define GT	" OPERATOR(pg_catalog.>) "
#define GE	" OPERATOR(pg_catalog.>=) "
#define PLUS " OPERATOR(pg_catalog.+) "
#define MINUS " OPERATOR(pg_catalog.-) "
#define TIMES " OPERATOR(pg_catalog.*) "
#define NOW " pg_catalog.now() "
/*
 * Leases are timed from the clock when they are taken or extended, not from
 * the start of the transaction or of the statement: a claim or heartbeat
 * late in a long transaction, or in a DO block or procedure (one statement,
 * however long it runs), gets its full lease.
 */
#define LEASE_NOW " pg_catalog.clock_timestamp() "
#define CHAR(c) " '" c "'::pg_catalog.\"char\" "
#define NEXT_JOB_ID \
	" pg_catalog.nextval('immich_jobs.job_id_seq'::pg_catalog.regclass) "
#define NEXT_TOKEN \
	" pg_catalog.nextval('immich_jobs.lease_token_seq'::pg_catalog.regclass) "
#define NOT_STARTED \
	" dedup_key IS NOT NULL AND started_at IS NULL" \
	" AND state" EQ "ANY ('{w,d}'::pg_catalog.\"char\"[]) "
#define KEPT \
	" dedup_key IS NOT NULL AND dedup_kept" \
	" AND state" EQ "ANY ('{w,d,a,f}'::pg_catalog.\"char\"[]) "
#define NEG_PRIORITY " (OPERATOR(pg_catalog.-) priority::pg_catalog.int8) "
#define LAST_ATTEMPT " j.attempt" GE "j.max_attempts "
/*
 * Queues with their settings and the counts of their jobs in IjCount order,
 * for the loaders; filter restricts the queues (and what is counted).
 */
#define COUNTS_SELECT(filter) \
	"SELECT q.queue_name, q.queue_id, q.concurrency, q.max_attempts," \
	"       q.paused, q.lease_timeout," \
	"       coalesce(j.waiting, 0) AS waiting," \
	"       coalesce(j.delayed, 0) AS delayed," \
	"       coalesce(j.active, 0) AS active," \
	"       coalesce(j.failed, 0) AS failed," \
	"       coalesce(j.cancelled, 0) AS cancelled," \
	"       q.completed_base" PLUS "coalesce(l.n, 0) AS completed" \
	"  FROM (SELECT * FROM immich_jobs.queue" filter ") q" \
	"  LEFT JOIN (SELECT queue_id," \
	"                    pg_catalog.count(*) FILTER (WHERE state" EQ CHAR("w") ") AS waiting," \
	"                    pg_catalog.count(*) FILTER (WHERE state" EQ CHAR("d") ") AS delayed," \
	"                    pg_catalog.count(*) FILTER (WHERE state" EQ CHAR("a") ") AS active," \
	"                    pg_catalog.count(*) FILTER (WHERE state" EQ CHAR("f") ") AS failed," \
	"                    pg_catalog.count(*) FILTER (WHERE state" EQ CHAR("x") ") AS cancelled" \
	"               FROM immich_jobs.job" filter " GROUP BY queue_id) j" \
	"         ON j.queue_id" EQ "q.queue_id" \
	"  LEFT JOIN (SELECT queue_id, pg_catalog.sum(n) AS n" \
	"               FROM immich_jobs.completed_log" filter " GROUP BY queue_id) l" \
	"         ON l.queue_id" EQ "q.queue_id"

/* retry_in ($4), else retry_backoff * 2^(attempt - 1), at most 7 days */
#define RETRY_AT \
	NOW PLUS "coalesce($4, LEAST(q.retry_backoff" TIMES \
	"pg_catalog.power(2::pg_catalog.float8, LEAST(j.attempt" MINUS "1, 20)), " \
	"'7 days'::pg_catalog.interval)) "

#define MAX_PLAN_ARGS 8

typedef struct IjPlanDef
{
	const char *sql;
	int			nargs;
	Oid			argtypes[MAX_PLAN_ARGS];
} IjPlanDef;

static const IjPlanDef plan_defs[IJ_NUM_PLANS] = {
	[IJ_PLAN_QUEUE_GET] = {
		"SELECT queue_id, concurrency, max_attempts, paused, lease_timeout"
		"  FROM immich_jobs.queue WHERE queue_name" EQ "$1",
		1, {TEXTOID}
	},
	[IJ_PLAN_QUEUE_GET_LOCKED] = {
		"SELECT queue_id, concurrency, max_attempts, paused, lease_timeout"
		"  FROM immich_jobs.queue WHERE queue_name" EQ "$1 FOR UPDATE",
		1, {TEXTOID}
	},
	[IJ_PLAN_QUEUE_NAME] = {
		"SELECT queue_name FROM immich_jobs.queue WHERE queue_id" EQ "$1",
		1, {INT4OID}
	},
	[IJ_PLAN_QUEUE_INSERT] = {
		"INSERT INTO immich_jobs.queue"
		"       (queue_name, concurrency, lease_timeout, max_attempts,"
		"        retry_backoff)"
		"VALUES ($1, $2, $3, $4, $5)"
		"    ON CONFLICT (queue_name) DO NOTHING"
		" RETURNING queue_id",
		5, {TEXTOID, INT4OID, INTERVALOID, INT4OID, INTERVALOID}
	},
	[IJ_PLAN_QUEUE_ALTER] = {
		"UPDATE immich_jobs.queue"
		"   SET concurrency = coalesce($2, concurrency),"
		"       lease_timeout = coalesce($3, lease_timeout),"
		"       max_attempts = coalesce($4, max_attempts),"
		"       retry_backoff = coalesce($5, retry_backoff)"
		" WHERE queue_name" EQ "$1"
		" RETURNING queue_id, concurrency, max_attempts, paused, lease_timeout",
		5, {TEXTOID, INT4OID, INTERVALOID, INT4OID, INTERVALOID}
	},
	[IJ_PLAN_QUEUE_PAUSE] = {
		"UPDATE immich_jobs.queue SET paused = $2"
		" WHERE queue_name" EQ "$1"
		" RETURNING queue_id, concurrency, max_attempts, paused, lease_timeout",
		2, {TEXTOID, BOOLOID}
	},
	[IJ_PLAN_QUEUE_DELETE] = {
		"DELETE FROM immich_jobs.queue WHERE queue_id" EQ "$1",
		1, {INT4OID}
	},
	[IJ_PLAN_QUEUE_RESET_COMPLETED] = {
		/* the caller holds the queue's row lock */
		"WITH l AS (DELETE FROM immich_jobs.completed_log"
		"            WHERE queue_id" EQ "$1 RETURNING n),"
		"     o AS (SELECT completed_base FROM immich_jobs.queue"
		"            WHERE queue_id" EQ "$1)"
		"UPDATE immich_jobs.queue SET completed_base = 0"
		" WHERE queue_id" EQ "$1"
		" RETURNING (SELECT completed_base FROM o)"
		PLUS "coalesce((SELECT pg_catalog.sum(n) FROM l), 0) AS completed",
		1, {INT4OID}
	},
	[IJ_PLAN_ACTIVE_COUNT] = {
		"SELECT pg_catalog.count(*) AS active FROM immich_jobs.job"
		" WHERE state" EQ CHAR("a") "AND queue_id" EQ "$1",
		1, {INT4OID}
	},
	[IJ_PLAN_COUNTS_ALL] = {
		/* the name, the settings, then the counts in IjCount order */
		COUNTS_SELECT(""),
		0, {InvalidOid}
	},
	[IJ_PLAN_COUNTS_QUEUE] = {
		/* as IJ_PLAN_COUNTS_ALL, for one queue */
		COUNTS_SELECT(" WHERE queue_id" EQ "$1"),
		1, {INT4OID}
	},
	[IJ_PLAN_COUNTS_ONE] = {
		/* without shared memory: one count per state, each by its index */
		"SELECT (SELECT pg_catalog.count(*) FROM immich_jobs.job"
		"         WHERE state" EQ CHAR("w") "AND queue_id" EQ "$1) AS waiting,"
		"       (SELECT pg_catalog.count(*) FROM immich_jobs.job"
		"         WHERE state" EQ CHAR("d") "AND queue_id" EQ "$1) AS delayed,"
		"       (SELECT pg_catalog.count(*) FROM immich_jobs.job"
		"         WHERE state" EQ CHAR("a") "AND queue_id" EQ "$1) AS active,"
		"       (SELECT pg_catalog.count(*) FROM immich_jobs.job"
		"         WHERE state" EQ CHAR("f") "AND queue_id" EQ "$1) AS failed,"
		"       (SELECT pg_catalog.count(*) FROM immich_jobs.job"
		"         WHERE state" EQ CHAR("x") "AND queue_id" EQ "$1) AS cancelled,"
		"       (SELECT q.completed_base" PLUS "coalesce(pg_catalog.sum(l.n), 0)"
		"          FROM immich_jobs.queue q"
		"          LEFT JOIN immich_jobs.completed_log l"
		"                 ON l.queue_id" EQ "q.queue_id"
		"         WHERE q.queue_id" EQ "$1 GROUP BY q.completed_base)"
		"       AS completed",
		1, {INT4OID}
	},
	[IJ_PLAN_JOB_INSERT] = {
		"INSERT INTO immich_jobs.job"
		"       (job_id, queue_id, state, priority, run_at, max_attempts,"
		"        job_name, payload, created_at, attempt)"
		"VALUES (" NEXT_JOB_ID ", $1, $2, $3, $4, $5, $6, $7," NOW ", 0)"
		" RETURNING job_id",
		7, {INT4OID, CHAROID, INT4OID, TIMESTAMPTZOID, INT4OID, TEXTOID, JSONBOID}
	},
	[IJ_PLAN_JOB_INSERT_DEDUP] = {
		"INSERT INTO immich_jobs.job"
		"       (job_id, queue_id, state, priority, run_at, max_attempts,"
		"        job_name, payload, dedup_key, created_at, attempt)"
		"VALUES (" NEXT_JOB_ID ", $1, $2, $3, $4, $5, $6, $7, $8," NOW ", 0)"
		"    ON CONFLICT (queue_id, dedup_key) WHERE" NOT_STARTED "DO NOTHING"
		" RETURNING job_id",
		8, {INT4OID, CHAROID, INT4OID, TIMESTAMPTZOID, INT4OID, TEXTOID, JSONBOID, TEXTOID}
	},
	[IJ_PLAN_JOB_FIND_DEDUP] = {
		"SELECT job_id FROM immich_jobs.job"
		" WHERE queue_id" EQ "$1 AND dedup_key" EQ "$2 AND" NOT_STARTED,
		2, {INT4OID, TEXTOID}
	},
	/*
	 * dedup_mode 'kept' (1.2): the key is blocked while a job with it is
	 * waiting, delayed, active or failed.  The insert has no conflict target,
	 * so that it also yields to a job of mode 'unstarted' that has not
	 * started (job_dedup_idx) besides a job of mode 'kept' (job_dedup_kept_idx).
	 */
	[IJ_PLAN_JOB_INSERT_KEPT] = {
		"INSERT INTO immich_jobs.job"
		"       (job_id, queue_id, state, priority, run_at, max_attempts,"
		"        job_name, payload, dedup_key, dedup_kept, created_at, attempt)"
		"VALUES (" NEXT_JOB_ID ", $1, $2, $3, $4, $5, $6, $7, $8, true," NOW ", 0)"
		"    ON CONFLICT DO NOTHING"
		" RETURNING job_id",
		8, {INT4OID, CHAROID, INT4OID, TIMESTAMPTZOID, INT4OID, TEXTOID, JSONBOID, TEXTOID}
	},
	[IJ_PLAN_JOB_FIND_KEPT] = {
		"SELECT job_id FROM immich_jobs.job"
		" WHERE queue_id" EQ "$1 AND dedup_key" EQ "$2"
		"   AND ((" KEPT ") OR (" NOT_STARTED "))"
		" ORDER BY job_id LIMIT 1",
		2, {INT4OID, TEXTOID}
	},
	/*
	 * The kept insert has no conflict target, so it also does nothing when
	 * its new job_id is taken (job_id_seq set back): tell that apart.
	 */
	[IJ_PLAN_JOB_ID_TAKEN] = {
		"SELECT EXISTS (SELECT FROM immich_jobs.job WHERE job_id" EQ
		" pg_catalog.currval('immich_jobs.job_id_seq'::pg_catalog.regclass))"
		" AS taken",
		0, {InvalidOid}
	},
	[IJ_PLAN_PROMOTE] = {
		"UPDATE immich_jobs.job SET state =" CHAR("w")
		" WHERE job_id" EQ "ANY (ARRAY("
		"       SELECT job_id FROM immich_jobs.job"
		"        WHERE state" EQ CHAR("d") "AND queue_id" EQ "$1"
		"          AND run_at" LE NOW
		"        ORDER BY run_at LIMIT 10000"
		"          FOR UPDATE SKIP LOCKED))",
		1, {INT4OID}
	},
	[IJ_PLAN_PROMOTE_ALL] = {
		/* the background worker: due delayed jobs of every queue */
		"UPDATE immich_jobs.job SET state =" CHAR("w")
		" WHERE job_id" EQ "ANY (ARRAY("
		"       SELECT job_id FROM immich_jobs.job"
		"        WHERE state" EQ CHAR("d") "AND run_at" LE NOW
		"        ORDER BY run_at LIMIT 10000"
		"          FOR UPDATE SKIP LOCKED))"
		" RETURNING queue_id",
		0, {InvalidOid}
	},
	[IJ_PLAN_PRUNE] = {
		/* the background worker: failed and cancelled jobs older than $1 s */
		"DELETE FROM immich_jobs.job"
		" WHERE job_id" EQ "ANY (ARRAY("
		"       SELECT job_id FROM immich_jobs.job"
		"        WHERE state" EQ "ANY ('{f,x}'::pg_catalog.\"char\"[])"
		"          AND finished_at" LT "(" NOW MINUS
		"              pg_catalog.make_interval(secs => $1))"
		"        ORDER BY finished_at LIMIT 10000"
		"          FOR UPDATE SKIP LOCKED))"
		" RETURNING queue_id, state",
		1, {FLOAT8OID}
	},
	[IJ_PLAN_CLAIM] = {
		/*
		 * $5, $6: the cursor, (-priority, job_id) in claim order.  The jobs
		 * are picked in an InitPlan and updated through the primary key, a
		 * plan that no statistics can turn into a scan of the whole table.
		 * The first six columns are claim()'s result, in its order: lease.c
		 * copies them by position.
		 */
		"WITH u AS (UPDATE immich_jobs.job j"
		"              SET state =" CHAR("a") ","
		"                  attempt = j.attempt" PLUS "1,"
		"                  lease_token =" NEXT_TOKEN ","
		"                  lease_expires_at =" LEASE_NOW PLUS "$3,"
		"                  started_at = coalesce(j.started_at," NOW "),"
		"                  worker_id = $4"
		"            WHERE j.job_id" EQ "ANY (ARRAY("
		"                  SELECT job_id FROM immich_jobs.job"
		"                   WHERE state" EQ CHAR("w") "AND queue_id" EQ "$1"
		"                     AND ROW(" NEG_PRIORITY ", job_id)" GE "ROW($5, $6)"
		"                   ORDER BY" NEG_PRIORITY ", job_id LIMIT $2"
		"                     FOR UPDATE SKIP LOCKED))"
		"           RETURNING j.job_id, j.job_name, j.payload, j.attempt,"
		"                     j.lease_token, j.lease_expires_at, j.priority)"
		"SELECT job_id, job_name, payload, attempt, lease_token,"
		"       lease_expires_at, priority"
		"  FROM u ORDER BY priority DESC, job_id",
		6, {INT4OID, INT4OID, INTERVALOID, TEXTOID, INT8OID, INT8OID}
	},
	[IJ_PLAN_COMPLETE] = {
		"WITH d AS (DELETE FROM immich_jobs.job"
		"            WHERE job_id" EQ "$1 AND lease_token" EQ "$2"
		"           RETURNING queue_id)"
		"INSERT INTO immich_jobs.completed_log (queue_id, n)"
		"SELECT queue_id, 1 FROM d RETURNING queue_id",
		2, {INT8OID, INT8OID}
	},
	[IJ_PLAN_COMPLETE_MANY] = {
		/*
		 * One row per job completed: its id and queue.  The = ANY keeps the
		 * jobs found by their primary key.
		 */
		"WITH d AS (DELETE FROM immich_jobs.job j"
		"            USING ROWS FROM (pg_catalog.unnest($1),"
		"                             pg_catalog.unnest($2)) AS t(id, tok)"
		"            WHERE j.job_id" EQ "ANY ($1)"
		"              AND j.job_id" EQ "t.id AND j.lease_token" EQ "t.tok"
		"           RETURNING j.job_id, j.queue_id),"
		"     l AS (INSERT INTO immich_jobs.completed_log (queue_id, n)"
		"           SELECT queue_id, pg_catalog.count(*)::pg_catalog.int4"
		"             FROM d GROUP BY queue_id)"
		"SELECT job_id, queue_id FROM d",
		2, {INT8ARRAYOID, INT8ARRAYOID}
	},
	[IJ_PLAN_FAIL] = {
		"UPDATE immich_jobs.job j"
		"   SET state = CASE WHEN" LAST_ATTEMPT "THEN" CHAR("f")
		"                    WHEN" RETRY_AT GT NOW "THEN" CHAR("d")
		"                    ELSE" CHAR("w") "END,"
		"       run_at = CASE WHEN" LAST_ATTEMPT "THEN j.run_at"
		"                     ELSE" RETRY_AT "END,"
		"       finished_at = CASE WHEN" LAST_ATTEMPT "THEN" NOW "END,"
		"       last_error = $3, lease_token = NULL, lease_expires_at = NULL"
		"  FROM immich_jobs.queue q"
		" WHERE j.job_id" EQ "$1 AND j.lease_token" EQ "$2"
		"   AND q.queue_id" EQ "j.queue_id"
		" RETURNING j.queue_id, j.state",
		4, {INT8OID, INT8OID, TEXTOID, INTERVALOID}
	},
	[IJ_PLAN_HEARTBEAT] = {
		"UPDATE immich_jobs.job j"
		"   SET lease_expires_at =" LEASE_NOW PLUS "coalesce($3, q.lease_timeout)"
		"  FROM immich_jobs.queue q"
		" WHERE j.job_id" EQ "$1 AND j.lease_token" EQ "$2"
		"   AND q.queue_id" EQ "j.queue_id"
		" RETURNING j.lease_expires_at",
		3, {INT8OID, INT8OID, INTERVALOID}
	},
	[IJ_PLAN_RELEASE] = {
		"UPDATE immich_jobs.job j"
		"   SET state = CASE WHEN $3" GT NOW "THEN" CHAR("d")
		"                    ELSE" CHAR("w") "END,"
		"       run_at = GREATEST($3," NOW "),"
		"       attempt = j.attempt" MINUS "1,"
		"       lease_token = NULL, lease_expires_at = NULL"
		" WHERE j.job_id" EQ "$1 AND j.lease_token" EQ "$2"
		" RETURNING j.queue_id, j.state",
		3, {INT8OID, INT8OID, TIMESTAMPTZOID}
	},
	[IJ_PLAN_REAP] = {
		"UPDATE immich_jobs.job j"
		"   SET state = CASE WHEN" LAST_ATTEMPT "THEN" CHAR("f")
		"                    ELSE" CHAR("w") "END,"
		"       finished_at = CASE WHEN" LAST_ATTEMPT "THEN" NOW "END,"
		"       last_error = 'lease expired',"
		"       lease_token = NULL, lease_expires_at = NULL"
		" WHERE j.job_id" EQ "ANY (ARRAY("
		"       SELECT job_id FROM immich_jobs.job"
		"        WHERE state" EQ CHAR("a")
		"          AND lease_expires_at" LT NOW
		"          FOR UPDATE SKIP LOCKED))"
		" RETURNING j.queue_id, j.state",
		0, {InvalidOid}
	},
	[IJ_PLAN_FOLD_LOG] = {
		/*
		 * Queues locked by clear() or a claim are folded next time.  Only the
		 * queues that have log rows are locked, whatever the plan reads
		 * first: with nothing to fold, the statement locks nothing, and an
		 * idle round takes no transaction id and writes no WAL.
		 */
		"WITH q AS (SELECT queue_id FROM immich_jobs.queue q0"
		"            WHERE EXISTS (SELECT FROM immich_jobs.completed_log l0"
		"                           WHERE l0.queue_id" EQ "q0.queue_id)"
		"              FOR NO KEY UPDATE SKIP LOCKED),"
		"     d AS (DELETE FROM immich_jobs.completed_log l USING q"
		"            WHERE l.queue_id" EQ "q.queue_id"
		"           RETURNING l.queue_id, l.n),"
		"     s AS (SELECT queue_id, pg_catalog.sum(n) AS n"
		"             FROM d GROUP BY queue_id)"
		"UPDATE immich_jobs.queue u"
		"   SET completed_base = u.completed_base" PLUS "s.n"
		"  FROM s WHERE u.queue_id" EQ "s.queue_id",
		0, {InvalidOid}
	},
	[IJ_PLAN_DELETE_LOG] = {
		"DELETE FROM immich_jobs.completed_log WHERE queue_id" EQ "$1",
		1, {INT4OID}
	},
	/*
	 * The bulk changes of a queue's jobs lock their rows in job_id order
	 * first, whatever order their plans read them in (a sequential scan, or
	 * job_finished_idx): two of them on the same rows then wait for each
	 * other instead of deadlocking.
	 */
	[IJ_PLAN_DELETE_JOBS] = {
		"WITH d AS (DELETE FROM immich_jobs.job"
		"            WHERE job_id" EQ "ANY (ARRAY("
		"                  SELECT job_id FROM immich_jobs.job"
		"                   WHERE queue_id" EQ "$1 AND state" EQ "ANY ($2)"
		"                   ORDER BY job_id FOR UPDATE))"
		"              AND state" EQ "ANY ($2)"
		"           RETURNING state)"
		"SELECT state, pg_catalog.count(*) AS n FROM d GROUP BY state",
		2, {INT4OID, CHARARRAYOID}
	},
	[IJ_PLAN_RETRY_FAILED] = {
		"WITH u AS (UPDATE immich_jobs.job"
		"              SET state =" CHAR("w") ", attempt = 0,"
		"                  run_at =" NOW ", finished_at = NULL"
		"            WHERE job_id" EQ "ANY (ARRAY("
		"                  SELECT job_id FROM immich_jobs.job"
		"                   WHERE state" EQ CHAR("f") "AND queue_id" EQ "$1"
		"                   ORDER BY job_id FOR UPDATE))"
		"              AND state" EQ CHAR("f")
		"           RETURNING 1)"
		"SELECT pg_catalog.count(*) AS retried FROM u",
		1, {INT4OID}
	},
	[IJ_PLAN_JOB_LOOKUP] = {
		"SELECT queue_id, state FROM immich_jobs.job WHERE job_id" EQ "$1",
		1, {INT8OID}
	},
	[IJ_PLAN_CANCEL] = {
		"WITH o AS (SELECT job_id, state FROM immich_jobs.job"
		"            WHERE job_id" EQ "$1 FOR UPDATE)"
		"UPDATE immich_jobs.job j"
		"   SET state =" CHAR("x") ", finished_at =" NOW ","
		"       lease_token = NULL, lease_expires_at = NULL"
		"  FROM o"
		" WHERE j.job_id" EQ "o.job_id"
		"   AND o.state" EQ "ANY ('{w,d,a}'::pg_catalog.\"char\"[])"
		" RETURNING j.queue_id, o.state",
		1, {INT8OID}
	},
	[IJ_PLAN_CANCEL_KEY] = {
		/* a job claimed meanwhile is active: the re-check leaves it alone */
		"WITH o AS (SELECT job_id, state FROM immich_jobs.job"
		"            WHERE queue_id" EQ "$1 AND dedup_key" EQ "$2"
		"              AND state" EQ "ANY ('{w,d,f}'::pg_catalog.\"char\"[])"
		"            ORDER BY job_id FOR UPDATE)"
		"UPDATE immich_jobs.job j"
		"   SET state =" CHAR("x") ", finished_at =" NOW
		"  FROM o"
		" WHERE j.job_id" EQ "o.job_id"
		" RETURNING j.job_id, o.state, j.payload",
		2, {INT4OID, TEXTOID}
	},
	[IJ_PLAN_SKIP_TOKENS] = {
		/* see "Lease tokens after a crash" in loader.c */
		"SELECT pg_catalog.setval('immich_jobs.lease_token_seq'::pg_catalog.regclass,"
		"       GREATEST(pg_catalog.nextval('immich_jobs.lease_token_seq'::pg_catalog.regclass),"
		"                (pg_catalog.date_part('epoch', pg_catalog.clock_timestamp())"
		TIMES "1000000)::pg_catalog.int8)"
		PLUS "4294967296)",
		0, {InvalidOid}
	},
	[IJ_PLAN_LAST_JOB_ID] = {
		"SELECT CASE WHEN is_called THEN last_value ELSE 0 END AS last_job_id"
		"  FROM immich_jobs.job_id_seq",
		0, {InvalidOid}
	},
};

static SPIPlanPtr plans[IJ_NUM_PLANS];

/*
 * Return the kept plan for a statement, preparing it on first use.
 */
static SPIPlanPtr
ij_plan(IjPlanId id)
{
	SPIPlanPtr	plan;

	Assert(id >= 0 && id < IJ_NUM_PLANS);
	if (plans[id] != NULL)
		return plans[id];

	plan = SPI_prepare_cursor(plan_defs[id].sql, plan_defs[id].nargs,
							  (Oid *) plan_defs[id].argtypes,
							  CURSOR_OPT_GENERIC_PLAN);
	if (plan == NULL)
		elog(ERROR, "SPI_prepare_cursor failed for immich_jobs statement %d: %s",
			 (int) id, SPI_result_code_string(SPI_result));
	if (SPI_keepplan(plan) != 0)
		elog(ERROR, "SPI_keepplan failed for immich_jobs statement %d",
			 (int) id);
	plans[id] = plan;
	return plan;
}

/*
 * Run a statement with the given parameters (nulls as for SPI_execute_plan:
 * NULL or a string of ' ' and 'n').  Returns SPI_processed.
 */
int
ij_execute(IjPlanId id, Datum *values, const char *nulls, long tcount)
{
	int			rc;

	rc = SPI_execute_plan(ij_plan(id), values, nulls, false, tcount);
	if (rc < 0)
		elog(ERROR, "SPI_execute_plan failed for immich_jobs statement %d: %s",
			 (int) id, SPI_result_code_string(rc));
	return (int) SPI_processed;
}

/*
 * Run a statement with the latest snapshot rather than the transaction's,
 * so that it sees every commit up to now even in REPEATABLE READ.
 */
int
ij_execute_latest(IjPlanId id, Datum *values, const char *nulls)
{
	int			rc;

	rc = SPI_execute_snapshot(ij_plan(id), values, nulls,
							  GetLatestSnapshot(), InvalidSnapshot,
							  false, false, 0);
	if (rc < 0)
		elog(ERROR, "SPI_execute_snapshot failed for immich_jobs statement %d: %s",
			 (int) id, SPI_result_code_string(rc));
	return (int) SPI_processed;
}

/* column col (1-based) of row row of the last result */
Datum
ij_result(int row, int col, bool *isnull)
{
	Assert(SPI_tuptable != NULL && row < (int) SPI_processed);
	return SPI_getbinval(SPI_tuptable->vals[row], SPI_tuptable->tupdesc,
						 col, isnull);
}

int64
ij_result_int64(int row, int col)
{
	bool		isnull;
	Datum		d = ij_result(row, col, &isnull);

	return isnull ? 0 : DatumGetInt64(d);
}

/* the number of the last result's column called name */
int
ij_result_col(const char *name)
{
	int			col = SPI_fnumber(SPI_tuptable->tupdesc, name);

	if (col <= 0)
		elog(ERROR, "immich_jobs statement has no column \"%s\"", name);
	return col;
}

int32
ij_result_int32(int row, int col)
{
	bool		isnull;
	Datum		d = ij_result(row, col, &isnull);

	return isnull ? 0 : DatumGetInt32(d);
}

/* the names of the count columns of the counting statements, in IjCount order */
const char *const ij_count_names[IJ_NUM_COUNTS] = {
	"waiting", "delayed", "active", "failed", "cancelled", "completed"
};

/*
 * Fill queue from the columns queue_id, concurrency, max_attempts, paused
 * and lease_timeout of row row of the last result; name is the queue's name.
 */
void
ij_result_queue(int row, const char *name, IjQueue *queue)
{
	bool		isnull;
	Datum		d;

	queue->queue_id = ij_result_int32(row, ij_result_col("queue_id"));
	queue->concurrency = ij_result_int32(row, ij_result_col("concurrency"));
	queue->max_attempts = ij_result_int32(row, ij_result_col("max_attempts"));
	d = ij_result(row, ij_result_col("paused"), &isnull);
	queue->paused = DatumGetBool(d);
	d = ij_result(row, ij_result_col("lease_timeout"), &isnull);
	queue->lease_timeout = *DatumGetIntervalP(d);
	strlcpy(queue->name, name, sizeof(queue->name));
}
