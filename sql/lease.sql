--
-- Leases: claim (max_jobs, admission, lowering the concurrency), complete,
-- complete_many, fail (backoff, retry_in, the last attempt), heartbeat,
-- release, reap, and fencing: a stale lease token changes nothing.
--
-- Every queue of this file is named 'lease.*'; all files share one database.
--
-- To make a lease expire without waiting, the test (a superuser) sets its
-- lease_expires_at in the past, in the same transaction as the reap() that
-- reclaims it, so nothing else sees it expired first.  That changes no count.
--
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS immich_jobs;
RESET client_min_messages;

CREATE TEMP VIEW counts AS
    SELECT * FROM immich_jobs.queue_counts
     WHERE queue_name LIKE 'lease.%' ORDER BY queue_name;
CREATE TEMP TABLE held (job_id bigint, job_name text, payload jsonb,
                        attempt integer, lease_token bigint,
                        lease_expires_at timestamptz);
-- the latest lease of a job this session got, and the one before it
CREATE FUNCTION pg_temp.tok(name text) RETURNS bigint LANGUAGE sql AS
  $$ SELECT lease_token FROM held WHERE job_name = name
      ORDER BY lease_token DESC LIMIT 1 $$;
CREATE FUNCTION pg_temp.old_tok(name text) RETURNS bigint LANGUAGE sql AS
  $$ SELECT lease_token FROM held WHERE job_name = name
      ORDER BY lease_token DESC OFFSET 1 LIMIT 1 $$;
-- a job's id (job names are unique in this file)
CREATE FUNCTION pg_temp.id(name text) RETURNS bigint LANGUAGE sql AS
  $$ SELECT coalesce((SELECT job_id FROM held WHERE job_name = name LIMIT 1),
                     (SELECT job_id FROM immich_jobs.jobs WHERE job_name = name
                         AND queue_name LIKE 'lease.%')) $$;
-- the token the job table holds for a job now (the jobs view does not show it)
CREATE FUNCTION pg_temp.cur_tok(id bigint) RETURNS bigint LANGUAGE sql AS
  $$ SELECT lease_token FROM immich_jobs.job WHERE job_id = id $$;
-- a job's whole row, to show that a call changed nothing
CREATE FUNCTION pg_temp.job_row(name text) RETURNS jsonb LANGUAGE sql AS
  $$ SELECT to_jsonb(j) FROM immich_jobs.job j
      WHERE j.job_id = (SELECT job_id FROM held WHERE job_name = name LIMIT 1) $$;

--
-- claim: max_jobs, and admission (never more than concurrency - active)
--
SELECT immich_jobs.create_queue('lease.adm', concurrency => 5);
SELECT immich_jobs.enqueue('lease.adm', 'a' || i, jsonb_build_object('i', i)) > 0
       AS enqueued
  FROM generate_series(1, 8) i;
-- max_jobs 2: two jobs, each with attempt 1, a token, and a lease of the
-- queue's lease_timeout from the moment of the claim (which lies between
-- the start of its statement and the start of the next statement)
BEGIN;
INSERT INTO held SELECT * FROM immich_jobs.claim('lease.adm', 'worker-A', 2)
RETURNING job_name, payload, attempt, lease_token IS NOT NULL AS has_token,
          lease_expires_at BETWEEN statement_timestamp() + interval '5 minutes'
                               AND clock_timestamp() + interval '5 minutes' AS expires_in_5_min;
SELECT job_name, state, attempt, worker_id, started_at = now() AS started_now,
       lease_expires_at BETWEEN now() + interval '5 minutes'
                            AND statement_timestamp() + interval '5 minutes' AS expires_in_5_min
  FROM immich_jobs.jobs WHERE queue_name = 'lease.adm' ORDER BY job_id;
COMMIT;
SELECT * FROM counts;
-- max_jobs 10, but only 5 - 2 = 3 slots are left
INSERT INTO held SELECT * FROM immich_jobs.claim('lease.adm', 'worker-B', 10)
RETURNING job_name, attempt;
SELECT * FROM counts;
-- full: nothing, whatever max_jobs
SELECT count(*) AS claimed FROM immich_jobs.claim('lease.adm', 'worker-C');
SELECT count(*) AS claimed FROM immich_jobs.claim('lease.adm', 'worker-C', 10000);
SELECT * FROM counts;
-- every lease has its own token
SELECT count(*) AS leases, count(DISTINCT lease_token) AS tokens FROM held;
SELECT job_name, worker_id FROM immich_jobs.jobs
 WHERE queue_name = 'lease.adm' AND state = 'active' ORDER BY job_id;

-- lowering the concurrency below the number of active jobs: no admission
-- until active < limit; the running leases go on and can complete
SELECT immich_jobs.set_concurrency('lease.adm', 2);
SELECT count(*) AS claimed FROM immich_jobs.claim('lease.adm', 'worker-C', 5);
SELECT * FROM counts;
SELECT immich_jobs.heartbeat(pg_temp.id('a5'), pg_temp.tok('a5')) IS NOT NULL
       AS heartbeat;
SELECT immich_jobs.complete(pg_temp.id('a1'), pg_temp.tok('a1'));
SELECT * FROM counts;
SELECT count(*) AS claimed FROM immich_jobs.claim('lease.adm', 'worker-C', 5);
SELECT immich_jobs.complete(pg_temp.id('a2'), pg_temp.tok('a2'));
SELECT immich_jobs.fail(pg_temp.id('a3'), pg_temp.tok('a3'), 'failing', '1 hour');
SELECT * FROM counts;
-- active = limit = 2: still nothing
SELECT count(*) AS claimed FROM immich_jobs.claim('lease.adm', 'worker-C', 5);
SELECT immich_jobs.complete(pg_temp.id('a4'), pg_temp.tok('a4'));
SELECT * FROM counts;
-- active 1 < 2: exactly one more
INSERT INTO held SELECT * FROM immich_jobs.claim('lease.adm', 'worker-C', 5)
RETURNING job_name, attempt;
SELECT * FROM counts;
SELECT count(*) AS claimed FROM immich_jobs.claim('lease.adm', 'worker-C', 5);
-- raising it admits again, as far as there are waiting jobs
SELECT immich_jobs.set_concurrency('lease.adm', 5);
INSERT INTO held SELECT * FROM immich_jobs.claim('lease.adm', 'worker-C', 5)
RETURNING job_name, attempt;
SELECT * FROM counts;
SELECT count(*) AS claimed FROM immich_jobs.claim('lease.adm', 'worker-C', 5);

--
-- complete: true once, then false; the job leaves the table and is counted
--
SELECT immich_jobs.complete(pg_temp.id('a5'), pg_temp.tok('a5')) AS first_time;
SELECT immich_jobs.complete(job_id, lease_token) AS second_time
  FROM held WHERE job_name = 'a5';
SELECT count(*) AS rows_left FROM immich_jobs.job
 WHERE job_id = (SELECT job_id FROM held WHERE job_name = 'a5');
SELECT count(*) AS in_jobs_view FROM immich_jobs.jobs
 WHERE job_id = (SELECT job_id FROM held WHERE job_name = 'a5');
SELECT * FROM counts;
-- a token that is not the job's (another job's, or made up) is refused and
-- changes nothing; so is a job id that does not exist
SELECT pg_temp.job_row('a6') AS a6_before \gset
SELECT immich_jobs.complete(pg_temp.id('a6'), pg_temp.tok('a7')) AS other_token;
SELECT immich_jobs.complete(pg_temp.id('a6'), -1) AS made_up_token;
SELECT immich_jobs.complete(pg_temp.id('a6'), 0) AS zero_token;
SELECT immich_jobs.complete(-1, pg_temp.tok('a6')) AS no_such_job;
SELECT immich_jobs.complete(9223372036854775807, 1) AS no_such_job;
SELECT pg_temp.job_row('a6') = :'a6_before'::jsonb AS a6_unchanged;
SELECT * FROM counts;

--
-- complete_many: pairs of (job id, token); returns how many completed
--
SELECT immich_jobs.complete_many(ARRAY[pg_temp.id('a6'), pg_temp.id('a7')],
                                 ARRAY[pg_temp.tok('a6'), pg_temp.tok('a7')])
       AS completed;
SELECT * FROM counts;
-- again: the leases are over
SELECT immich_jobs.complete_many(ARRAY[pg_temp.id('a6'), pg_temp.id('a7')],
                                 ARRAY[pg_temp.tok('a6'), pg_temp.tok('a7')])
       AS completed;
-- pairs go by position: a token with another job's id completes nothing
SELECT pg_temp.job_row('a8') AS a8_before \gset
SELECT immich_jobs.complete_many(ARRAY[pg_temp.id('a8')], ARRAY[pg_temp.tok('a6')])
       AS completed;
SELECT pg_temp.job_row('a8') = :'a8_before'::jsonb AS a8_unchanged;
-- only the pairs that match count; the same pair twice counts once
SELECT immich_jobs.complete_many(
         ARRAY[pg_temp.id('a8'), pg_temp.id('a6'), pg_temp.id('a8'), -5],
         ARRAY[pg_temp.tok('a8'), pg_temp.tok('a6'), pg_temp.tok('a8'), 1])
       AS completed;
-- empty arrays complete nothing
SELECT immich_jobs.complete_many('{}', '{}') AS completed;
SELECT * FROM counts;
SELECT job_name, state, last_error FROM immich_jobs.jobs
 WHERE queue_name = 'lease.adm' ORDER BY job_id;

--
-- fail: retry after retry_backoff * 2^(attempt - 1), 'failed' after the
-- last attempt.  Each fail runs in a transaction with its check, so that
-- run_at - now() is exact.  A delayed retry is made due by setting its
-- run_at in the past (as superuser), in the transaction of the claim.
--
SELECT immich_jobs.create_queue('lease.retry', retry_backoff => '10 seconds',
                                max_attempts => 4);
SELECT immich_jobs.enqueue('lease.retry', 'r') > 0 AS enqueued;
INSERT INTO held SELECT * FROM immich_jobs.claim('lease.retry', 'w1')
RETURNING job_name, attempt;
-- attempt 1: 10 seconds
BEGIN;
SELECT immich_jobs.fail(pg_temp.id('r'), pg_temp.tok('r'), 'error 1');
SELECT state, attempt, run_at - now() AS retry_after, last_error,
       pg_temp.cur_tok(job_id) AS lease_token, lease_expires_at, finished_at,
       started_at IS NOT NULL AS started
  FROM immich_jobs.jobs WHERE job_name = 'r';
COMMIT;
SELECT * FROM counts WHERE queue_name = 'lease.retry';
-- not claimable while it waits for its retry
SELECT count(*) AS claimed FROM immich_jobs.claim('lease.retry', 'w1');
-- attempt 2: 20 seconds
BEGIN;
UPDATE immich_jobs.job SET run_at = now() - interval '1 second'
 WHERE job_id = pg_temp.id('r');
INSERT INTO held SELECT * FROM immich_jobs.claim('lease.retry', 'w1')
RETURNING job_name, attempt;
COMMIT;
SELECT * FROM counts WHERE queue_name = 'lease.retry';
BEGIN;
SELECT immich_jobs.fail(pg_temp.id('r'), pg_temp.tok('r'), 'error 2');
SELECT state, attempt, run_at - now() AS retry_after, last_error
  FROM immich_jobs.jobs WHERE job_name = 'r';
COMMIT;
-- attempt 3: 40 seconds; and a NULL error is recorded as NULL
BEGIN;
UPDATE immich_jobs.job SET run_at = now() - interval '1 second'
 WHERE job_id = pg_temp.id('r');
INSERT INTO held SELECT * FROM immich_jobs.claim('lease.retry', 'w1')
RETURNING job_name, attempt;
COMMIT;
BEGIN;
SELECT immich_jobs.fail(pg_temp.id('r'), pg_temp.tok('r'));
SELECT state, attempt, run_at - now() AS retry_after, last_error
  FROM immich_jobs.jobs WHERE job_name = 'r';
COMMIT;
SELECT * FROM counts WHERE queue_name = 'lease.retry';
-- attempt 4 of 4: failed for good (retry_in does not matter), finished now
BEGIN;
UPDATE immich_jobs.job SET run_at = now() - interval '1 second'
 WHERE job_id = pg_temp.id('r');
INSERT INTO held SELECT * FROM immich_jobs.claim('lease.retry', 'w1')
RETURNING job_name, attempt;
COMMIT;
BEGIN;
SELECT immich_jobs.fail(pg_temp.id('r'), pg_temp.tok('r'), 'error 4',
                        retry_in => '1 second');
SELECT state, attempt, last_error, finished_at = now() AS finished_now,
       pg_temp.cur_tok(job_id) AS lease_token, lease_expires_at
  FROM immich_jobs.jobs WHERE job_name = 'r';
COMMIT;
SELECT * FROM counts WHERE queue_name = 'lease.retry';
-- a failed job is not claimed, and its last token is stale
SELECT count(*) AS claimed FROM immich_jobs.claim('lease.retry', 'w1');
SELECT immich_jobs.fail(pg_temp.id('r'), pg_temp.tok('r'), 'again') AS fail_again;

-- retry_in instead of the backoff: 0 is waiting at once, others delayed
SELECT immich_jobs.enqueue('lease.retry', 'ri') > 0 AS enqueued;
INSERT INTO held SELECT * FROM immich_jobs.claim('lease.retry', 'w1')
RETURNING job_name, attempt;
BEGIN;
SELECT immich_jobs.fail(pg_temp.id('ri'), pg_temp.tok('ri'), 'x', retry_in => '5 minutes');
SELECT state, attempt, run_at - now() AS retry_after
  FROM immich_jobs.jobs WHERE job_name = 'ri';
COMMIT;
BEGIN;
UPDATE immich_jobs.job SET run_at = now() - interval '1 second'
 WHERE job_id = pg_temp.id('ri');
INSERT INTO held SELECT * FROM immich_jobs.claim('lease.retry', 'w1')
RETURNING job_name, attempt;
COMMIT;
BEGIN;
SELECT immich_jobs.fail(pg_temp.id('ri'), pg_temp.tok('ri'), 'x', retry_in => '0');
SELECT state, attempt, run_at - now() AS retry_after
  FROM immich_jobs.jobs WHERE job_name = 'ri';
COMMIT;
SELECT * FROM counts WHERE queue_name = 'lease.retry';
INSERT INTO held SELECT * FROM immich_jobs.claim('lease.retry', 'w1')
RETURNING job_name, attempt;
BEGIN;
SELECT immich_jobs.fail(pg_temp.id('ri'), pg_temp.tok('ri'), 'x', retry_in => '7 days');
SELECT state, attempt, run_at - now() AS retry_after
  FROM immich_jobs.jobs WHERE job_name = 'ri';
COMMIT;

-- a queue without backoff retries at once
SELECT immich_jobs.create_queue('lease.nobackoff', retry_backoff => '0');
SELECT immich_jobs.enqueue('lease.nobackoff', 'nb') > 0 AS enqueued;
INSERT INTO held SELECT * FROM immich_jobs.claim('lease.nobackoff', 'w1')
RETURNING job_name, attempt;
BEGIN;
SELECT immich_jobs.fail(pg_temp.id('nb'), pg_temp.tok('nb'), 'x');
SELECT state, attempt, run_at = now() AS run_at_now
  FROM immich_jobs.jobs WHERE job_name = 'nb';
COMMIT;
SELECT * FROM counts WHERE queue_name = 'lease.nobackoff';
INSERT INTO held SELECT * FROM immich_jobs.claim('lease.nobackoff', 'w1')
RETURNING job_name, attempt;

-- the backoff is capped at 7 days: 4 days, then 7 (not 8)
SELECT immich_jobs.create_queue('lease.cap', retry_backoff => '4 days',
                                max_attempts => 5);
SELECT immich_jobs.enqueue('lease.cap', 'cap') > 0 AS enqueued;
INSERT INTO held SELECT * FROM immich_jobs.claim('lease.cap', 'w1')
RETURNING job_name, attempt;
BEGIN;
SELECT immich_jobs.fail(pg_temp.id('cap'), pg_temp.tok('cap'), 'x');
SELECT attempt, run_at - now() AS retry_after FROM immich_jobs.jobs
 WHERE job_name = 'cap';
COMMIT;
BEGIN;
UPDATE immich_jobs.job SET run_at = now() - interval '1 second'
 WHERE job_id = pg_temp.id('cap');
INSERT INTO held SELECT * FROM immich_jobs.claim('lease.cap', 'w1')
RETURNING job_name, attempt;
COMMIT;
BEGIN;
SELECT immich_jobs.fail(pg_temp.id('cap'), pg_temp.tok('cap'), 'x');
SELECT attempt, run_at - now() AS retry_after FROM immich_jobs.jobs
 WHERE job_name = 'cap';
COMMIT;
SELECT * FROM counts WHERE queue_name = 'lease.cap';

-- in a DO block (one statement, however long it runs) a lease runs from the
-- claim, not from the start of the block
SELECT immich_jobs.create_queue('lease.do', lease_timeout => '1 minute');
SELECT immich_jobs.enqueue('lease.do', 'late') > 0 AS enqueued;
CREATE TEMP TABLE lease_do (claimed_after timestamptz, expires timestamptz);
DO $$
DECLARE
  t timestamptz;
BEGIN
  PERFORM pg_sleep(0.01);
  t := clock_timestamp();
  INSERT INTO lease_do
  SELECT t, lease_expires_at FROM immich_jobs.claim('lease.do', 'w');
END $$;
SELECT expires >= claimed_after + interval '1 minute' AS from_the_claim FROM lease_do;
SELECT immich_jobs.drop_queue('lease.do', force => true);
DROP TABLE lease_do;
--
-- heartbeat: the lease now ends at extend_by, or the queue's lease_timeout,
-- after the heartbeat; nothing else changes
--
SELECT immich_jobs.create_queue('lease.hb', lease_timeout => '10 minutes');
SELECT immich_jobs.enqueue('lease.hb', 'hb') > 0 AS enqueued;
INSERT INTO held SELECT * FROM immich_jobs.claim('lease.hb', 'w1')
RETURNING job_name, attempt;
SELECT immich_jobs.heartbeat(pg_temp.id('hb'), pg_temp.tok('hb'), '2 hours') AS expiry,
       statement_timestamp() AS at \gset hb_
SELECT date_trunc('second', :'hb_expiry'::timestamptz - :'hb_at'::timestamptz) AS extended_by;
SELECT state, attempt, pg_temp.cur_tok(job_id) = pg_temp.tok('hb') AS same_token,
       lease_expires_at = :'hb_expiry' AS returned_expiry
  FROM immich_jobs.jobs WHERE job_name = 'hb';
SELECT immich_jobs.heartbeat(pg_temp.id('hb'), pg_temp.tok('hb')) AS expiry,
       statement_timestamp() AS at \gset hb_
SELECT date_trunc('second', :'hb_expiry'::timestamptz - :'hb_at'::timestamptz) AS extended_by;
SELECT state, attempt, pg_temp.cur_tok(job_id) = pg_temp.tok('hb') AS same_token,
       lease_expires_at = :'hb_expiry' AS returned_expiry
  FROM immich_jobs.jobs WHERE job_name = 'hb';
-- the default follows the queue's current lease_timeout
SELECT immich_jobs.alter_queue('lease.hb', lease_timeout => '1 hour');
SELECT immich_jobs.heartbeat(pg_temp.id('hb'), pg_temp.tok('hb'), NULL) AS expiry,
       statement_timestamp() AS at \gset hb_
SELECT date_trunc('second', :'hb_expiry'::timestamptz - :'hb_at'::timestamptz) AS extended_by;
SELECT * FROM counts WHERE queue_name = 'lease.hb';
-- a token that is not current gets NULL
SELECT immich_jobs.heartbeat(pg_temp.id('hb'), pg_temp.tok('hb') + 1000) AS stale;
SELECT immich_jobs.complete(pg_temp.id('hb'), pg_temp.tok('hb'));

--
-- release: back to waiting (or delayed, with a run_at in the future), and
-- the attempt does not count
--
SELECT immich_jobs.create_queue('lease.rel', max_attempts => 1);
SELECT immich_jobs.enqueue('lease.rel', 'rel') > 0 AS enqueued;
SELECT immich_jobs.enqueue('lease.rel', 'other') > 0 AS enqueued;
INSERT INTO held SELECT * FROM immich_jobs.claim('lease.rel', 'w1')
RETURNING job_name, attempt;
SELECT * FROM counts WHERE queue_name = 'lease.rel';
BEGIN;
SELECT immich_jobs.release(pg_temp.id('rel'), pg_temp.tok('rel'));
SELECT state, attempt, run_at = now() AS run_at_now,
       pg_temp.cur_tok(job_id) AS lease_token,
       lease_expires_at, last_error
  FROM immich_jobs.jobs WHERE job_name = 'rel';
COMMIT;
SELECT * FROM counts WHERE queue_name = 'lease.rel';
-- the slot is free again (concurrency 1), and the next claim gets the same
-- attempt number; with max_attempts 1 a failure is still the first
INSERT INTO held SELECT * FROM immich_jobs.claim('lease.rel', 'w1')
RETURNING job_name, attempt;
SELECT immich_jobs.release(pg_temp.id('rel'), pg_temp.tok('rel'));
INSERT INTO held SELECT * FROM immich_jobs.claim('lease.rel', 'w1')
RETURNING job_name, attempt;
SELECT immich_jobs.fail(pg_temp.id('rel'), pg_temp.tok('rel'), 'x');
SELECT * FROM counts WHERE queue_name = 'lease.rel';
-- run_at in the future: delayed until then, not claimable
INSERT INTO held SELECT * FROM immich_jobs.claim('lease.rel', 'w1')
RETURNING job_name, attempt;
BEGIN;
SELECT immich_jobs.release(pg_temp.id('other'), pg_temp.tok('other'),
                           now() + interval '1 hour');
SELECT state, attempt, run_at - now() AS run_in
  FROM immich_jobs.jobs WHERE job_name = 'other';
COMMIT;
SELECT * FROM counts WHERE queue_name = 'lease.rel';
SELECT count(*) AS claimed FROM immich_jobs.claim('lease.rel', 'w1');
-- due again: claimed with attempt 1; released with a run_at in the past:
-- waiting, run_at now
BEGIN;
UPDATE immich_jobs.job SET run_at = now() - interval '1 second'
 WHERE job_id = pg_temp.id('other');
INSERT INTO held SELECT * FROM immich_jobs.claim('lease.rel', 'w1')
RETURNING job_name, attempt;
COMMIT;
BEGIN;
SELECT immich_jobs.release(pg_temp.id('other'), pg_temp.tok('other'),
                           '2000-01-01 00:00:00+00');
SELECT state, attempt, run_at = now() AS run_at_now
  FROM immich_jobs.jobs WHERE job_name = 'other';
COMMIT;
SELECT * FROM counts WHERE queue_name = 'lease.rel';

--
-- reap: an expired lease goes back to waiting (attempt kept, so the next
-- lease is +1), or to failed at the last attempt; last_error 'lease expired'
--
SELECT immich_jobs.reap() AS reaped_nothing;
SELECT immich_jobs.create_queue('lease.reap', concurrency => 2, max_attempts => 2);
SELECT immich_jobs.enqueue('lease.reap', name) > 0 AS enqueued
  FROM unnest(ARRAY['x1', 'x2']) AS name;
INSERT INTO held SELECT * FROM immich_jobs.claim('lease.reap', 'w1', 2)
RETURNING job_name, attempt;
BEGIN;
UPDATE immich_jobs.job SET lease_expires_at = now() - interval '1 second'
 WHERE job_id = pg_temp.id('x1');
SELECT immich_jobs.reap() AS reaped;
COMMIT;
SELECT job_name, state, attempt, last_error,
       pg_temp.cur_tok(job_id) = pg_temp.tok(job_name) AS holds_token,
       lease_expires_at > now() AS lease_runs, finished_at
  FROM immich_jobs.jobs WHERE queue_name = 'lease.reap' ORDER BY job_id;
SELECT * FROM counts WHERE queue_name = 'lease.reap';
INSERT INTO held SELECT * FROM immich_jobs.claim('lease.reap', 'w1')
RETURNING job_name, attempt;
SELECT * FROM counts WHERE queue_name = 'lease.reap';
-- a lease that ends exactly now has not expired yet
BEGIN;
UPDATE immich_jobs.job SET lease_expires_at = now()
 WHERE job_id = pg_temp.id('x1');
SELECT immich_jobs.reap() AS reaped;
ROLLBACK;
-- the second lease expires too: it was the last attempt
BEGIN;
UPDATE immich_jobs.job SET lease_expires_at = now() - interval '1 second'
 WHERE job_id = pg_temp.id('x1');
SELECT immich_jobs.reap() AS reaped;
SELECT job_name, state, attempt, last_error,
       pg_temp.cur_tok(job_id) AS lease_token, lease_expires_at,
       finished_at = now() AS finished_now
  FROM immich_jobs.jobs WHERE job_name = 'x1';
COMMIT;
SELECT * FROM counts WHERE queue_name = 'lease.reap';
SELECT immich_jobs.reap() AS reaped_nothing;
-- reap() also folds the completion log into the queue's completed count,
-- which stays the same
SELECT immich_jobs.complete(pg_temp.id('x2'), pg_temp.tok('x2'));
SELECT completed FROM counts WHERE queue_name = 'lease.reap';
SELECT immich_jobs.reap() AS reaped_nothing;
SELECT count(*) AS logged
  FROM immich_jobs.completed_log l JOIN immich_jobs.queue q USING (queue_id)
 WHERE q.queue_name = 'lease.reap';
SELECT completed_base FROM immich_jobs.queue WHERE queue_name = 'lease.reap';
SELECT * FROM counts WHERE queue_name = 'lease.reap';

--
-- fencing: once a lease is over, its token completes, fails, heartbeats
-- and releases nothing (false or NULL), and the job's row is unchanged
--
SELECT immich_jobs.create_queue('lease.fence', concurrency => 3, max_attempts => 5);
SELECT immich_jobs.enqueue('lease.fence', name) > 0 AS enqueued
  FROM unnest(ARRAY['f1', 'f2', 'f3', 'f4', 'f5']) AS name;
INSERT INTO held SELECT * FROM immich_jobs.claim('lease.fence', 'w1', 3)
RETURNING job_name, attempt;
-- the four calls with a token
CREATE FUNCTION pg_temp.try_all(name text, token bigint)
  RETURNS TABLE (complete boolean, fail text, heartbeat timestamptz,
                 release boolean)
  LANGUAGE sql AS $$
    SELECT immich_jobs.complete(pg_temp.id(name), token),
           immich_jobs.fail(pg_temp.id(name), token, 'stale', '0'),
           immich_jobs.heartbeat(pg_temp.id(name), token, '1 hour'),
           immich_jobs.release(pg_temp.id(name), token) $$;

-- 1. the lease expired and was reclaimed: its token is stale, while the job
-- waits and after another lease of it
BEGIN;
UPDATE immich_jobs.job SET lease_expires_at = now() - interval '1 second'
 WHERE job_id = pg_temp.id('f1');
SELECT immich_jobs.reap() AS reaped;
COMMIT;
SELECT * FROM counts WHERE queue_name = 'lease.fence';
SELECT pg_temp.job_row('f1') AS f1_before \gset
SELECT * FROM pg_temp.try_all('f1', pg_temp.tok('f1'));
SELECT pg_temp.job_row('f1') = :'f1_before'::jsonb AS f1_unchanged;
SELECT * FROM counts WHERE queue_name = 'lease.fence';
INSERT INTO held SELECT * FROM immich_jobs.claim('lease.fence', 'w2')
RETURNING job_name, attempt;
SELECT pg_temp.job_row('f1') AS f1_before \gset
SELECT * FROM pg_temp.try_all('f1', pg_temp.old_tok('f1'));
SELECT pg_temp.job_row('f1') = :'f1_before'::jsonb AS f1_unchanged;
SELECT job_name, state, attempt, worker_id FROM immich_jobs.jobs
 WHERE job_name = 'f1';
SELECT * FROM counts WHERE queue_name = 'lease.fence';
-- the current token still works
SELECT immich_jobs.complete(pg_temp.id('f1'), pg_temp.tok('f1')) AS current_token;
SELECT * FROM counts WHERE queue_name = 'lease.fence';

-- 2. the job was cancelled: the lease is revoked
SELECT immich_jobs.cancel(pg_temp.id('f2'));
SELECT * FROM counts WHERE queue_name = 'lease.fence';
SELECT pg_temp.job_row('f2') AS f2_before \gset
SELECT * FROM pg_temp.try_all('f2', pg_temp.tok('f2'));
SELECT pg_temp.job_row('f2') = :'f2_before'::jsonb AS f2_unchanged;
SELECT job_name, state FROM immich_jobs.jobs WHERE job_name = 'f2';
SELECT * FROM counts WHERE queue_name = 'lease.fence';

-- 3. the job was completed: a second completion, or anything else, fails
SELECT immich_jobs.complete(pg_temp.id('f3'), pg_temp.tok('f3')) AS first_time;
SELECT * FROM counts WHERE queue_name = 'lease.fence';
SELECT complete, fail, heartbeat, release
  FROM (SELECT job_id FROM held WHERE job_name = 'f3') h,
       LATERAL (SELECT immich_jobs.complete(h.job_id, pg_temp.tok('f3')) AS complete,
                       immich_jobs.fail(h.job_id, pg_temp.tok('f3')) AS fail,
                       immich_jobs.heartbeat(h.job_id, pg_temp.tok('f3')) AS heartbeat,
                       immich_jobs.release(h.job_id, pg_temp.tok('f3')) AS release) c;
SELECT count(*) AS rows_left FROM immich_jobs.job
 WHERE job_id = (SELECT job_id FROM held WHERE job_name = 'f3');
SELECT * FROM counts WHERE queue_name = 'lease.fence';

-- 4. the job was released, then leased again
INSERT INTO held SELECT * FROM immich_jobs.claim('lease.fence', 'w1')
RETURNING job_name, attempt;
SELECT immich_jobs.release(pg_temp.id('f4'), pg_temp.tok('f4'));
SELECT pg_temp.job_row('f4') AS f4_before \gset
SELECT * FROM pg_temp.try_all('f4', pg_temp.tok('f4'));
SELECT pg_temp.job_row('f4') = :'f4_before'::jsonb AS f4_unchanged;
INSERT INTO held SELECT * FROM immich_jobs.claim('lease.fence', 'w1')
RETURNING job_name, attempt;
SELECT pg_temp.job_row('f4') AS f4_before \gset
SELECT * FROM pg_temp.try_all('f4', pg_temp.old_tok('f4'));
SELECT pg_temp.job_row('f4') = :'f4_before'::jsonb AS f4_unchanged;

-- 5. the job failed and waits for its retry
INSERT INTO held SELECT * FROM immich_jobs.claim('lease.fence', 'w1')
RETURNING job_name, attempt;
SELECT immich_jobs.fail(pg_temp.id('f5'), pg_temp.tok('f5'), 'first', '1 hour');
SELECT pg_temp.job_row('f5') AS f5_before \gset
SELECT * FROM pg_temp.try_all('f5', pg_temp.tok('f5'));
SELECT pg_temp.job_row('f5') = :'f5_before'::jsonb AS f5_unchanged;
SELECT job_name, state, attempt, last_error FROM immich_jobs.jobs
 WHERE queue_name = 'lease.fence' ORDER BY job_id;
SELECT * FROM counts WHERE queue_name = 'lease.fence';

--
-- rolled back: a claim, a complete, a fail, an enqueue that roll back (whole
-- or to a savepoint) leave the jobs and the counts as they were
--
SELECT immich_jobs.create_queue('lease.abort', concurrency => 1);
SELECT immich_jobs.enqueue('lease.abort', name) > 0 AS enqueued
  FROM unnest(ARRAY['ab1', 'ab2']) AS name;
BEGIN;
SELECT job_name, attempt FROM immich_jobs.claim('lease.abort', 'w1');
ROLLBACK;
SELECT * FROM counts WHERE queue_name = 'lease.abort';
-- the same job again, with the same attempt number
BEGIN;
SAVEPOINT s;
SELECT job_name, attempt FROM immich_jobs.claim('lease.abort', 'w1');
ROLLBACK TO SAVEPOINT s;
-- the slot the rolled-back claim took is free again
INSERT INTO held SELECT * FROM immich_jobs.claim('lease.abort', 'w1')
RETURNING job_name, attempt;
COMMIT;
SELECT * FROM counts WHERE queue_name = 'lease.abort';
BEGIN;
SELECT immich_jobs.complete(pg_temp.id('ab1'), pg_temp.tok('ab1'));
ROLLBACK;
BEGIN;
SELECT immich_jobs.fail(pg_temp.id('ab1'), pg_temp.tok('ab1'), 'x');
SELECT immich_jobs.enqueue('lease.abort', 'ab3') > 0 AS enqueued;
ROLLBACK;
SELECT * FROM counts WHERE queue_name = 'lease.abort';
SELECT job_name, state, attempt, last_error FROM immich_jobs.jobs
 WHERE queue_name = 'lease.abort' ORDER BY job_id;
-- full: the rolled-back complete freed nothing
SELECT count(*) AS claimed FROM immich_jobs.claim('lease.abort', 'w1');
BEGIN;
SAVEPOINT s;
SELECT immich_jobs.complete(pg_temp.id('ab1'), pg_temp.tok('ab1'));
ROLLBACK TO SAVEPOINT s;
SELECT immich_jobs.complete(pg_temp.id('ab1'), pg_temp.tok('ab1'));
COMMIT;
SELECT * FROM counts WHERE queue_name = 'lease.abort';
INSERT INTO held SELECT * FROM immich_jobs.claim('lease.abort', 'w1')
RETURNING job_name, attempt;
SELECT * FROM counts WHERE queue_name = 'lease.abort';

-- no token was ever handed out twice
SELECT count(*) = count(DISTINCT lease_token) AS tokens_unique FROM held;

-- clean up: this file leaves no queue behind
SELECT immich_jobs.drop_queue(queue_name, force => true)
  FROM immich_jobs.queue WHERE queue_name LIKE 'lease.%' ORDER BY queue_name;
SELECT count(*) AS left_over FROM counts;
