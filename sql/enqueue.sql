--
-- enqueue: job ids, the payload default, priority order, run_at (waiting or
-- delayed), dedup keys and per-job max_attempts.
--
-- Every queue of this file is named 'enq.*'; all files share one database.
--
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS immich_jobs;
RESET client_min_messages;

CREATE TEMP VIEW counts AS
    SELECT * FROM immich_jobs.queue_counts
     WHERE queue_name LIKE 'enq.%' ORDER BY queue_name;
CREATE TEMP TABLE held (job_id bigint, job_name text, payload jsonb,
                        attempt integer, lease_token bigint,
                        lease_expires_at timestamptz);

--
-- ids and the stored job
--
SELECT immich_jobs.create_queue('enq.basic', concurrency => 10);
-- (in one transaction, so that now() is the enqueue's)
BEGIN;
SELECT immich_jobs.enqueue('enq.basic', 'first') AS id1 \gset
SELECT job_id = :id1 AS is_id1, queue_name, job_name, state, priority, attempt,
       max_attempts, run_at = now() AS run_at_now,
       created_at = now() AS created_now, started_at, finished_at, worker_id,
       lease_expires_at, last_error, dedup_key, payload
  FROM immich_jobs.jobs WHERE job_id = :id1;
COMMIT;
SELECT immich_jobs.enqueue('enq.basic', 'second', '{"assetId": "a1"}') AS id2 \gset
-- ids increase, and each is the id of the job just added
SELECT :id2 > :id1 AS increasing;
SELECT job_name FROM immich_jobs.jobs WHERE job_id = :id2;
-- the payload is stored as given; the default is an empty object
SELECT job_name, payload FROM immich_jobs.jobs
 WHERE queue_name = 'enq.basic' ORDER BY job_id;
-- any JSON value is a payload
SELECT immich_jobs.enqueue('enq.basic', 'scalar', '42') > 0 AS enqueued;
SELECT immich_jobs.enqueue('enq.basic', 'array', '[1, "two", null]') > 0 AS enqueued;
SELECT immich_jobs.enqueue('enq.basic', 'nested',
                           '{"a": {"b": [true, false]}, "c": null}') > 0 AS enqueued;
-- a job name may be any text of 1 to 255 bytes
SELECT immich_jobs.enqueue('enq.basic', 'générer les vignettes') > 0 AS enqueued;
SELECT job_name, payload FROM immich_jobs.jobs
 WHERE queue_name = 'enq.basic' AND job_name ~ '^[a-z]+$' ORDER BY job_id;
-- (its text compared, not shown: the output stays ASCII whatever the
-- encoding of the test database)
SELECT count(*) AS kept_as_given FROM immich_jobs.jobs
 WHERE queue_name = 'enq.basic' AND job_name = 'générer les vignettes';
SELECT * FROM counts;
SELECT immich_jobs.clear('enq.basic');
SELECT * FROM counts;

--
-- priority: higher first, enqueue order within a priority
--
SELECT immich_jobs.create_queue('enq.prio', concurrency => 100);
SELECT immich_jobs.enqueue('enq.prio', name, priority => p) > 0 AS enqueued
  FROM (VALUES ('a', 0), ('b', 5), ('c', 0), ('d', 5), ('e', -1),
               ('f', 2147483647), ('g', -2147483648), ('h', 5), ('i', 0))
       AS v(name, p);
SELECT job_name, priority FROM immich_jobs.jobs
 WHERE queue_name = 'enq.prio' ORDER BY job_id;
-- one at a time: each claim takes the best job left
INSERT INTO held SELECT * FROM immich_jobs.claim('enq.prio', 'w1')
RETURNING job_name;
INSERT INTO held SELECT * FROM immich_jobs.claim('enq.prio', 'w1')
RETURNING job_name;
INSERT INTO held SELECT * FROM immich_jobs.claim('enq.prio', 'w1')
RETURNING job_name;
-- a job enqueued now with a higher priority goes before the rest
SELECT immich_jobs.enqueue('enq.prio', 'j', priority => 1) > 0 AS enqueued;
-- several at once: best first
INSERT INTO held SELECT * FROM immich_jobs.claim('enq.prio', 'w1', 100)
RETURNING job_name, attempt;
SELECT * FROM counts WHERE queue_name = 'enq.prio';
SELECT immich_jobs.complete_many(array_agg(job_id), array_agg(lease_token))
  FROM held;
SELECT * FROM counts WHERE queue_name = 'enq.prio';
TRUNCATE held;

--
-- run_at: NULL, now or in the past is waiting; in the future, delayed
--
SELECT immich_jobs.create_queue('enq.delay', concurrency => 10);
SELECT immich_jobs.enqueue('enq.delay', 'null', run_at => NULL) > 0 AS enqueued;
SELECT immich_jobs.enqueue('enq.delay', 'now', run_at => now()) > 0 AS enqueued;
SELECT immich_jobs.enqueue('enq.delay', 'past',
                           run_at => now() - interval '1 hour') > 0 AS enqueued;
SELECT immich_jobs.enqueue('enq.delay', 'long ago',
                           run_at => '2000-01-01 00:00:00+00') > 0 AS enqueued;
SELECT immich_jobs.enqueue('enq.delay', 'future', priority => 9,
                           run_at => now() + interval '1 hour') > 0 AS enqueued;
SELECT immich_jobs.enqueue('enq.delay', 'far future', priority => 9,
                           run_at => '2999-01-01 00:00:00+00') > 0 AS enqueued;
SELECT job_name, state, run_at <= created_at AS runnable_at_enqueue,
       run_at = '2000-01-01 00:00:00+00' AS run_at_2000,
       run_at = '2999-01-01 00:00:00+00' AS run_at_2999
  FROM immich_jobs.jobs WHERE queue_name = 'enq.delay' ORDER BY job_id;
SELECT * FROM counts WHERE queue_name = 'enq.delay';
-- delayed jobs are invisible to claim, whatever their priority
INSERT INTO held SELECT * FROM immich_jobs.claim('enq.delay', 'w1', 10)
RETURNING job_name;
SELECT count(*) AS claimed FROM immich_jobs.claim('enq.delay', 'w1', 10);
SELECT * FROM counts WHERE queue_name = 'enq.delay';
-- make 'future' due (as superuser, rewriting its run_at; in the claim's
-- transaction, so that nothing else sees it due first): the claim promotes
-- it and leases it, with its first attempt
BEGIN;
UPDATE immich_jobs.job SET run_at = now() - interval '1 second'
 WHERE job_id = (SELECT job_id FROM immich_jobs.jobs
                  WHERE queue_name = 'enq.delay' AND job_name = 'future');
INSERT INTO held SELECT * FROM immich_jobs.claim('enq.delay', 'w1', 10)
RETURNING job_name, attempt;
COMMIT;
SELECT * FROM counts WHERE queue_name = 'enq.delay';
SELECT job_name, state FROM immich_jobs.jobs
 WHERE queue_name = 'enq.delay' ORDER BY job_id;
SELECT immich_jobs.complete_many(array_agg(job_id), array_agg(lease_token))
  FROM held;
TRUNCATE held;
-- a promoted job takes its place in priority order with the waiting ones
SELECT immich_jobs.enqueue('enq.delay', 'low', priority => 1) > 0 AS enqueued;
SELECT immich_jobs.enqueue('enq.delay', 'high soon', priority => 2,
                           run_at => now() + interval '1 hour') > 0 AS enqueued;
BEGIN;
UPDATE immich_jobs.job SET run_at = now() - interval '1 second'
 WHERE job_id = (SELECT job_id FROM immich_jobs.jobs
                  WHERE queue_name = 'enq.delay' AND job_name = 'high soon');
INSERT INTO held SELECT * FROM immich_jobs.claim('enq.delay', 'w1', 10)
RETURNING job_name, attempt;
COMMIT;
SELECT immich_jobs.complete_many(array_agg(job_id), array_agg(lease_token))
  FROM held;
TRUNCATE held;
SELECT * FROM counts WHERE queue_name = 'enq.delay';

--
-- dedup_key
--
SELECT immich_jobs.create_queue('enq.dedup', concurrency => 10);
SELECT immich_jobs.create_queue('enq.dedup2');
SELECT immich_jobs.enqueue('enq.dedup', 'thumb', '{"v": 1}',
                           dedup_key => 'asset-1') AS k1 \gset
-- the same key: the same id, and nothing added or changed, whatever else
-- the call says
SELECT immich_jobs.enqueue('enq.dedup', 'thumb', '{"v": 2}',
                           dedup_key => 'asset-1') = :k1 AS same_id;
SELECT immich_jobs.enqueue('enq.dedup', 'other', '{"v": 3}', priority => 7,
                           run_at => now() + interval '1 day',
                           dedup_key => 'asset-1', max_attempts => 1) = :k1
       AS same_id;
SELECT job_id = :k1 AS is_k1, job_name, state, priority, max_attempts,
       dedup_key, payload
  FROM immich_jobs.jobs WHERE queue_name = 'enq.dedup' ORDER BY job_id;
SELECT * FROM counts WHERE queue_name = 'enq.dedup';
-- keys are compared exactly
SELECT immich_jobs.enqueue('enq.dedup', 'thumb', dedup_key => 'Asset-1') <> :k1
       AS new_id;
SELECT immich_jobs.enqueue('enq.dedup', 'thumb', dedup_key => 'asset-1 ') <> :k1
       AS new_id;
-- no key: never deduplicated
SELECT immich_jobs.enqueue('enq.dedup', 'thumb') <> immich_jobs.enqueue('enq.dedup', 'thumb')
       AS different;
-- different queues do not share keys
SELECT immich_jobs.enqueue('enq.dedup2', 'thumb', dedup_key => 'asset-1') AS q2k1 \gset
SELECT :q2k1 <> :k1 AS new_id;
SELECT immich_jobs.enqueue('enq.dedup2', 'thumb', dedup_key => 'asset-1') = :q2k1
       AS same_id;
SELECT queue_name, quote_nullable(dedup_key) AS dedup_key, count(*)
  FROM immich_jobs.jobs
 WHERE queue_name LIKE 'enq.dedup%' GROUP BY 1, 2 ORDER BY 1, 2;
SELECT * FROM counts WHERE queue_name LIKE 'enq.dedup%';
SELECT immich_jobs.clear('enq.dedup');
SELECT immich_jobs.clear('enq.dedup2');

-- a delayed job that has not started holds its key too
SELECT immich_jobs.enqueue('enq.dedup', 'later', dedup_key => 'd',
                           run_at => now() + interval '1 hour') AS kd \gset
SELECT immich_jobs.enqueue('enq.dedup', 'later', dedup_key => 'd') = :kd AS same_id;
SELECT job_name, state, dedup_key FROM immich_jobs.jobs
 WHERE queue_name = 'enq.dedup' ORDER BY job_id;
SELECT immich_jobs.clear('enq.dedup');

-- once the job is leased it no longer holds the key: a new job is added
SELECT immich_jobs.enqueue('enq.dedup', 'j1', dedup_key => 'k') AS j1 \gset
INSERT INTO held SELECT * FROM immich_jobs.claim('enq.dedup', 'w1')
RETURNING job_name, attempt;
SELECT immich_jobs.enqueue('enq.dedup', 'j2', dedup_key => 'k') AS j2 \gset
SELECT :j2 <> :j1 AS new_id;
SELECT immich_jobs.enqueue('enq.dedup', 'j2 again', dedup_key => 'k') = :j2
       AS same_id;
SELECT * FROM counts WHERE queue_name = 'enq.dedup';
-- ... nor when it waits again for a retry (it has started), nor when the
-- second one, leased too, waits for a delayed retry
INSERT INTO held SELECT * FROM immich_jobs.claim('enq.dedup', 'w1')
RETURNING job_name, attempt;
SELECT immich_jobs.fail(job_id, lease_token, 'again', retry_in => '0')
  FROM held WHERE job_name = 'j1';
SELECT immich_jobs.fail(job_id, lease_token, 'later', retry_in => '1 hour')
  FROM held WHERE job_name = 'j2';
SELECT job_name, state, attempt, started_at IS NOT NULL AS started, dedup_key
  FROM immich_jobs.jobs WHERE queue_name = 'enq.dedup' ORDER BY job_id;
SELECT immich_jobs.enqueue('enq.dedup', 'j3', dedup_key => 'k') AS j3 \gset
SELECT :j3 NOT IN (:j1, :j2) AS new_id;
SELECT immich_jobs.enqueue('enq.dedup', 'j3 again', dedup_key => 'k') = :j3
       AS same_id;
-- a released job has started too (release gives back the attempt, not
-- the key)
TRUNCATE held;
INSERT INTO held SELECT * FROM immich_jobs.claim('enq.dedup', 'w1', 10)
RETURNING job_name, attempt;
SELECT immich_jobs.release(job_id, lease_token) FROM held WHERE job_name = 'j3';
SELECT immich_jobs.enqueue('enq.dedup', 'j4', dedup_key => 'k') AS j4 \gset
SELECT :j4 NOT IN (:j1, :j2, :j3) AS new_id;
-- a cancelled job does not hold its key
SELECT immich_jobs.cancel(:j4);
SELECT immich_jobs.enqueue('enq.dedup', 'j5', dedup_key => 'k') AS j5 \gset
SELECT :j5 NOT IN (:j1, :j2, :j3, :j4) AS new_id;
SELECT job_name, state, attempt, dedup_key FROM immich_jobs.jobs
 WHERE queue_name = 'enq.dedup' ORDER BY job_id;
SELECT * FROM counts WHERE queue_name = 'enq.dedup';
TRUNCATE held;

--
-- max_attempts per job (NULL: the queue's)
--
SELECT immich_jobs.create_queue('enq.attempts', concurrency => 10, max_attempts => 4);
SELECT immich_jobs.enqueue('enq.attempts', 'queue default') > 0 AS enqueued;
SELECT immich_jobs.enqueue('enq.attempts', 'null', max_attempts => NULL) > 0 AS enqueued;
SELECT immich_jobs.enqueue('enq.attempts', 'one', max_attempts => 1) > 0 AS enqueued;
SELECT immich_jobs.enqueue('enq.attempts', 'thousand', max_attempts => 1000) > 0 AS enqueued;
SELECT job_name, max_attempts FROM immich_jobs.jobs
 WHERE queue_name = 'enq.attempts' ORDER BY job_id;
-- and it is what counts: with max_attempts 1 the first failure is final,
-- with the queue's 4 it retries
INSERT INTO held SELECT * FROM immich_jobs.claim('enq.attempts', 'w1', 10)
RETURNING job_name, attempt;
SELECT job_name, immich_jobs.fail(job_id, lease_token, 'x', retry_in => '0')
  FROM held ORDER BY job_id;
SELECT * FROM counts WHERE queue_name = 'enq.attempts';
TRUNCATE held;

-- clean up: this file leaves no queue behind
SELECT immich_jobs.drop_queue(queue_name, force => true)
  FROM immich_jobs.queue WHERE queue_name LIKE 'enq.%' ORDER BY queue_name;
SELECT count(*) AS left_over FROM counts;
