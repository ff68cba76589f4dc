--
-- Queues: create_queue (defaults, every setting, if_not_exists),
-- alter_queue, set_concurrency, pause_queue / resume_queue, drop_queue
-- (with and without force) and the queue_counts view.
--
-- Every queue of this file is named 'queues.*'; all files share one database.
--
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS immich_jobs;
RESET client_min_messages;

-- the settings as stored, and the counts, of this file's queues
CREATE TEMP VIEW settings AS
    SELECT queue_name, concurrency, lease_timeout, max_attempts, retry_backoff,
           paused
      FROM immich_jobs.queue
     WHERE queue_name LIKE 'queues.%' ORDER BY queue_name;
CREATE TEMP VIEW counts AS
    SELECT * FROM immich_jobs.queue_counts
     WHERE queue_name LIKE 'queues.%' ORDER BY queue_name;
-- the leases this session holds, in the order it got them
CREATE TEMP TABLE held (job_id bigint, job_name text, payload jsonb,
                        attempt integer, lease_token bigint,
                        lease_expires_at timestamptz);

--
-- create_queue
--
-- the defaults: concurrency 1, lease_timeout 5 minutes, max_attempts 3,
-- retry_backoff 30 seconds, not paused
SELECT immich_jobs.create_queue('queues.defaults');
-- every setting, by name
SELECT immich_jobs.create_queue('queues.named', concurrency => 7,
                                lease_timeout => '90 seconds',
                                max_attempts => 9,
                                retry_backoff => '2 minutes');
-- every setting, by position
SELECT immich_jobs.create_queue('queues.positional', 4, '1 hour', 1, '0', false);
SELECT * FROM settings;
-- a new queue has a row in queue_counts, with every count zero
SELECT * FROM counts;

-- the settings take effect: a job gets the queue's max_attempts, a lease the
-- queue's lease_timeout, from the start of the claim's statement
SELECT immich_jobs.enqueue('queues.named', 'n1') > 0 AS enqueued;
SELECT job_name, max_attempts FROM immich_jobs.jobs
 WHERE queue_name = 'queues.named';
BEGIN;
INSERT INTO held SELECT * FROM immich_jobs.claim('queues.named', 'w1')
RETURNING job_name, attempt,
          date_trunc('second', lease_expires_at - statement_timestamp()) AS lease_length;
COMMIT;
SELECT immich_jobs.complete(job_id, lease_token) FROM held WHERE job_name = 'n1';

-- if_not_exists on an existing queue: a NOTICE, and nothing changes
SELECT immich_jobs.create_queue('queues.named', concurrency => 1,
                                lease_timeout => '1 second',
                                max_attempts => 1,
                                retry_backoff => '0',
                                if_not_exists => true);
SELECT * FROM settings WHERE queue_name = 'queues.named';
-- if_not_exists on a new name creates it, with the settings given
SELECT immich_jobs.create_queue('queues.ine', concurrency => 2,
                                if_not_exists => true);
SELECT * FROM settings WHERE queue_name = 'queues.ine';
-- without if_not_exists an existing name is an error (42710), nothing changes
\set VERBOSITY sqlstate
SELECT immich_jobs.create_queue('queues.named', concurrency => 1);
\set VERBOSITY default
SELECT immich_jobs.create_queue('queues.named');
SELECT * FROM settings WHERE queue_name = 'queues.named';
-- names are case-sensitive: a different queue
SELECT immich_jobs.create_queue('queues.NAMED');
SELECT queue_name FROM settings WHERE lower(queue_name) = 'queues.named';
SELECT immich_jobs.drop_queue('queues.NAMED');

--
-- alter_queue: each setting alone; the others stay as they are
--
SELECT immich_jobs.create_queue('queues.alter');
SELECT immich_jobs.alter_queue('queues.alter', concurrency => 5);
SELECT * FROM settings WHERE queue_name = 'queues.alter';
SELECT immich_jobs.alter_queue('queues.alter', lease_timeout => '10 minutes');
SELECT * FROM settings WHERE queue_name = 'queues.alter';
SELECT immich_jobs.alter_queue('queues.alter', max_attempts => 8);
SELECT * FROM settings WHERE queue_name = 'queues.alter';
SELECT immich_jobs.alter_queue('queues.alter', retry_backoff => '1 minute');
SELECT * FROM settings WHERE queue_name = 'queues.alter';
-- all NULL (explicitly, and by default): nothing changes, no error
SELECT immich_jobs.alter_queue('queues.alter', NULL, NULL, NULL, NULL);
SELECT immich_jobs.alter_queue('queues.alter');
SELECT * FROM settings WHERE queue_name = 'queues.alter';
-- all at once, by position
SELECT immich_jobs.alter_queue('queues.alter', 2, '2 minutes', 2, '2 seconds');
SELECT * FROM settings WHERE queue_name = 'queues.alter';
-- alter_queue does not pause or resume
SELECT immich_jobs.pause_queue('queues.alter');
SELECT immich_jobs.alter_queue('queues.alter', concurrency => 3);
SELECT queue_name, paused, concurrency FROM counts
 WHERE queue_name = 'queues.alter';
SELECT immich_jobs.resume_queue('queues.alter');

-- the new settings take effect at the next claim: lease_timeout and
-- max_attempts of new jobs; jobs already enqueued keep their max_attempts
SELECT immich_jobs.enqueue('queues.alter', 'before') > 0 AS enqueued;
SELECT immich_jobs.alter_queue('queues.alter', lease_timeout => '42 seconds',
                               max_attempts => 5);
SELECT immich_jobs.enqueue('queues.alter', 'after') > 0 AS enqueued;
SELECT job_name, max_attempts FROM immich_jobs.jobs
 WHERE queue_name = 'queues.alter' ORDER BY job_id;
BEGIN;
INSERT INTO held SELECT * FROM immich_jobs.claim('queues.alter', 'w1', 2)
RETURNING job_name, attempt, date_trunc('second', lease_expires_at - statement_timestamp()) AS lease_length;
COMMIT;
SELECT immich_jobs.complete(job_id, lease_token) FROM held
 WHERE job_name IN ('before', 'after') ORDER BY job_id;

--
-- set_concurrency
--
SELECT immich_jobs.set_concurrency('queues.alter', 10000);
SELECT * FROM settings WHERE queue_name = 'queues.alter';
SELECT immich_jobs.set_concurrency('queues.alter', 1);
SELECT * FROM settings WHERE queue_name = 'queues.alter';
-- and it takes effect: three waiting jobs, concurrency 1, claim gets one
SELECT immich_jobs.enqueue('queues.alter', 'c' || i) > 0 AS enqueued
  FROM generate_series(1, 3) i;
INSERT INTO held SELECT * FROM immich_jobs.claim('queues.alter', 'w1', 3)
RETURNING job_name, attempt;
SELECT immich_jobs.set_concurrency('queues.alter', 3);
INSERT INTO held SELECT * FROM immich_jobs.claim('queues.alter', 'w1', 3)
RETURNING job_name, attempt;
SELECT * FROM counts WHERE queue_name = 'queues.alter';
SELECT immich_jobs.complete(job_id, lease_token) FROM held
 WHERE job_name LIKE 'c_' ORDER BY job_id;
SELECT * FROM counts WHERE queue_name = 'queues.alter';

--
-- pause_queue / resume_queue
--
SELECT immich_jobs.create_queue('queues.pause', concurrency => 3);
SELECT immich_jobs.enqueue('queues.pause', 'p' || i) > 0 AS enqueued
  FROM generate_series(1, 3) i;
INSERT INTO held SELECT * FROM immich_jobs.claim('queues.pause', 'w1')
RETURNING job_name, attempt;
SELECT immich_jobs.pause_queue('queues.pause');
-- pausing changes no job's state
SELECT * FROM counts WHERE queue_name = 'queues.pause';
SELECT job_name, state FROM immich_jobs.jobs
 WHERE queue_name = 'queues.pause' ORDER BY job_id;
-- a paused queue admits nothing, though it has room and waiting jobs
SELECT count(*) AS claimed FROM immich_jobs.claim('queues.pause', 'w1', 3);
-- pausing twice is harmless
SELECT immich_jobs.pause_queue('queues.pause');
SELECT count(*) AS claimed FROM immich_jobs.claim('queues.pause', 'w1', 3);
-- the lease already held goes on: heartbeat, and complete
SELECT immich_jobs.heartbeat(job_id, lease_token) IS NOT NULL AS heartbeat
  FROM held WHERE job_name = 'p1';
SELECT immich_jobs.complete(job_id, lease_token) AS completed
  FROM held WHERE job_name = 'p1';
SELECT * FROM counts WHERE queue_name = 'queues.pause';
-- still nothing while paused
SELECT count(*) AS claimed FROM immich_jobs.claim('queues.pause', 'w1', 3);
-- resumed: the waiting jobs are admitted again, in order
SELECT immich_jobs.resume_queue('queues.pause');
SELECT * FROM counts WHERE queue_name = 'queues.pause';
INSERT INTO held SELECT * FROM immich_jobs.claim('queues.pause', 'w1', 3)
RETURNING job_name, attempt;
-- resuming a queue that is not paused is harmless
SELECT immich_jobs.resume_queue('queues.pause');
SELECT * FROM counts WHERE queue_name = 'queues.pause';
-- a lease held while the queue is paused can also fail and be released
SELECT immich_jobs.pause_queue('queues.pause');
SELECT immich_jobs.fail(job_id, lease_token, 'boom', retry_in => '0')
  FROM held WHERE job_name = 'p2';
SELECT immich_jobs.release(job_id, lease_token)
  FROM held WHERE job_name = 'p3';
SELECT * FROM counts WHERE queue_name = 'queues.pause';
SELECT count(*) AS claimed FROM immich_jobs.claim('queues.pause', 'w1', 3);
SELECT immich_jobs.resume_queue('queues.pause');
SELECT job_name, attempt
  FROM immich_jobs.claim('queues.pause', 'w1', 3) ORDER BY job_name;

--
-- drop_queue
--
-- without force: a queue with waiting, delayed, failed and cancelled jobs
-- but none active is dropped with all its jobs
SELECT immich_jobs.create_queue('queues.drop', concurrency => 2, max_attempts => 1);
SELECT immich_jobs.enqueue('queues.drop', 'waiting') > 0 AS enqueued;
SELECT immich_jobs.enqueue('queues.drop', 'delayed',
                           run_at => now() + interval '1 day') > 0 AS enqueued;
SELECT immich_jobs.enqueue('queues.drop', 'failed', priority => 1) > 0 AS enqueued;
SELECT immich_jobs.enqueue('queues.drop', 'cancelled') > 0 AS enqueued;
SELECT immich_jobs.cancel(job_id) FROM immich_jobs.jobs
 WHERE queue_name = 'queues.drop' AND job_name = 'cancelled';
INSERT INTO held SELECT * FROM immich_jobs.claim('queues.drop', 'w1')
RETURNING job_name, attempt;
SELECT immich_jobs.fail(job_id, lease_token, 'for good')
  FROM held WHERE job_name = 'failed';
SELECT job_name, state FROM immich_jobs.jobs
 WHERE queue_name = 'queues.drop' ORDER BY job_id;
SELECT * FROM counts WHERE queue_name = 'queues.drop';
SELECT immich_jobs.drop_queue('queues.drop');
SELECT count(*) AS queues FROM immich_jobs.queue WHERE queue_name = 'queues.drop';
SELECT count(*) AS jobs FROM immich_jobs.jobs WHERE queue_name = 'queues.drop';
SELECT count(*) AS counts_rows FROM counts WHERE queue_name = 'queues.drop';

-- without force, a queue with an active job is not dropped (55006), and
-- nothing of it is removed
SELECT immich_jobs.create_queue('queues.busy', concurrency => 2);
SELECT immich_jobs.enqueue('queues.busy', 'b' || i) > 0 AS enqueued
  FROM generate_series(1, 3) i;
INSERT INTO held SELECT * FROM immich_jobs.claim('queues.busy', 'w1')
RETURNING job_name, attempt;
SELECT immich_jobs.complete(job_id, lease_token) FROM held WHERE job_name = 'b1';
INSERT INTO held SELECT * FROM immich_jobs.claim('queues.busy', 'w1')
RETURNING job_name, attempt;
SELECT immich_jobs.drop_queue('queues.busy');
SELECT immich_jobs.drop_queue('queues.busy', false);
SELECT * FROM counts WHERE queue_name = 'queues.busy';
SELECT job_name, state FROM immich_jobs.jobs
 WHERE queue_name = 'queues.busy' ORDER BY job_id;
-- with force it goes, active jobs and all; the lease is gone with it
SELECT immich_jobs.drop_queue('queues.busy', force => true);
SELECT count(*) AS queues FROM immich_jobs.queue WHERE queue_name = 'queues.busy';
SELECT count(*) AS jobs FROM immich_jobs.job j
 WHERE j.job_id IN (SELECT job_id FROM held WHERE job_name LIKE 'b_');
SELECT immich_jobs.complete(job_id, lease_token) AS completed
  FROM held WHERE job_name = 'b2';
-- once the active job is gone, a plain drop works too
SELECT immich_jobs.create_queue('queues.busy2');
SELECT immich_jobs.enqueue('queues.busy2', 'x') > 0 AS enqueued;
INSERT INTO held SELECT * FROM immich_jobs.claim('queues.busy2', 'w1')
RETURNING job_name, attempt;
SELECT immich_jobs.drop_queue('queues.busy2');
SELECT immich_jobs.complete(job_id, lease_token) AS completed
  FROM held WHERE job_name = 'x';
SELECT immich_jobs.drop_queue('queues.busy2');
SELECT count(*) AS queues FROM immich_jobs.queue WHERE queue_name = 'queues.busy2';

-- a queue created again under a dropped name starts from nothing
SELECT immich_jobs.create_queue('queues.busy');
SELECT * FROM counts WHERE queue_name = 'queues.busy';
SELECT count(*) AS jobs FROM immich_jobs.jobs WHERE queue_name = 'queues.busy';

--
-- queue_counts: its columns, and every count at once
--
SELECT attname, format_type(atttypid, atttypmod) AS type
  FROM pg_attribute
 WHERE attrelid = 'immich_jobs.queue_counts'::regclass AND attnum > 0
 ORDER BY attnum;
SELECT immich_jobs.create_queue('queues.counts', concurrency => 2,
                                max_attempts => 1);
-- 2 completed, 1 failed, 1 active, 3 waiting, 2 delayed, 1 cancelled
SELECT immich_jobs.enqueue('queues.counts', 'k' || i, priority => 10 - i) > 0
       AS enqueued
  FROM generate_series(1, 8) i;
SELECT immich_jobs.enqueue('queues.counts', 'later' || i,
                           run_at => now() + interval '1 hour') > 0 AS enqueued
  FROM generate_series(1, 2) i;
INSERT INTO held SELECT * FROM immich_jobs.claim('queues.counts', 'w1', 2)
RETURNING job_name, attempt;
SELECT immich_jobs.complete(job_id, lease_token) FROM held
 WHERE job_name IN ('k1', 'k2') ORDER BY job_id;
INSERT INTO held SELECT * FROM immich_jobs.claim('queues.counts', 'w1', 2)
RETURNING job_name, attempt;
SELECT immich_jobs.fail(job_id, lease_token, 'no') FROM held
 WHERE job_name = 'k3';
SELECT immich_jobs.cancel(job_id) FROM immich_jobs.jobs
 WHERE queue_name = 'queues.counts' AND job_name = 'k8';
SELECT * FROM counts WHERE queue_name = 'queues.counts';
-- the same as counting the jobs view (cancelled jobs have no column)
SELECT state, count(*) FROM immich_jobs.jobs
 WHERE queue_name = 'queues.counts' GROUP BY state ORDER BY state;

-- clean up: this file leaves no queue behind
SELECT immich_jobs.drop_queue(queue_name, force => true)
  FROM immich_jobs.queue WHERE queue_name LIKE 'queues.%' ORDER BY queue_name;
SELECT count(*) AS left_over FROM counts;
