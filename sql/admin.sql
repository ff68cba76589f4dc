--
-- Administration: retry_failed, clear (each state; 'completed' resets the
-- count), cancel (each state, a completed job, an unknown id), and the jobs
-- view (its columns and its state words).
--
-- Every queue of this file is named 'admin.*'; all files share one database.
--
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS immich_jobs;
RESET client_min_messages;

CREATE TEMP VIEW counts AS
    SELECT * FROM immich_jobs.queue_counts
     WHERE queue_name LIKE 'admin.%' ORDER BY queue_name;
CREATE TEMP TABLE held (job_id bigint, job_name text, payload jsonb,
                        attempt integer, lease_token bigint,
                        lease_expires_at timestamptz);
CREATE FUNCTION pg_temp.tok(name text) RETURNS bigint LANGUAGE sql AS
  $$ SELECT lease_token FROM held WHERE job_name = name
      ORDER BY lease_token DESC LIMIT 1 $$;
CREATE FUNCTION pg_temp.id(name text) RETURNS bigint LANGUAGE sql AS
  $$ SELECT coalesce((SELECT job_id FROM held WHERE job_name = name LIMIT 1),
                     (SELECT job_id FROM immich_jobs.jobs WHERE job_name = name
                         AND queue_name LIKE 'admin.%')) $$;
-- the jobs of a queue, in enqueue order
CREATE FUNCTION pg_temp.jobs(q text)
  RETURNS TABLE (job_name text, state text, attempt integer,
                 finished boolean, last_error text)
  LANGUAGE sql AS
  $$ SELECT job_name, state, attempt, finished_at IS NOT NULL, last_error
       FROM immich_jobs.jobs WHERE queue_name = q ORDER BY job_id $$;

--
-- retry_failed: failed jobs go back to waiting, attempt 0, not finished
--
SELECT immich_jobs.create_queue('admin.retry', concurrency => 10, max_attempts => 1);
SELECT immich_jobs.create_queue('admin.other', max_attempts => 1);
SELECT immich_jobs.enqueue('admin.retry', name) > 0 AS enqueued
  FROM unnest(ARRAY['f1', 'f2', 'ok', 'cx', 'w']) AS name;
SELECT immich_jobs.enqueue('admin.other', 'other') > 0 AS enqueued;
INSERT INTO held SELECT * FROM immich_jobs.claim('admin.retry', 'w1', 3)
RETURNING job_name, attempt;
INSERT INTO held SELECT * FROM immich_jobs.claim('admin.other', 'w1')
RETURNING job_name, attempt;
SELECT immich_jobs.fail(pg_temp.id('f1'), pg_temp.tok('f1'), 'broken');
SELECT immich_jobs.fail(pg_temp.id('f2'), pg_temp.tok('f2'), 'broken');
SELECT immich_jobs.fail(pg_temp.id('other'), pg_temp.tok('other'), 'broken');
SELECT immich_jobs.complete(pg_temp.id('ok'), pg_temp.tok('ok'));
SELECT immich_jobs.cancel(pg_temp.id('cx'));
SELECT * FROM pg_temp.jobs('admin.retry');
SELECT * FROM counts;
SELECT immich_jobs.retry_failed('admin.retry') AS retried;
-- only that queue's failed jobs; cancelled and waiting ones are untouched
SELECT * FROM pg_temp.jobs('admin.retry');
SELECT * FROM counts;
-- nothing failed any more: nothing to retry
SELECT immich_jobs.retry_failed('admin.retry') AS retried;
-- a fresh attempt count: the next lease is attempt 1 again
INSERT INTO held SELECT * FROM immich_jobs.claim('admin.retry', 'w1', 10)
RETURNING job_name, attempt;
SELECT immich_jobs.complete_many(
         ARRAY[pg_temp.id('f1'), pg_temp.id('f2'), pg_temp.id('w')],
         ARRAY[pg_temp.tok('f1'), pg_temp.tok('f2'), pg_temp.tok('w')]) AS completed;
SELECT * FROM counts;
SELECT immich_jobs.retry_failed('admin.other') AS retried;
SELECT * FROM pg_temp.jobs('admin.other');
SELECT * FROM counts;

--
-- clear(queue, state)
--
SELECT immich_jobs.create_queue('admin.clear', concurrency => 4, max_attempts => 1);
-- 2 waiting, 2 delayed, 2 failed, 2 cancelled, 3 completed, 1 active
SELECT immich_jobs.enqueue('admin.clear', name, priority => p) > 0 AS enqueued
  FROM (VALUES ('done1', 9), ('done2', 9), ('done3', 9), ('fail1', 8),
               ('fail2', 8), ('active', 7), ('cx1', 0), ('cx2', 0),
               ('wait1', 0), ('wait2', 0)) AS v(name, p);
SELECT immich_jobs.enqueue('admin.clear', name,
                           run_at => now() + interval '1 hour') > 0 AS enqueued
  FROM unnest(ARRAY['later1', 'later2']) AS name;
INSERT INTO held SELECT * FROM immich_jobs.claim('admin.clear', 'w1', 4)
RETURNING job_name, attempt;
SELECT immich_jobs.complete(pg_temp.id('done1'), pg_temp.tok('done1'));
SELECT immich_jobs.complete(pg_temp.id('done2'), pg_temp.tok('done2'));
-- fold the first two completions into the queue's base count, so that the
-- completed count below is made of both parts
SELECT immich_jobs.reap() AS reaped;
SELECT immich_jobs.complete(pg_temp.id('done3'), pg_temp.tok('done3'));
INSERT INTO held SELECT * FROM immich_jobs.claim('admin.clear', 'w1', 4)
RETURNING job_name, attempt;
SELECT immich_jobs.fail(pg_temp.id('fail1'), pg_temp.tok('fail1'), 'x');
SELECT immich_jobs.fail(pg_temp.id('fail2'), pg_temp.tok('fail2'), 'x');
SELECT immich_jobs.cancel(pg_temp.id('cx1')), immich_jobs.cancel(pg_temp.id('cx2'));
SELECT * FROM pg_temp.jobs('admin.clear');
SELECT * FROM counts WHERE queue_name = 'admin.clear';

-- 'delayed': only the delayed jobs
SELECT immich_jobs.clear('admin.clear', 'delayed') AS cleared;
SELECT * FROM counts WHERE queue_name = 'admin.clear';
SELECT immich_jobs.clear('admin.clear', 'delayed') AS cleared;
-- 'failed'
SELECT immich_jobs.clear('admin.clear', 'failed') AS cleared;
SELECT * FROM counts WHERE queue_name = 'admin.clear';
-- 'cancelled' (they have no column in queue_counts: see the jobs)
SELECT immich_jobs.clear('admin.clear', 'cancelled') AS cleared;
SELECT * FROM pg_temp.jobs('admin.clear');
-- 'waiting' (the default) removes the delayed jobs too
SELECT immich_jobs.enqueue('admin.clear', 'later3',
                           run_at => now() + interval '1 hour') > 0 AS enqueued;
SELECT * FROM counts WHERE queue_name = 'admin.clear';
SELECT immich_jobs.clear('admin.clear') AS cleared;
SELECT * FROM counts WHERE queue_name = 'admin.clear';
SELECT immich_jobs.clear('admin.clear', 'waiting') AS cleared;
-- 'completed': returns the count it resets
SELECT immich_jobs.clear('admin.clear', 'completed') AS cleared;
SELECT * FROM counts WHERE queue_name = 'admin.clear';
SELECT immich_jobs.clear('admin.clear', 'completed') AS cleared;
-- the active job was never touched: its lease still holds and completes,
-- counting from zero again
SELECT * FROM pg_temp.jobs('admin.clear');
SELECT immich_jobs.complete(pg_temp.id('active'), pg_temp.tok('active'));
SELECT * FROM counts WHERE queue_name = 'admin.clear';
-- clearing another queue's jobs does not touch this one's count
SELECT immich_jobs.clear('admin.retry', 'completed') > 0 AS cleared;
SELECT * FROM counts WHERE queue_name IN ('admin.clear', 'admin.retry');

--
-- cancel(job_id)
--
SELECT immich_jobs.create_queue('admin.cancel', concurrency => 1, max_attempts => 1);
SELECT immich_jobs.enqueue('admin.cancel', name, priority => p) > 0 AS enqueued
  FROM (VALUES ('act', 3), ('failed', 2), ('done', 1), ('wait', 0), ('next', 0))
       AS v(name, p);
SELECT immich_jobs.enqueue('admin.cancel', 'delayed',
                           run_at => now() + interval '1 hour') > 0 AS enqueued;
-- an active job: cancelled, its lease revoked, its slot free for the next
INSERT INTO held SELECT * FROM immich_jobs.claim('admin.cancel', 'w1')
RETURNING job_name, attempt;
SELECT immich_jobs.cancel(pg_temp.id('act')) AS cancel_active;
SELECT immich_jobs.complete(pg_temp.id('act'), pg_temp.tok('act')) AS complete_after_cancel;
SELECT * FROM counts WHERE queue_name = 'admin.cancel';
-- (one job fails for good, one completes)
INSERT INTO held SELECT * FROM immich_jobs.claim('admin.cancel', 'w1')
RETURNING job_name, attempt;
SELECT immich_jobs.fail(pg_temp.id('failed'), pg_temp.tok('failed'), 'x');
INSERT INTO held SELECT * FROM immich_jobs.claim('admin.cancel', 'w1')
RETURNING job_name, attempt;
SELECT immich_jobs.complete(pg_temp.id('done'), pg_temp.tok('done'));
-- another active job
INSERT INTO held SELECT * FROM immich_jobs.claim('admin.cancel', 'w1')
RETURNING job_name, attempt;
SELECT * FROM counts WHERE queue_name = 'admin.cancel';
SELECT immich_jobs.cancel(pg_temp.id('wait')) AS cancel_active;
SELECT * FROM counts WHERE queue_name = 'admin.cancel';
SELECT immich_jobs.complete(pg_temp.id('wait'), pg_temp.tok('wait')) AS complete_after_cancel;
SELECT immich_jobs.heartbeat(pg_temp.id('wait'), pg_temp.tok('wait')) AS heartbeat_after_cancel;
-- a waiting job and a delayed job
SELECT immich_jobs.cancel(pg_temp.id('next')) AS cancel_waiting;
SELECT immich_jobs.cancel(pg_temp.id('delayed')) AS cancel_delayed;
SELECT * FROM counts WHERE queue_name = 'admin.cancel';
-- a failed job, a cancelled one, a completed one (gone): false
SELECT immich_jobs.cancel(pg_temp.id('failed')) AS cancel_failed;
SELECT immich_jobs.cancel(pg_temp.id('next')) AS cancel_cancelled;
SELECT immich_jobs.cancel(pg_temp.id('done')) AS cancel_completed;
SELECT * FROM pg_temp.jobs('admin.cancel');
SELECT * FROM counts WHERE queue_name = 'admin.cancel';
-- cancelled jobs are never claimed
SELECT count(*) AS claimed FROM immich_jobs.claim('admin.cancel', 'w1');
-- an id that was never issued: 42704
SELECT immich_jobs.cancel(0);
SELECT immich_jobs.cancel(-1);
SELECT immich_jobs.cancel(9223372036854775807);
SELECT last_value AS last_id FROM immich_jobs.job_id_seq \gset
\set VERBOSITY sqlstate
SELECT immich_jobs.cancel(:last_id + 1);
\set VERBOSITY default
-- the last id issued is a known job ('delayed', already cancelled): false
SELECT immich_jobs.cancel(:last_id) AS cancel_last;

--
-- the jobs view
--
SELECT attname, format_type(atttypid, atttypmod) AS type
  FROM pg_attribute
 WHERE attrelid = 'immich_jobs.jobs'::regclass AND attnum > 0
 ORDER BY attnum;
-- one job in each state, and the word for it
SELECT immich_jobs.create_queue('admin.view', concurrency => 1, max_attempts => 1);
SELECT immich_jobs.enqueue('admin.view', 'is-failed', priority => 2) > 0 AS enqueued;
SELECT immich_jobs.enqueue('admin.view', 'is-active', '{"assetId": "a9"}', priority => 1,
                           dedup_key => 'a9', max_attempts => 5) AS active_id \gset
SELECT immich_jobs.enqueue('admin.view', 'is-waiting') > 0 AS enqueued;
SELECT immich_jobs.enqueue('admin.view', 'is-delayed',
                           run_at => now() + interval '1 day') > 0 AS enqueued;
SELECT immich_jobs.enqueue('admin.view', 'is-cancelled') > 0 AS enqueued;
SELECT immich_jobs.cancel(pg_temp.id('is-cancelled'));
INSERT INTO held SELECT * FROM immich_jobs.claim('admin.view', 'w1')
RETURNING job_name, attempt;
SELECT immich_jobs.fail(pg_temp.id('is-failed'), pg_temp.tok('is-failed'), 'it broke');
BEGIN;
INSERT INTO held SELECT * FROM immich_jobs.claim('admin.view', 'worker-9')
RETURNING job_name, attempt;
SELECT job_id = :active_id AS is_active_id, queue_name, job_name, state, priority,
       attempt, max_attempts, run_at <= now() AS run_at_past,
       created_at <= now() AS created_before, started_at = now() AS started_now,
       finished_at, worker_id,
       lease_expires_at BETWEEN now() + interval '5 minutes'
                            AND statement_timestamp() + interval '5 minutes' AS lease_5_min,
       last_error, dedup_key, payload
  FROM immich_jobs.jobs WHERE job_id = :active_id;
COMMIT;
SELECT job_name, state, priority, attempt, max_attempts,
       finished_at IS NOT NULL AS finished, worker_id,
       lease_expires_at IS NOT NULL AS leased, last_error, dedup_key, payload
  FROM immich_jobs.jobs WHERE queue_name = 'admin.view' ORDER BY job_id;
SELECT * FROM counts WHERE queue_name = 'admin.view';

-- a transaction sees its own changes in queue_counts, before and after it
-- commits, and a rollback leaves no trace
SELECT immich_jobs.create_queue('admin.own', concurrency => 2);
BEGIN;
SELECT immich_jobs.enqueue('admin.own', 'one') > 0 AS enqueued,
       immich_jobs.enqueue('admin.own', 'two') > 0 AS enqueued;
SELECT count(*) AS claimed FROM immich_jobs.claim('admin.own', 'w1');
SELECT active, waiting, completed FROM immich_jobs.queue_counts
 WHERE queue_name = 'admin.own';
SELECT immich_jobs.complete(job_id, lease_token) AS completed
  FROM immich_jobs.job WHERE state = 'a' AND job_name = 'one';
SELECT active, waiting, completed FROM immich_jobs.queue_counts
 WHERE queue_name = 'admin.own';
SAVEPOINT s;
SELECT count(*) AS claimed FROM immich_jobs.claim('admin.own', 'w1');
SELECT active, waiting, completed FROM immich_jobs.queue_counts
 WHERE queue_name = 'admin.own';
ROLLBACK TO SAVEPOINT s;
SELECT active, waiting, completed FROM immich_jobs.queue_counts
 WHERE queue_name = 'admin.own';
COMMIT;
SELECT active, waiting, completed FROM immich_jobs.queue_counts
 WHERE queue_name = 'admin.own';
BEGIN;
SELECT immich_jobs.clear('admin.own', 'waiting') AS cleared;
SELECT active, waiting, completed FROM immich_jobs.queue_counts
 WHERE queue_name = 'admin.own';
ROLLBACK;
SELECT active, waiting, completed FROM immich_jobs.queue_counts
 WHERE queue_name = 'admin.own';

-- clean up: this file leaves no queue behind
SELECT immich_jobs.drop_queue(queue_name, force => true)
  FROM immich_jobs.queue WHERE queue_name LIKE 'admin.%' ORDER BY queue_name;
SELECT count(*) AS left_over FROM counts;
