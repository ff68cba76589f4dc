--
-- search_path: a caller whose search_path puts a schema before pg_catalog
-- that redefines operators and functions the extension's statements use
-- cannot change what the functions do.  Every call below runs with
-- search_path = evil, pg_catalog (in a new session, so the extension
-- prepares its statements under it); every check runs after
-- RESET search_path.
--
-- Every queue of this file is named 'sp.*'; all files share one database.
--
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS immich_jobs;
RESET client_min_messages;

CREATE TEMP TABLE held (job_id bigint, job_name text, payload jsonb,
                        attempt integer, lease_token bigint,
                        lease_expires_at timestamptz);

CREATE SCHEMA evil;
-- "char" = says the opposite: state = 'w' would match every other state
CREATE FUNCTION evil.char_eq("char", "char") RETURNS boolean
    LANGUAGE sql IMMUTABLE AS 'SELECT $1 OPERATOR(pg_catalog.<>) $2';
CREATE OPERATOR evil.= (LEFTARG = "char", RIGHTARG = "char",
                        FUNCTION = evil.char_eq);
-- text, bigint and integer = are always true: any queue, job or token
CREATE FUNCTION evil.text_eq(text, text) RETURNS boolean
    LANGUAGE sql IMMUTABLE AS 'SELECT true';
CREATE OPERATOR evil.= (LEFTARG = text, RIGHTARG = text,
                        FUNCTION = evil.text_eq);
CREATE FUNCTION evil.int8_eq(bigint, bigint) RETURNS boolean
    LANGUAGE sql IMMUTABLE AS 'SELECT true';
CREATE OPERATOR evil.= (LEFTARG = bigint, RIGHTARG = bigint,
                        FUNCTION = evil.int8_eq);
CREATE FUNCTION evil.int4_eq(integer, integer) RETURNS boolean
    LANGUAGE sql IMMUTABLE AS 'SELECT true';
CREATE OPERATOR evil.= (LEFTARG = integer, RIGHTARG = integer,
                        FUNCTION = evil.int4_eq);
-- every timestamp is before and after every other one
CREATE FUNCTION evil.ts_true(timestamptz, timestamptz) RETURNS boolean
    LANGUAGE sql IMMUTABLE AS 'SELECT true';
CREATE OPERATOR evil.< (LEFTARG = timestamptz, RIGHTARG = timestamptz,
                        FUNCTION = evil.ts_true);
CREATE OPERATOR evil.> (LEFTARG = timestamptz, RIGHTARG = timestamptz,
                        FUNCTION = evil.ts_true);
-- adding an interval subtracts it
CREATE FUNCTION evil.ts_plus(timestamptz, interval) RETURNS timestamptz
    LANGUAGE sql IMMUTABLE AS 'SELECT $1 OPERATOR(pg_catalog.-) $2';
CREATE OPERATOR evil.+ (LEFTARG = timestamptz, RIGHTARG = interval,
                        FUNCTION = evil.ts_plus);
-- it is always the year 2000, and every sequence says 1
CREATE FUNCTION evil.now() RETURNS timestamptz
    LANGUAGE sql AS $$SELECT '2000-01-01 00:00:00+00'::timestamptz$$;
CREATE FUNCTION evil.statement_timestamp() RETURNS timestamptz
    LANGUAGE sql AS $$SELECT '2000-01-01 00:00:00+00'::timestamptz$$;
CREATE FUNCTION evil.nextval(regclass) RETURNS bigint
    LANGUAGE sql AS 'SELECT 1::bigint';

-- the trap works: with this search_path, plain SQL gets these
SET search_path = evil, pg_catalog;
SELECT now() OPERATOR(pg_catalog.=) '2000-01-01 00:00:00+00' AS evil_now,
       statement_timestamp() OPERATOR(pg_catalog.=) '2000-01-01 00:00:00+00' AS evil_statement_timestamp,
       'w'::"char" = 'w'::"char" AS evil_char_eq,
       'a'::text = 'b'::text AS evil_text_eq,
       1::bigint = 2::bigint AS evil_int8_eq,
       nextval('pg_catalog.pg_class'::regclass) AS evil_nextval;
RESET search_path;

--
-- queues and enqueue
--
SET search_path = evil, pg_catalog;
SELECT immich_jobs.create_queue('sp.decoy', concurrency => 10);
SELECT immich_jobs.create_queue('sp.q', concurrency => 3, max_attempts => 2,
                                retry_backoff => '10 seconds');
SELECT immich_jobs.create_queue('sp.q', if_not_exists => true);
SELECT immich_jobs.alter_queue('sp.q', lease_timeout => '10 minutes');
SELECT immich_jobs.set_concurrency('sp.q', 2);
SELECT immich_jobs.pause_queue('sp.decoy');
SELECT immich_jobs.enqueue('sp.decoy', 'decoy', priority => 100) AS decoy \gset
SELECT immich_jobs.enqueue('sp.q', 'a') AS a \gset
SELECT immich_jobs.enqueue('sp.q', 'b', priority => 5) AS b \gset
SELECT immich_jobs.enqueue('sp.q', 'c', dedup_key => 'k') AS c \gset
SELECT immich_jobs.enqueue('sp.q', 'c again', dedup_key => 'k') AS c2 \gset
SELECT immich_jobs.enqueue('sp.q', 'other key', dedup_key => 'other') AS c3 \gset
SELECT immich_jobs.enqueue('sp.q', 'later', run_at => '2999-01-01 00:00:00+00')
       AS later \gset
SELECT immich_jobs.enqueue_many('sp.q', '[{"name": "m1"},
                                          {"name": "m2", "dedup_key": "k"},
                                          {"name": "m3", "run_at": "2999-01-01"}]')
       AS added;
RESET search_path;
SELECT :b > :a AND :c > :b AS ids_increase, :c = :c2 AS dedup_same_id,
       :c3 <> :c AS other_key_new_id;
SELECT queue_name, concurrency, lease_timeout, max_attempts, retry_backoff, paused
  FROM immich_jobs.queue WHERE queue_name LIKE 'sp.%' ORDER BY queue_name;
SELECT job_name, state, priority, dedup_key,
       created_at > '2001-01-01' AS created_now, run_at >= created_at AS run_at_ok
  FROM immich_jobs.jobs WHERE queue_name = 'sp.q' ORDER BY job_id;
SELECT count(*) AS jobs, count(DISTINCT job_id) AS distinct_ids
  FROM immich_jobs.jobs WHERE queue_name LIKE 'sp.%';
SELECT * FROM immich_jobs.queue_counts WHERE queue_name LIKE 'sp.%' ORDER BY 1;

--
-- claim (in a transaction: its statement started between now() and the
-- start of the next statement)
--
BEGIN;
SET search_path = evil, pg_catalog;
INSERT INTO held SELECT * FROM immich_jobs.claim('sp.q', 'w1', 10)
RETURNING job_name, attempt;
RESET search_path;
SELECT job_name, lease_expires_at BETWEEN now() + interval '10 minutes'
                                     AND statement_timestamp() + interval '10 minutes' AS lease_10_min
  FROM held ORDER BY job_id;
COMMIT;
SET search_path = evil, pg_catalog;
-- full (concurrency 2): nothing more
SELECT count(*) AS claimed FROM immich_jobs.claim('sp.q', 'w1', 10);
-- paused: nothing
SELECT count(*) AS claimed FROM immich_jobs.claim('sp.decoy', 'w1', 10);
RESET search_path;
SELECT job_id AS b_id, lease_token AS b_tok FROM held WHERE job_name = 'b' \gset
SELECT job_id AS a_id, lease_token AS a_tok FROM held WHERE job_name = 'a' \gset
SELECT * FROM immich_jobs.queue_counts WHERE queue_name LIKE 'sp.%' ORDER BY 1;

--
-- fencing, complete, heartbeat, fail, release
--
SET search_path = evil, pg_catalog;
-- a wrong token, a wrong job
SELECT immich_jobs.complete(:a_id, :b_tok) AS wrong_token,
       immich_jobs.complete(:decoy, :a_tok) AS wrong_job,
       immich_jobs.heartbeat(:a_id, :b_tok) AS wrong_token_heartbeat,
       immich_jobs.fail(:a_id, :b_tok) AS wrong_token_fail,
       immich_jobs.release(:a_id, :b_tok) AS wrong_token_release,
       immich_jobs.complete_many(ARRAY[:a_id], ARRAY[:b_tok]) AS wrong_token_many;
RESET search_path;
SELECT job_name, state FROM immich_jobs.jobs
 WHERE job_id IN (:a_id, :b_id, :decoy) ORDER BY job_id;
BEGIN;
SET search_path = evil, pg_catalog;
SELECT immich_jobs.heartbeat(:a_id, :a_tok, '1 hour') AS new_expiry \gset
RESET search_path;
SELECT :'new_expiry'::timestamptz BETWEEN now() + interval '1 hour'
                                    AND statement_timestamp() + interval '1 hour' AS heartbeat_now_plus_1_hour;
COMMIT;
SET search_path = evil, pg_catalog;
SELECT immich_jobs.complete(:a_id, :a_tok) AS first_time;
SELECT immich_jobs.complete(:a_id, :a_tok) AS second_time;
RESET search_path;
SELECT count(*) AS a_rows FROM immich_jobs.job WHERE job_id = :a_id;
BEGIN;
SET search_path = evil, pg_catalog;
SELECT immich_jobs.fail(:b_id, :b_tok, 'oops');
RESET search_path;
SELECT state, attempt, last_error, run_at - now() AS retry_after
  FROM immich_jobs.jobs WHERE job_id = :b_id;
COMMIT;
SELECT * FROM immich_jobs.queue_counts WHERE queue_name = 'sp.q';
SET search_path = evil, pg_catalog;
INSERT INTO held SELECT * FROM immich_jobs.claim('sp.q', 'w1', 10)
RETURNING job_name, attempt;
RESET search_path;
SELECT job_id AS c_id, lease_token AS c_tok FROM held WHERE job_name = 'c' \gset
SELECT job_id AS o_id, lease_token AS o_tok FROM held WHERE job_name = 'other key' \gset
BEGIN;
SET search_path = evil, pg_catalog;
SELECT immich_jobs.release(:c_id, :c_tok);
SELECT immich_jobs.release(:o_id, :o_tok, '2999-01-01 00:00:00+00');
RESET search_path;
SELECT job_name, state, attempt, run_at = now() AS run_at_now
  FROM immich_jobs.jobs WHERE job_id IN (:c_id, :o_id) ORDER BY job_id;
COMMIT;
SELECT * FROM immich_jobs.queue_counts WHERE queue_name = 'sp.q';

--
-- reap (the lease made to expire, as superuser, in reap()'s transaction):
-- back to waiting, then at the last attempt to failed
--
SET search_path = evil, pg_catalog;
SELECT immich_jobs.reap() AS reaped_nothing;
INSERT INTO held SELECT * FROM immich_jobs.claim('sp.q', 'w2', 1)
RETURNING job_name, attempt;
RESET search_path;
BEGIN;
UPDATE immich_jobs.job SET lease_expires_at = now() - interval '1 second'
 WHERE job_id = :c_id;
SET search_path = evil, pg_catalog;
SELECT immich_jobs.reap() AS reaped;
RESET search_path;
COMMIT;
SELECT job_name, state, attempt, last_error FROM immich_jobs.jobs
 WHERE job_id = :c_id;
SET search_path = evil, pg_catalog;
INSERT INTO held SELECT * FROM immich_jobs.claim('sp.q', 'w2', 1)
RETURNING job_name, attempt;
RESET search_path;
BEGIN;
UPDATE immich_jobs.job SET lease_expires_at = now() - interval '1 second'
 WHERE job_id = :c_id;
SET search_path = evil, pg_catalog;
SELECT immich_jobs.reap() AS reaped;
RESET search_path;
COMMIT;
SELECT job_name, state, attempt, last_error FROM immich_jobs.jobs
 WHERE job_id = :c_id;
SELECT count(*) AS still_active FROM immich_jobs.jobs
 WHERE queue_name = 'sp.q' AND state = 'active';
SELECT * FROM immich_jobs.queue_counts WHERE queue_name = 'sp.q';

--
-- administration and the views
--
SET search_path = evil, pg_catalog;
SELECT immich_jobs.retry_failed('sp.q') AS retried;
SELECT immich_jobs.retry_failed('sp.q') AS retried_again;
SELECT immich_jobs.cancel(:c_id) AS cancel_waiting;
SELECT immich_jobs.cancel(:c_id) AS cancel_again;
SELECT immich_jobs.cancel(:decoy) AS cancel_decoy;
SELECT immich_jobs.clear('sp.q', 'delayed') AS cleared_delayed;
SELECT immich_jobs.clear('sp.q', 'cancelled') AS cleared_cancelled;
SELECT queue_name, paused, concurrency, active, waiting, delayed, failed, completed
  FROM immich_jobs.queue_counts WHERE queue_name OPERATOR(pg_catalog.=) 'sp.q';
SELECT job_name, state, attempt FROM immich_jobs.jobs
 WHERE queue_name OPERATOR(pg_catalog.=) 'sp.q' ORDER BY job_id;
RESET search_path;
SELECT queue_name, job_name, state FROM immich_jobs.jobs
 WHERE queue_name LIKE 'sp.%' ORDER BY job_id;
SET search_path = evil, pg_catalog;
SELECT immich_jobs.clear('sp.q', 'completed') AS cleared_completed;
SELECT immich_jobs.drop_queue('sp.q');
SELECT immich_jobs.resume_queue('sp.decoy');
SELECT immich_jobs.clear('sp.decoy') AS cleared_waiting;
SELECT immich_jobs.drop_queue('sp.decoy');
RESET search_path;
SELECT count(*) AS left_over FROM immich_jobs.queue WHERE queue_name LIKE 'sp.%';
SELECT count(*) AS jobs_left FROM immich_jobs.jobs WHERE queue_name LIKE 'sp.%';

SET client_min_messages = warning;
DROP SCHEMA evil CASCADE;
RESET client_min_messages;
