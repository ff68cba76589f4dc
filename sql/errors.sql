--
-- Errors: every error of every function, with its SQLSTATE: NULL for each
-- required argument (22004), bad queue names and out-of-range values at
-- both edges (22023; the in-range edges succeed), unknown queues and job ids
-- (42704), a queue created twice (42710), a busy queue dropped (55006).
-- No input may end in an internal error (XX000).
--
-- Every queue of this file is named 'err.*'; all files share one database.
--
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS immich_jobs;
RESET client_min_messages;

-- run a statement: 'ok', or its SQLSTATE and message
CREATE FUNCTION pg_temp.sqlstate_of(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE q;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ' ' || SQLERRM;
END $$;
-- every result, to look for internal errors at the end
CREATE TEMP TABLE results (n serial, call text, result text);

SELECT immich_jobs.create_queue('err.q', concurrency => 2);
SELECT immich_jobs.enqueue('err.q', 'job') > 0 AS enqueued;

--
-- create_queue
--
INSERT INTO results (call, result)
SELECT q, pg_temp.sqlstate_of(q) FROM (VALUES
  -- NULL for each argument
  ($$SELECT immich_jobs.create_queue(NULL)$$),
  ($$SELECT immich_jobs.create_queue('err.n', NULL)$$),
  ($$SELECT immich_jobs.create_queue('err.n', 1, NULL)$$),
  ($$SELECT immich_jobs.create_queue('err.n', 1, '1 minute', NULL)$$),
  ($$SELECT immich_jobs.create_queue('err.n', 1, '1 minute', 1, NULL)$$),
  ($$SELECT immich_jobs.create_queue('err.n', 1, '1 minute', 1, '0', NULL)$$),
  -- queue names: 1 to 63 characters of [A-Za-z0-9_.:-]
  ($$SELECT immich_jobs.create_queue('')$$),
  ($$SELECT immich_jobs.create_queue(repeat('a', 64))$$),
  ($$SELECT immich_jobs.create_queue('a b')$$),
  ($$SELECT immich_jobs.create_queue('a/b')$$),
  ($$SELECT immich_jobs.create_queue('a;b')$$),
  ($$SELECT immich_jobs.create_queue('a''b')$$),
  ($$SELECT immich_jobs.create_queue('a"b')$$),
  ($$SELECT immich_jobs.create_queue('a*')$$),
  ($$SELECT immich_jobs.create_queue('a%s')$$),
  ($$SELECT immich_jobs.create_queue(E'tab\there')$$),
  ($$SELECT immich_jobs.create_queue(E'new\nline')$$),
  ($$SELECT immich_jobs.create_queue(' err.q')$$),
  ($$SELECT immich_jobs.create_queue(repeat('a', 63))$$),
  ($$SELECT immich_jobs.create_queue('AZaz09_.:-')$$),
  ($$SELECT immich_jobs.create_queue('x')$$),
  -- concurrency 1 to 10000
  ($$SELECT immich_jobs.create_queue('err.c0', concurrency => 0)$$),
  ($$SELECT immich_jobs.create_queue('err.c-1', concurrency => -1)$$),
  ($$SELECT immich_jobs.create_queue('err.c10001', concurrency => 10001)$$),
  ($$SELECT immich_jobs.create_queue('err.c1', concurrency => 1)$$),
  ($$SELECT immich_jobs.create_queue('err.c10000', concurrency => 10000)$$),
  -- lease_timeout 1 second to 7 days
  ($$SELECT immich_jobs.create_queue('err.l0', lease_timeout => '0')$$),
  ($$SELECT immich_jobs.create_queue('err.l-1', lease_timeout => '-1 second')$$),
  ($$SELECT immich_jobs.create_queue('err.lsub', lease_timeout => '0.999999 seconds')$$),
  ($$SELECT immich_jobs.create_queue('err.lover', lease_timeout => '7 days 0.000001 seconds')$$),
  ($$SELECT immich_jobs.create_queue('err.lmon', lease_timeout => '1 month')$$),
  ($$SELECT immich_jobs.create_queue('err.l1s', lease_timeout => '1 second')$$),
  ($$SELECT immich_jobs.create_queue('err.l7d', lease_timeout => '7 days')$$),
  ($$SELECT immich_jobs.create_queue('err.l168h', lease_timeout => '168 hours')$$),
  -- max_attempts 1 to 1000
  ($$SELECT immich_jobs.create_queue('err.m0', max_attempts => 0)$$),
  ($$SELECT immich_jobs.create_queue('err.m1001', max_attempts => 1001)$$),
  ($$SELECT immich_jobs.create_queue('err.m1', max_attempts => 1)$$),
  ($$SELECT immich_jobs.create_queue('err.m1000', max_attempts => 1000)$$),
  -- retry_backoff 0 to 7 days
  ($$SELECT immich_jobs.create_queue('err.b-1', retry_backoff => '-0.000001 seconds')$$),
  ($$SELECT immich_jobs.create_queue('err.bover', retry_backoff => '7 days 0.000001 seconds')$$),
  ($$SELECT immich_jobs.create_queue('err.b0', retry_backoff => '0')$$),
  ($$SELECT immich_jobs.create_queue('err.b7d', retry_backoff => '7 days')$$),
  -- an existing name, with and without if_not_exists
  ($$SELECT immich_jobs.create_queue('err.q')$$),
  ($$SELECT immich_jobs.create_queue('err.q', if_not_exists => false)$$),
  ($$SELECT immich_jobs.create_queue('err.q', if_not_exists => true)$$)
) AS v(q)
RETURNING result, call;
-- the queues that were created, and only those
SELECT queue_name, concurrency, lease_timeout, max_attempts, retry_backoff
  FROM immich_jobs.queue
 WHERE queue_name IN ('AZaz09_.:-', 'x', repeat('a', 63)) OR queue_name LIKE 'err.%'
 ORDER BY queue_name COLLATE "C";
SELECT immich_jobs.drop_queue(name)
  FROM unnest(ARRAY['AZaz09_.:-', 'x', repeat('a', 63)]) AS name;
-- a few in full: message, DETAIL, HINT
SELECT immich_jobs.create_queue('a b');
SELECT immich_jobs.create_queue(repeat('a', 64));
SELECT immich_jobs.create_queue('err.q2', concurrency => 0);
SELECT immich_jobs.create_queue('err.q2', lease_timeout => '8 days');
SELECT immich_jobs.create_queue('err.q2', retry_backoff => '-1 second');
SELECT immich_jobs.create_queue('err.q2', max_attempts => NULL);
SELECT immich_jobs.create_queue('err.q');

--
-- alter_queue, set_concurrency, pause_queue, resume_queue, drop_queue
--
INSERT INTO results (call, result)
SELECT q, pg_temp.sqlstate_of(q) FROM (VALUES
  ($$SELECT immich_jobs.alter_queue(NULL)$$),
  ($$SELECT immich_jobs.alter_queue('')$$),
  ($$SELECT immich_jobs.alter_queue('no such queue')$$),
  ($$SELECT immich_jobs.alter_queue('err.missing')$$),
  ($$SELECT immich_jobs.alter_queue('err.missing', concurrency => 2)$$),
  ($$SELECT immich_jobs.alter_queue('err.q', concurrency => 0)$$),
  ($$SELECT immich_jobs.alter_queue('err.q', concurrency => 10001)$$),
  ($$SELECT immich_jobs.alter_queue('err.q', lease_timeout => '0.5 seconds')$$),
  ($$SELECT immich_jobs.alter_queue('err.q', lease_timeout => '7 days 1 second')$$),
  ($$SELECT immich_jobs.alter_queue('err.q', max_attempts => 0)$$),
  ($$SELECT immich_jobs.alter_queue('err.q', max_attempts => 1001)$$),
  ($$SELECT immich_jobs.alter_queue('err.q', retry_backoff => '-1 second')$$),
  ($$SELECT immich_jobs.alter_queue('err.q', retry_backoff => '7 days 1 second')$$),
  ($$SELECT immich_jobs.alter_queue('err.q', 1, '1 second', 1, '0')$$),
  ($$SELECT immich_jobs.alter_queue('err.q', 10000, '7 days', 1000, '7 days')$$),
  ($$SELECT immich_jobs.alter_queue('err.q', NULL, NULL, NULL, NULL)$$),
  ($$SELECT immich_jobs.set_concurrency(NULL, 1)$$),
  ($$SELECT immich_jobs.set_concurrency('err.q', NULL)$$),
  ($$SELECT immich_jobs.set_concurrency('', 1)$$),
  ($$SELECT immich_jobs.set_concurrency('err.missing', 1)$$),
  ($$SELECT immich_jobs.set_concurrency('err.q', 0)$$),
  ($$SELECT immich_jobs.set_concurrency('err.q', 10001)$$),
  ($$SELECT immich_jobs.set_concurrency('err.q', 1)$$),
  ($$SELECT immich_jobs.set_concurrency('err.q', 10000)$$),
  ($$SELECT immich_jobs.pause_queue(NULL)$$),
  ($$SELECT immich_jobs.pause_queue('')$$),
  ($$SELECT immich_jobs.pause_queue('err.missing')$$),
  ($$SELECT immich_jobs.resume_queue(NULL)$$),
  ($$SELECT immich_jobs.resume_queue('a b')$$),
  ($$SELECT immich_jobs.resume_queue('err.missing')$$),
  ($$SELECT immich_jobs.drop_queue(NULL)$$),
  ($$SELECT immich_jobs.drop_queue('err.q', NULL)$$),
  ($$SELECT immich_jobs.drop_queue(repeat('a', 64))$$),
  ($$SELECT immich_jobs.drop_queue('err.missing')$$),
  ($$SELECT immich_jobs.drop_queue('err.missing', true)$$)
) AS v(q)
RETURNING result, call;
-- the in-range edges took effect; the rest changed nothing
SELECT queue_name, concurrency, lease_timeout, max_attempts, retry_backoff, paused
  FROM immich_jobs.queue WHERE queue_name = 'err.q';
SELECT immich_jobs.alter_queue('err.q', 2, '5 minutes', 3, '30 seconds');
SELECT immich_jobs.alter_queue('err.missing', max_attempts => 2);
SELECT immich_jobs.set_concurrency('err.q', 10001);

--
-- drop_queue of a queue with an active job: 55006, unless force
--
SELECT immich_jobs.create_queue('err.busy');
SELECT immich_jobs.enqueue('err.busy', 'job') > 0 AS enqueued;
SELECT count(*) AS claimed FROM immich_jobs.claim('err.busy', 'w1');
INSERT INTO results (call, result)
SELECT q, pg_temp.sqlstate_of(q) FROM (VALUES
  ($$SELECT immich_jobs.drop_queue('err.busy')$$),
  ($$SELECT immich_jobs.drop_queue('err.busy', false)$$),
  ($$SELECT immich_jobs.drop_queue('err.busy', true)$$),
  ($$SELECT immich_jobs.drop_queue('err.busy', true)$$)
) AS v(q)
RETURNING result, call;

--
-- enqueue and enqueue_many
--
INSERT INTO results (call, result)
SELECT q, pg_temp.sqlstate_of(q) FROM (VALUES
  ($$SELECT immich_jobs.enqueue(NULL, 'job')$$),
  ($$SELECT immich_jobs.enqueue('err.q', NULL)$$),
  ($$SELECT immich_jobs.enqueue('err.q', 'job', NULL)$$),
  ($$SELECT immich_jobs.enqueue('err.q', 'job', '{}', NULL)$$),
  ($$SELECT immich_jobs.enqueue('', 'job')$$),
  ($$SELECT immich_jobs.enqueue('err q', 'job')$$),
  ($$SELECT immich_jobs.enqueue('err.missing', 'job')$$),
  ($$SELECT immich_jobs.enqueue('err.missing', 'job', dedup_key => 'k')$$),
  -- job names: 1 to 255 bytes
  ($$SELECT immich_jobs.enqueue('err.q', '')$$),
  ($$SELECT immich_jobs.enqueue('err.q', repeat('n', 256))$$),
  ($$SELECT immich_jobs.enqueue('err.q', repeat('n', 255))$$),
  ($$SELECT immich_jobs.enqueue('err.q', 'n')$$),
  -- dedup keys: 1 to 255 bytes
  ($$SELECT immich_jobs.enqueue('err.q', 'job', dedup_key => '')$$),
  ($$SELECT immich_jobs.enqueue('err.q', 'job', dedup_key => repeat('k', 256))$$),
  ($$SELECT immich_jobs.enqueue('err.q', 'job', dedup_key => repeat('k', 255))$$),
  ($$SELECT immich_jobs.enqueue('err.q', 'job', dedup_key => 'k')$$),
  -- max_attempts: 1 to 1000
  ($$SELECT immich_jobs.enqueue('err.q', 'job', max_attempts => 0)$$),
  ($$SELECT immich_jobs.enqueue('err.q', 'job', max_attempts => 1001)$$),
  ($$SELECT immich_jobs.enqueue('err.q', 'job', max_attempts => -2147483648)$$),
  ($$SELECT immich_jobs.enqueue('err.q', 'job', max_attempts => 1)$$),
  ($$SELECT immich_jobs.enqueue('err.q', 'job', max_attempts => 1000)$$),
  -- priority: any integer; run_at: any finite timestamp
  ($$SELECT immich_jobs.enqueue('err.q', 'job', priority => 2147483647)$$),
  ($$SELECT immich_jobs.enqueue('err.q', 'job', priority => -2147483648)$$),
  ($$SELECT immich_jobs.enqueue('err.q', 'job', run_at => 'infinity')$$),
  ($$SELECT immich_jobs.enqueue('err.q', 'job', run_at => '-infinity')$$),
  ($$SELECT immich_jobs.enqueue('err.q', 'job', run_at => '294276-12-31 23:59:59+00')$$),
  ($$SELECT immich_jobs.enqueue('err.q', 'job', run_at => '4713-11-24 00:00:00+00 BC')$$),
  -- enqueue_many
  ($$SELECT immich_jobs.enqueue_many(NULL, '[]')$$),
  ($$SELECT immich_jobs.enqueue_many('err.q', NULL)$$),
  ($$SELECT immich_jobs.enqueue_many('', '[]')$$),
  ($$SELECT immich_jobs.enqueue_many('err.missing', '[]')$$),
  ($$SELECT immich_jobs.enqueue_many('err.missing', '[{"name": "x"}]')$$),
  ($$SELECT immich_jobs.enqueue_many('err.q', '{}')$$),
  ($$SELECT immich_jobs.enqueue_many('err.q', '[{"name": 1}]')$$),
  ($$SELECT immich_jobs.enqueue_many('err.q', '[]')$$)
) AS v(q)
RETURNING result, call;
SELECT * FROM immich_jobs.queue_counts WHERE queue_name = 'err.q';
SELECT immich_jobs.enqueue('err.missing', 'job');
SELECT immich_jobs.enqueue('err.q', 'job', max_attempts => 0);
SELECT immich_jobs.enqueue('err.q', '');

--
-- claim, complete, complete_many, fail, heartbeat, release
--
INSERT INTO results (call, result)
SELECT q, pg_temp.sqlstate_of(q) FROM (VALUES
  ($$SELECT * FROM immich_jobs.claim(NULL, 'w')$$),
  ($$SELECT * FROM immich_jobs.claim('err.q', NULL)$$),
  ($$SELECT * FROM immich_jobs.claim('err.q', 'w', NULL)$$),
  ($$SELECT * FROM immich_jobs.claim('', 'w')$$),
  ($$SELECT * FROM immich_jobs.claim('err.missing', 'w')$$),
  ($$SELECT * FROM immich_jobs.claim('err.q', 'w', 0)$$),
  ($$SELECT * FROM immich_jobs.claim('err.q', 'w', -1)$$),
  ($$SELECT * FROM immich_jobs.claim('err.q', 'w', 10001)$$),
  ($$SELECT * FROM immich_jobs.claim('err.q', repeat('w', 256))$$),
  ($$SELECT * FROM immich_jobs.claim('err.q', repeat('w', 255), 1)$$),
  ($$SELECT * FROM immich_jobs.claim('err.q', '', 10000)$$),
  ($$SELECT immich_jobs.complete(NULL, 1)$$),
  ($$SELECT immich_jobs.complete(1, NULL)$$),
  ($$SELECT immich_jobs.complete_many(NULL, '{}')$$),
  ($$SELECT immich_jobs.complete_many('{}', NULL)$$),
  ($$SELECT immich_jobs.complete_many('{1,NULL}', '{1,2}')$$),
  ($$SELECT immich_jobs.complete_many('{1}', '{NULL}')$$),
  ($$SELECT immich_jobs.complete_many('{1,2}', '{1}')$$),
  ($$SELECT immich_jobs.complete_many('{}', '{1}')$$),
  ($$SELECT immich_jobs.complete_many('{{1,2}}', '{{1,2}}')$$),
  ($$SELECT immich_jobs.complete_many('{{1},{2}}', '{1,2}')$$),
  ($$SELECT immich_jobs.complete_many('[5:6]={-1,-2}', '{1,2}')$$),
  ($$SELECT immich_jobs.fail(NULL, 1)$$),
  ($$SELECT immich_jobs.fail(1, NULL)$$),
  ($$SELECT immich_jobs.fail(-1, -1, 'e', '-0.000001 seconds')$$),
  ($$SELECT immich_jobs.fail(-1, -1, 'e', '7 days 0.000001 seconds')$$),
  ($$SELECT immich_jobs.fail(-1, -1, 'e', '1 month')$$),
  ($$SELECT immich_jobs.fail(-1, -1, 'e', '0')$$),
  ($$SELECT immich_jobs.fail(-1, -1, 'e', '7 days')$$),
  ($$SELECT immich_jobs.fail(-1, -1, NULL, NULL)$$),
  ($$SELECT immich_jobs.heartbeat(NULL, 1)$$),
  ($$SELECT immich_jobs.heartbeat(1, NULL)$$),
  ($$SELECT immich_jobs.heartbeat(-1, -1, '0')$$),
  ($$SELECT immich_jobs.heartbeat(-1, -1, '0.999999 seconds')$$),
  ($$SELECT immich_jobs.heartbeat(-1, -1, '7 days 0.000001 seconds')$$),
  ($$SELECT immich_jobs.heartbeat(-1, -1, '1 second')$$),
  ($$SELECT immich_jobs.heartbeat(-1, -1, '7 days')$$),
  ($$SELECT immich_jobs.heartbeat(-1, -1, NULL)$$),
  ($$SELECT immich_jobs.release(NULL, 1)$$),
  ($$SELECT immich_jobs.release(1, NULL)$$),
  ($$SELECT immich_jobs.release(-1, -1, NULL)$$),
  ($$SELECT immich_jobs.release(-1, -1, 'infinity')$$)
) AS v(q)
RETURNING result, call;
-- the claims with in-range arguments leased the queue's jobs
SELECT * FROM immich_jobs.queue_counts WHERE queue_name = 'err.q';
SELECT * FROM immich_jobs.claim('err.q', 'w', 0);
SELECT immich_jobs.complete_many('{1,2}', '{1}');

-- the edges of heartbeat's extend_by on a lease held (rolled back, so that
-- no short lease is left behind)
SELECT immich_jobs.create_queue('err.hb');
SELECT immich_jobs.enqueue('err.hb', 'job') > 0 AS enqueued;
SELECT job_id AS hb_id, lease_token AS hb_tok
  FROM immich_jobs.claim('err.hb', 'w') \gset
BEGIN;
WITH h AS MATERIALIZED (SELECT immich_jobs.heartbeat(:hb_id, :hb_tok, '1 second') AS e)
SELECT e BETWEEN statement_timestamp() + interval '1 second'
             AND clock_timestamp() + interval '1 second' AS one_second FROM h;
WITH h AS MATERIALIZED (SELECT immich_jobs.heartbeat(:hb_id, :hb_tok, '7 days') AS e)
SELECT e BETWEEN statement_timestamp() + interval '7 days'
             AND clock_timestamp() + interval '7 days' AS seven_days FROM h;
ROLLBACK;
SELECT immich_jobs.heartbeat(:hb_id, :hb_tok, '0.5 seconds');
SELECT immich_jobs.fail(:hb_id, :hb_tok, 'x', '8 days');
-- the lease is unchanged by the errors
SELECT immich_jobs.complete(:hb_id, :hb_tok);

--
-- retry_failed, clear, cancel
--
INSERT INTO results (call, result)
SELECT q, pg_temp.sqlstate_of(q) FROM (VALUES
  ($$SELECT immich_jobs.retry_failed(NULL)$$),
  ($$SELECT immich_jobs.retry_failed('')$$),
  ($$SELECT immich_jobs.retry_failed('err.missing')$$),
  ($$SELECT immich_jobs.clear(NULL)$$),
  ($$SELECT immich_jobs.clear(NULL, 'failed')$$),
  ($$SELECT immich_jobs.clear('err.q', NULL)$$),
  ($$SELECT immich_jobs.clear('a b')$$),
  ($$SELECT immich_jobs.clear('err.missing')$$),
  ($$SELECT immich_jobs.clear('err.missing', 'delayed')$$),
  ($$SELECT immich_jobs.clear('err.missing', 'failed')$$),
  ($$SELECT immich_jobs.clear('err.missing', 'cancelled')$$),
  ($$SELECT immich_jobs.clear('err.missing', 'completed')$$),
  ($$SELECT immich_jobs.clear('err.q', 'active')$$),
  ($$SELECT immich_jobs.clear('err.q', 'running')$$),
  ($$SELECT immich_jobs.clear('err.q', 'WAITING')$$),
  ($$SELECT immich_jobs.clear('err.q', 'waiting ')$$),
  ($$SELECT immich_jobs.clear('err.q', '')$$),
  ($$SELECT immich_jobs.clear('err.q', 'paused')$$),
  ($$SELECT immich_jobs.cancel(NULL)$$),
  ($$SELECT immich_jobs.cancel(0)$$),
  ($$SELECT immich_jobs.cancel(-9223372036854775808)$$),
  ($$SELECT immich_jobs.cancel(9223372036854775807)$$)
) AS v(q)
RETURNING result, call;
SELECT immich_jobs.clear('err.q', 'active');
SELECT immich_jobs.clear('err.q', 'bogus');
SELECT immich_jobs.clear('err.missing', 'completed');
SELECT immich_jobs.cancel(0);
SELECT immich_jobs.cancel(NULL);
-- ... all of which changed nothing
SELECT * FROM immich_jobs.queue_counts WHERE queue_name = 'err.q';

--
-- no input above ended in an internal error, or in an error without a
-- specific SQLSTATE
--
SELECT count(*) AS calls,
       count(*) FILTER (WHERE result = 'ok') AS ok,
       count(*) FILTER (WHERE result LIKE '22004 %') AS "22004",
       count(*) FILTER (WHERE result LIKE '22023 %') AS "22023",
       count(*) FILTER (WHERE result LIKE '42704 %') AS "42704",
       count(*) FILTER (WHERE result LIKE '42710 %') AS "42710",
       count(*) FILTER (WHERE result LIKE '55006 %') AS "55006"
  FROM results;
SELECT result, call FROM results
 WHERE result NOT LIKE 'ok' AND left(result, 5) NOT IN
       ('22004', '22023', '42704', '42710', '55006');

--
-- Multibyte text, in a UTF8 database (whatever the encoding of this one):
-- lengths are in bytes, and an error that quotes a long name or key quotes
-- whole characters, so the message is valid text that any client encoding
-- can receive.
--
\set regress_db :DBNAME
CREATE DATABASE regress_immich_jobs_utf8 TEMPLATE template0 ENCODING 'UTF8'
    LOCALE 'C';
\c regress_immich_jobs_utf8
SET client_min_messages = warning;
CREATE EXTENSION immich_jobs;
RESET client_min_messages;
-- the SQLSTATE (or 'ok'), and whether the message is valid UTF8
CREATE FUNCTION pg_temp.error_of(q text, OUT state text, OUT message_valid boolean)
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE q;
    state := 'ok';
EXCEPTION WHEN OTHERS THEN
    state := SQLSTATE;
    message_valid := true;
    DECLARE
        msg text := SQLERRM;
    BEGIN
        PERFORM convert_to(msg, 'UTF8');
    EXCEPTION WHEN character_not_in_repertoire THEN
        message_valid := false;
    END;
END $$;
SELECT immich_jobs.create_queue('utf8', concurrency => 10);
-- (labels, not the calls, are shown: the output stays ASCII whatever the
-- client encoding)
SELECT label, e.state, e.message_valid FROM (VALUES
  -- 'é' is two bytes: 127 of them fit in 255 bytes, 128 do not
  ('job name, 254 bytes',
   $$SELECT immich_jobs.enqueue('utf8', repeat('é', 127))$$),
  ('job name, 256 bytes',
   $$SELECT immich_jobs.enqueue('utf8', repeat('é', 128))$$),
  ('job name, 257 bytes, byte 64 inside a character',
   $$SELECT immich_jobs.enqueue('utf8', 'x' || repeat('é', 128))$$),
  ('dedup key, 254 bytes',
   $$SELECT immich_jobs.enqueue('utf8', 'job', dedup_key => repeat('é', 127))$$),
  ('dedup key, 257 bytes, byte 64 inside a character',
   $$SELECT immich_jobs.enqueue('utf8', 'job', dedup_key => 'x' || repeat('é', 128))$$),
  ('enqueue_many name, 257 bytes',
   $$SELECT immich_jobs.enqueue_many('utf8',
       jsonb_build_array(jsonb_build_object('name', 'x' || repeat('é', 128))))$$),
  ('enqueue_many dedup key, 257 bytes',
   $$SELECT immich_jobs.enqueue_many('utf8',
       jsonb_build_array(jsonb_build_object('name', 'j',
                                            'dedup_key', 'x' || repeat('é', 128))))$$),
  ('worker_id, 254 bytes',
   $$SELECT * FROM immich_jobs.claim('utf8', repeat('é', 127))$$),
  ('worker_id, 256 bytes',
   $$SELECT * FROM immich_jobs.claim('utf8', repeat('é', 128))$$),
  ('queue name with a non-ASCII letter',
   $$SELECT immich_jobs.create_queue('queue-é')$$),
  ('queue name of ten non-ASCII letters',
   $$SELECT immich_jobs.create_queue(repeat('é', 10))$$)
) AS v(label, q), LATERAL pg_temp.error_of(q) AS e;
SELECT length(job_name) AS chars, octet_length(job_name) AS bytes, worker_id IS NOT NULL AS claimed
  FROM immich_jobs.jobs ORDER BY job_id;
\c :regress_db
DROP DATABASE regress_immich_jobs_utf8;

-- clean up: this file leaves no queue behind
SELECT immich_jobs.drop_queue(queue_name, force => true)
  FROM immich_jobs.queue WHERE queue_name LIKE 'err.%' ORDER BY queue_name;
SELECT count(*) AS left_over FROM immich_jobs.queue_counts
 WHERE queue_name LIKE 'err.%';
