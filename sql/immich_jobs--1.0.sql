/* immich_jobs--1.0.sql */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "CREATE EXTENSION immich_jobs" to load this file. \quit

/*
 * Storage.
 *
 * Every job the queue still keeps is one row of immich_jobs.job.  Its state is
 * a one-byte code: 'w' waiting, 'd' delayed, 'a' active (leased), 'f' failed,
 * 'x' cancelled.  Completed jobs are deleted at once and counted in
 * immich_jobs.completed_log, so they never slow down the scans that claims
 * make.  Each state has its own partial index, so a claim reads only waiting
 * jobs and the reaper only active ones.
 *
 * These tables belong to the extension's functions: change them only through
 * the functions, which keep the per-queue counters in shared memory exact.
 */
CREATE TABLE immich_jobs.queue (
    queue_id        integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    queue_name      text NOT NULL UNIQUE
                    CHECK (queue_name ~ '^[A-Za-z0-9_.:-]{1,63}$'),
    concurrency     integer NOT NULL CHECK (concurrency BETWEEN 1 AND 10000),
    max_attempts    integer NOT NULL CHECK (max_attempts BETWEEN 1 AND 1000),
    lease_timeout   interval NOT NULL
                    CHECK (lease_timeout BETWEEN '1 second' AND '7 days'),
    retry_backoff   interval NOT NULL
                    CHECK (retry_backoff BETWEEN '0' AND '7 days'),
    paused          boolean NOT NULL DEFAULT false,
    completed_base  bigint NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL DEFAULT now()
);

COMMENT ON TABLE immich_jobs.queue IS
'one row per queue with its settings; completed_base holds completions folded in from completed_log';

CREATE SEQUENCE immich_jobs.job_id_seq AS bigint;
CREATE SEQUENCE immich_jobs.lease_token_seq AS bigint;

CREATE TABLE immich_jobs.job (
    job_id          bigint NOT NULL,
    lease_token     bigint,
    run_at          timestamptz NOT NULL,
    created_at      timestamptz NOT NULL,
    started_at      timestamptz,
    finished_at     timestamptz,
    lease_expires_at timestamptz,
    queue_id        integer NOT NULL,
    priority        integer NOT NULL,
    attempt         integer NOT NULL,
    max_attempts    integer NOT NULL,
    state           "char" NOT NULL CHECK (state IN ('w', 'd', 'a', 'f', 'x')),
    job_name        text NOT NULL,
    dedup_key       text,
    worker_id       text,
    last_error      text,
    payload         jsonb NOT NULL,
    CONSTRAINT job_pkey PRIMARY KEY (job_id),
    -- a job has a lease token exactly while it is active: fencing relies on it
    CONSTRAINT job_lease_check
        CHECK ((state = 'a') = (lease_token IS NOT NULL AND lease_expires_at IS NOT NULL))
) WITH (fillfactor = 90);

ALTER SEQUENCE immich_jobs.job_id_seq OWNED BY immich_jobs.job.job_id;
ALTER SEQUENCE immich_jobs.lease_token_seq OWNED BY immich_jobs.job.lease_token;

COMMENT ON TABLE immich_jobs.job IS
'every job still kept: waiting (w), delayed (d), active (a), failed (f), cancelled (x)';

-- claim order: highest priority first, then enqueue order; claims position
-- their scan with a row comparison on (-priority, job_id) (see
-- doc/claim-cursor.md), hence the expression
CREATE INDEX job_claim_idx ON immich_jobs.job
    (queue_id, (-(priority::bigint)), job_id)
    WHERE state = 'w';
-- delayed jobs, by the time they come due
CREATE INDEX job_delayed_idx ON immich_jobs.job (queue_id, run_at)
    WHERE state = 'd';
-- leases, by expiry, for the reaper
CREATE INDEX job_lease_idx ON immich_jobs.job (lease_expires_at)
    WHERE state = 'a';
-- finished jobs kept for the administrator, by age for the pruning
CREATE INDEX job_finished_idx ON immich_jobs.job (finished_at, queue_id)
    WHERE state IN ('f', 'x');
-- dedup keys are unique among the jobs of a queue that have never started
CREATE UNIQUE INDEX job_dedup_idx ON immich_jobs.job (queue_id, dedup_key)
    WHERE dedup_key IS NOT NULL AND started_at IS NULL AND state IN ('w', 'd');

/*
 * One row per completing transaction (or batch); folded into
 * queue.completed_base by the background worker and by reap().
 */
CREATE TABLE immich_jobs.completed_log (
    queue_id        integer NOT NULL,
    n               integer NOT NULL
);

COMMENT ON TABLE immich_jobs.completed_log IS
'completions not yet folded into queue.completed_base';

-- pg_dump must keep the jobs: they are data, not part of the extension
SELECT pg_catalog.pg_extension_config_dump('immich_jobs.queue', '');
SELECT pg_catalog.pg_extension_config_dump('immich_jobs.queue_queue_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('immich_jobs.job', '');
SELECT pg_catalog.pg_extension_config_dump('immich_jobs.job_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('immich_jobs.lease_token_seq', '');
SELECT pg_catalog.pg_extension_config_dump('immich_jobs.completed_log', '');

/*
 * Functions.  All are SECURITY DEFINER so that callers need no privileges on
 * the tables; every statement they run names its objects and operators with
 * their schema, so the caller's search_path cannot change what they do.
 * EXECUTE is revoked from PUBLIC at the end of this script.
 */

-- Queues

CREATE FUNCTION immich_jobs.create_queue(
    queue_name text,
    concurrency integer DEFAULT 1,
    lease_timeout interval DEFAULT '5 minutes',
    max_attempts integer DEFAULT 3,
    retry_backoff interval DEFAULT '30 seconds',
    if_not_exists boolean DEFAULT false)
RETURNS void
AS 'MODULE_PATHNAME', 'ij_create_queue'
LANGUAGE C SECURITY DEFINER;

COMMENT ON FUNCTION immich_jobs.create_queue(text, integer, interval, integer, interval, boolean) IS
'create a queue; an existing name is an error unless if_not_exists';

CREATE FUNCTION immich_jobs.alter_queue(
    queue_name text,
    concurrency integer DEFAULT NULL,
    lease_timeout interval DEFAULT NULL,
    max_attempts integer DEFAULT NULL,
    retry_backoff interval DEFAULT NULL)
RETURNS void
AS 'MODULE_PATHNAME', 'ij_alter_queue'
LANGUAGE C SECURITY DEFINER;

COMMENT ON FUNCTION immich_jobs.alter_queue(text, integer, interval, integer, interval) IS
'change the settings given (non-NULL); they take effect at the next claim';

CREATE FUNCTION immich_jobs.set_concurrency(queue_name text, concurrency integer)
RETURNS void
AS 'MODULE_PATHNAME', 'ij_set_concurrency'
LANGUAGE C SECURITY DEFINER;

COMMENT ON FUNCTION immich_jobs.set_concurrency(text, integer) IS
'change how many jobs of the queue may be active at once; running jobs are untouched';

CREATE FUNCTION immich_jobs.pause_queue(queue_name text)
RETURNS void
AS 'MODULE_PATHNAME', 'ij_pause_queue'
LANGUAGE C SECURITY DEFINER;

COMMENT ON FUNCTION immich_jobs.pause_queue(text) IS
'stop admitting jobs from the queue; leases already held go on';

CREATE FUNCTION immich_jobs.resume_queue(queue_name text)
RETURNS void
AS 'MODULE_PATHNAME', 'ij_resume_queue'
LANGUAGE C SECURITY DEFINER;

COMMENT ON FUNCTION immich_jobs.resume_queue(text) IS
'admit jobs from a paused queue again';

CREATE FUNCTION immich_jobs.drop_queue(queue_name text, force boolean DEFAULT false)
RETURNS void
AS 'MODULE_PATHNAME', 'ij_drop_queue'
LANGUAGE C SECURITY DEFINER;

COMMENT ON FUNCTION immich_jobs.drop_queue(text, boolean) IS
'remove a queue and its jobs; refuses while jobs are active unless force';

-- Enqueue

CREATE FUNCTION immich_jobs.enqueue(
    queue_name text,
    job_name text,
    payload jsonb DEFAULT '{}',
    priority integer DEFAULT 0,
    run_at timestamptz DEFAULT NULL,
    dedup_key text DEFAULT NULL,
    max_attempts integer DEFAULT NULL)
RETURNS bigint
AS 'MODULE_PATHNAME', 'ij_enqueue'
LANGUAGE C SECURITY DEFINER;

COMMENT ON FUNCTION immich_jobs.enqueue(text, text, jsonb, integer, timestamptz, text, integer) IS
'add one job and return its id; with a dedup_key that a not yet started job of the queue has, return that job''s id instead';

CREATE FUNCTION immich_jobs.enqueue_many(queue_name text, jobs jsonb)
RETURNS bigint
AS 'MODULE_PATHNAME', 'ij_enqueue_many'
LANGUAGE C SECURITY DEFINER;

COMMENT ON FUNCTION immich_jobs.enqueue_many(text, jsonb) IS
'add a JSON array of jobs, all or nothing; returns how many were added';

-- Work

CREATE FUNCTION immich_jobs.claim(
    queue_name text,
    worker_id text,
    max_jobs integer DEFAULT 1)
RETURNS TABLE (
    job_id bigint,
    job_name text,
    payload jsonb,
    attempt integer,
    lease_token bigint,
    lease_expires_at timestamptz)
AS 'MODULE_PATHNAME', 'ij_claim'
LANGUAGE C SECURITY DEFINER ROWS 1;

COMMENT ON FUNCTION immich_jobs.claim(text, text, integer) IS
'lease up to max_jobs runnable jobs, best first, never exceeding the queue''s concurrency; returns at once';

CREATE FUNCTION immich_jobs.complete(job_id bigint, lease_token bigint)
RETURNS boolean
AS 'MODULE_PATHNAME', 'ij_complete'
LANGUAGE C SECURITY DEFINER;

COMMENT ON FUNCTION immich_jobs.complete(bigint, bigint) IS
'complete a leased job; false if the token is not the job''s current lease';

CREATE FUNCTION immich_jobs.complete_many(job_ids bigint[], lease_tokens bigint[])
RETURNS bigint
AS 'MODULE_PATHNAME', 'ij_complete_many'
LANGUAGE C SECURITY DEFINER;

COMMENT ON FUNCTION immich_jobs.complete_many(bigint[], bigint[]) IS
'complete a batch of leased jobs (pairs of id and token); returns how many were completed';

CREATE FUNCTION immich_jobs.fail(
    job_id bigint,
    lease_token bigint,
    error text DEFAULT NULL,
    retry_in interval DEFAULT NULL)
RETURNS text
AS 'MODULE_PATHNAME', 'ij_fail'
LANGUAGE C SECURITY DEFINER;

COMMENT ON FUNCTION immich_jobs.fail(bigint, bigint, text, interval) IS
'record a failure: ''retrying'' while attempts remain, ''failed'' after the last, NULL for a stale token';

CREATE FUNCTION immich_jobs.heartbeat(
    job_id bigint,
    lease_token bigint,
    extend_by interval DEFAULT NULL)
RETURNS timestamptz
AS 'MODULE_PATHNAME', 'ij_heartbeat'
LANGUAGE C SECURITY DEFINER;

COMMENT ON FUNCTION immich_jobs.heartbeat(bigint, bigint, interval) IS
'extend a lease to now() + extend_by (default: the queue''s lease_timeout); NULL for a stale token';

CREATE FUNCTION immich_jobs.release(
    job_id bigint,
    lease_token bigint,
    run_at timestamptz DEFAULT NULL)
RETURNS boolean
AS 'MODULE_PATHNAME', 'ij_release'
LANGUAGE C SECURITY DEFINER;

COMMENT ON FUNCTION immich_jobs.release(bigint, bigint, timestamptz) IS
'give a leased job back without counting the attempt; false for a stale token';

CREATE FUNCTION immich_jobs.reap()
RETURNS integer
AS 'MODULE_PATHNAME', 'ij_reap'
LANGUAGE C SECURITY DEFINER;

COMMENT ON FUNCTION immich_jobs.reap() IS
'reclaim every expired lease (back to waiting, or failed after the last attempt); returns how many';

-- Administer

CREATE FUNCTION immich_jobs.retry_failed(queue_name text)
RETURNS bigint
AS 'MODULE_PATHNAME', 'ij_retry_failed'
LANGUAGE C SECURITY DEFINER;

COMMENT ON FUNCTION immich_jobs.retry_failed(text) IS
'put the queue''s failed jobs back to waiting with a fresh attempt count; returns how many';

CREATE FUNCTION immich_jobs.clear(queue_name text, state text DEFAULT 'waiting')
RETURNS bigint
AS 'MODULE_PATHNAME', 'ij_clear'
LANGUAGE C SECURITY DEFINER;

COMMENT ON FUNCTION immich_jobs.clear(text, text) IS
'remove the queue''s jobs in a state (waiting, which includes delayed; delayed; failed; cancelled; completed resets the count); returns how many';

CREATE FUNCTION immich_jobs.cancel(job_id bigint)
RETURNS boolean
AS 'MODULE_PATHNAME', 'ij_cancel'
LANGUAGE C SECURITY DEFINER;

COMMENT ON FUNCTION immich_jobs.cancel(bigint) IS
'cancel a waiting, delayed or active job (revoking its lease); false if it has already finished';

CREATE FUNCTION immich_jobs._queue_counts(
    queue_id integer,
    OUT active bigint,
    OUT waiting bigint,
    OUT delayed bigint,
    OUT failed bigint,
    OUT completed bigint)
RETURNS record
AS 'MODULE_PATHNAME', 'ij_queue_counts'
LANGUAGE C STRICT SECURITY DEFINER;

COMMENT ON FUNCTION immich_jobs._queue_counts(integer) IS
'internal: the job counts of one queue, from shared memory when the library is preloaded';

CREATE FUNCTION immich_jobs._preloaded()
RETURNS boolean
AS 'MODULE_PATHNAME', 'ij_preloaded'
LANGUAGE C STRICT;

COMMENT ON FUNCTION immich_jobs._preloaded() IS
'internal: whether the library is in shared_preload_libraries';

-- Without the preload, CREATE EXTENSION says so (NOTICE) when it commits.
SELECT immich_jobs._preloaded();

-- Views

CREATE VIEW immich_jobs.queue_counts AS
    SELECT q.queue_name, q.paused, q.concurrency,
           c.active, c.waiting, c.delayed, c.failed, c.completed
      FROM immich_jobs.queue q
           CROSS JOIN LATERAL immich_jobs._queue_counts(q.queue_id) c;

COMMENT ON VIEW immich_jobs.queue_counts IS
'one row per queue: its settings and how many jobs are active, waiting, delayed, failed and completed';

CREATE VIEW immich_jobs.jobs AS
    SELECT j.job_id, q.queue_name, j.job_name,
           CASE j.state
               WHEN 'w' THEN 'waiting'
               WHEN 'd' THEN 'delayed'
               WHEN 'a' THEN 'active'
               WHEN 'f' THEN 'failed'
               WHEN 'x' THEN 'cancelled'
           END AS state,
           j.priority, j.attempt, j.max_attempts, j.run_at, j.created_at,
           j.started_at, j.finished_at, j.worker_id, j.lease_expires_at,
           j.last_error, j.dedup_key, j.payload
      FROM immich_jobs.job j
           JOIN immich_jobs.queue q ON q.queue_id = j.queue_id;

COMMENT ON VIEW immich_jobs.jobs IS
'one row per job still kept (completed jobs are only counted)';

-- Nothing is callable or readable until the owner grants it.
REVOKE ALL ON ALL TABLES IN SCHEMA immich_jobs FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA immich_jobs FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA immich_jobs FROM PUBLIC;
