--
-- What Immich's job repository needs, with BullMQ's semantics (1.2):
-- dedup mode 'kept' (a key is blocked while a job with it is waiting,
-- delayed, active or failed), cancel_by_key, drain (keeps delayed jobs),
-- job_counts (a paused queue's waiting jobs count as paused), and their
-- errors.  Each section says what BullMQ does.
--
-- Every queue of this file is named 'bull.*'; all files share one database.
--
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS immich_jobs;
RESET client_min_messages;

CREATE TEMP TABLE held (job_id bigint, job_name text, payload jsonb,
                        attempt integer, lease_token bigint,
                        lease_expires_at timestamptz);
-- the jobs of a queue that have a key, in enqueue order
CREATE FUNCTION pg_temp.keyed(q text)
  RETURNS TABLE (job_name text, state text, dedup_key text, payload jsonb)
  LANGUAGE sql AS
  $$ SELECT job_name, state, dedup_key, payload
       FROM immich_jobs.jobs WHERE queue_name = q AND dedup_key IS NOT NULL
      ORDER BY job_id $$;
CREATE FUNCTION pg_temp.kept(q text, name text, key text, payload jsonb DEFAULT '{}',
                             run_at timestamptz DEFAULT NULL)
  RETURNS bigint LANGUAGE sql AS
  $$ SELECT immich_jobs.enqueue(q, name, payload, dedup_key => key, run_at => run_at,
                                dedup_mode => 'kept') $$;

--
-- dedup mode 'kept'.  BullMQ: add() with a jobId that a job still kept has
-- (waiting, delayed, active, failed) adds nothing and returns that job;
-- once the job is completed (removeOnComplete) or removed, the id is free.
--
SELECT immich_jobs.create_queue('bull.kept', concurrency => 10, max_attempts => 1);
-- waiting: the second enqueue returns the first job's id
SELECT pg_temp.kept('bull.kept', 'first', 'a', '{"n": 1}') AS first_id \gset
SELECT pg_temp.kept('bull.kept', 'second', 'a', '{"n": 2}') = :first_id AS same_job;
-- active
INSERT INTO held SELECT * FROM immich_jobs.claim('bull.kept', 'w', 1);
SELECT job_name, payload FROM held;
SELECT pg_temp.kept('bull.kept', 'third', 'a') = :first_id AS same_job;
-- failed (its last attempt)
SELECT immich_jobs.fail(job_id, lease_token, 'boom') FROM held;
SELECT pg_temp.kept('bull.kept', 'fourth', 'a') = :first_id AS same_job;
SELECT * FROM pg_temp.keyed('bull.kept');
-- the same key in mode 'unstarted' only looks at jobs not yet started
SELECT immich_jobs.enqueue('bull.kept', 'unstarted', dedup_key => 'a') <> :first_id AS new_job;
-- and a kept enqueue yields to a job of mode 'unstarted' not yet started
SELECT immich_jobs.enqueue('bull.kept', 'fifth', dedup_key => 'b') AS fifth_id \gset
SELECT pg_temp.kept('bull.kept', 'sixth', 'b') = :fifth_id AS same_job;
SELECT * FROM pg_temp.keyed('bull.kept');
-- delayed
SELECT pg_temp.kept('bull.kept', 'later', 'd', run_at => now() + interval '1 hour') AS later_id \gset
SELECT pg_temp.kept('bull.kept', 'later2', 'd') = :later_id AS same_job;
-- completed: the key is free again
TRUNCATE held;
SELECT immich_jobs.enqueue('bull.kept', 'c', dedup_key => 'c', dedup_mode => 'kept') AS c_id \gset
INSERT INTO held SELECT * FROM immich_jobs.claim('bull.kept', 'w', 10);
SELECT job_name FROM held ORDER BY job_id;
SELECT immich_jobs.complete(job_id, lease_token) FROM held WHERE job_name = 'c';
SELECT pg_temp.kept('bull.kept', 'c again', 'c') > :c_id AS new_job;
-- retried after a failure that was not the last: still the same job
SELECT immich_jobs.create_queue('bull.retry', max_attempts => 3, retry_backoff => '0');
SELECT pg_temp.kept('bull.retry', 'r', 'r') AS r_id \gset
TRUNCATE held;
INSERT INTO held SELECT * FROM immich_jobs.claim('bull.retry', 'w', 1);
SELECT immich_jobs.fail(job_id, lease_token, 'again') FROM held;
SELECT pg_temp.kept('bull.retry', 'r2', 'r') = :r_id AS same_job;
-- enqueue_many: the key "dedup_mode", within the array and against the table
SELECT immich_jobs.enqueue_many('bull.kept', '[
  {"name": "m1", "dedup_key": "m", "dedup_mode": "kept"},
  {"name": "m2", "dedup_key": "m", "dedup_mode": "kept"},
  {"name": "f", "dedup_key": "a", "dedup_mode": "kept"},
  {"name": "plain"},
  {"name": "u", "dedup_key": "m", "dedup_mode": "unstarted"},
  {"name": "n", "dedup_key": "n", "dedup_mode": null}]') AS added;
SELECT * FROM pg_temp.keyed('bull.kept');

--
-- cancel_by_key.  BullMQ: Job.remove() of a waiting, delayed or failed job
-- removes it and frees its id; a job locked by a worker cannot be removed
-- (here: it goes on, and its key stays blocked).  Immich reads the removed
-- job's data.
--
SELECT immich_jobs.create_queue('bull.cancel', concurrency => 10, max_attempts => 1);
SELECT pg_temp.kept('bull.cancel', 'a', 'a', '{"a": 1}') > 0;
SELECT pg_temp.kept('bull.cancel', 'f', 'f', '{"f": 1}') > 0;
TRUNCATE held;
INSERT INTO held SELECT * FROM immich_jobs.claim('bull.cancel', 'w', 2);
SELECT immich_jobs.fail(job_id, lease_token) FROM held WHERE job_name = 'f';
SELECT pg_temp.kept('bull.cancel', 'w', 'w', '{"w": 1}') > 0;
SELECT pg_temp.kept('bull.cancel', 'd', 'd', '{"d": 1}', now() + interval '1 day') > 0;
SELECT key, immich_jobs.cancel_by_key('bull.cancel', key)
  FROM unnest(ARRAY['w', 'd', 'a', 'f', 'none']) AS key;
SELECT * FROM pg_temp.keyed('bull.cancel');
SELECT active, failed, delayed, waiting FROM immich_jobs.job_counts('bull.cancel');
-- the keys are free, but the active one's
SELECT pg_temp.kept('bull.cancel', 'w2', 'w') IS NOT NULL,
       pg_temp.kept('bull.cancel', 'a2', 'a') = (SELECT job_id FROM held WHERE job_name = 'a') AS still_blocked;
-- several jobs with the key (mode 'unstarted' allows a retried one and a
-- new one): all cancelled, the newest payload returned
SELECT immich_jobs.create_queue('bull.many', max_attempts => 3, retry_backoff => '0');
SELECT immich_jobs.enqueue('bull.many', 'old', '{"v": "old"}', dedup_key => 'k') > 0;
TRUNCATE held;
INSERT INTO held SELECT * FROM immich_jobs.claim('bull.many', 'w', 1);
SELECT immich_jobs.fail(job_id, lease_token) FROM held;
SELECT immich_jobs.enqueue('bull.many', 'new', '{"v": "new"}', dedup_key => 'k') > 0;
SELECT immich_jobs.cancel_by_key('bull.many', 'k');
SELECT * FROM pg_temp.keyed('bull.many');

--
-- drain.  BullMQ: Queue.drain() removes the waiting jobs (prioritized ones
-- included) and keeps the delayed ones unless drain(true).  clear(...,
-- 'waiting') removes both, as it always did.
--
SELECT immich_jobs.create_queue('bull.drain', concurrency => 1);
SELECT immich_jobs.enqueue('bull.drain', 'w' || i, priority => i % 2) > 0
  FROM generate_series(1, 4) i;
SELECT immich_jobs.enqueue('bull.drain', 'later', run_at => now() + interval '1 hour') > 0;
TRUNCATE held;
INSERT INTO held SELECT * FROM immich_jobs.claim('bull.drain', 'w', 1);
SELECT immich_jobs.drain('bull.drain');
SELECT active, delayed, waiting FROM immich_jobs.job_counts('bull.drain');
SELECT immich_jobs.enqueue('bull.drain', 'w5') > 0;
SELECT immich_jobs.drain('bull.drain', delayed => true);
SELECT active, delayed, waiting FROM immich_jobs.job_counts('bull.drain');
SELECT immich_jobs.complete(job_id, lease_token) FROM held;

--
-- job_counts.  BullMQ: getJobCounts('active', 'completed', 'failed',
-- 'delayed', 'waiting', 'paused'): the jobs of a paused queue are in its
-- paused list, so waiting is 0 and paused is their number.
--
SELECT immich_jobs.create_queue('bull.counts', concurrency => 1, max_attempts => 1);
SELECT immich_jobs.enqueue('bull.counts', 'j' || i) > 0 FROM generate_series(1, 5) i;
SELECT immich_jobs.enqueue('bull.counts', 'later', run_at => now() + interval '1 hour') > 0;
TRUNCATE held;
INSERT INTO held SELECT * FROM immich_jobs.claim('bull.counts', 'w', 1);
SELECT immich_jobs.complete(job_id, lease_token) FROM held;
TRUNCATE held;
INSERT INTO held SELECT * FROM immich_jobs.claim('bull.counts', 'w', 1);
SELECT immich_jobs.fail(job_id, lease_token) FROM held;
TRUNCATE held;
INSERT INTO held SELECT * FROM immich_jobs.claim('bull.counts', 'w', 1);
SELECT * FROM immich_jobs.job_counts('bull.counts');
SELECT immich_jobs.pause_queue('bull.counts');
SELECT * FROM immich_jobs.job_counts('bull.counts');
-- the view keeps its own words
SELECT paused, active, waiting FROM immich_jobs.queue_counts WHERE queue_name = 'bull.counts';
SELECT immich_jobs.resume_queue('bull.counts');
SELECT * FROM immich_jobs.job_counts('bull.counts');

--
-- errors: each says what is wrong, and nothing is left half-done
--
SELECT immich_jobs.enqueue('bull.kept', 'x', dedup_key => 'e', dedup_mode => 'always');
SELECT immich_jobs.enqueue('bull.kept', 'x', dedup_key => 'e', dedup_mode => NULL);
SELECT immich_jobs.enqueue_many('bull.kept', '[{"name": "ok"}, {"name": "x", "dedup_key": "e", "dedup_mode": "Kept"}]');
SELECT immich_jobs.enqueue_many('bull.kept', '[{"name": "x", "dedup_key": "e", "dedup_mode": true}]');
SELECT count(*) AS none_added FROM immich_jobs.jobs WHERE queue_name = 'bull.kept' AND job_name IN ('x', 'ok');
SELECT immich_jobs.cancel_by_key('bull.none', 'k');
SELECT immich_jobs.cancel_by_key(NULL, 'k');
SELECT immich_jobs.cancel_by_key('bull.kept', NULL);
SELECT immich_jobs.drain('bull.none');
SELECT immich_jobs.drain('bull.kept', NULL);
SELECT * FROM immich_jobs.job_counts('bull.none');
SELECT * FROM immich_jobs.job_counts(NULL);

-- a kept enqueue stopped by a job_id already taken (job_id_seq set back)
-- raises what a plain insert raises, instead of retrying as if a key blocked
SELECT last_value AS seq_was FROM immich_jobs.job_id_seq \gset
SELECT setval('immich_jobs.job_id_seq', (SELECT min(job_id) FROM immich_jobs.job), false) > 0 AS set_back;
SELECT immich_jobs.enqueue('bull.kept', 'x', dedup_key => 'pk', dedup_mode => 'kept');
SELECT setval('immich_jobs.job_id_seq', :seq_was) > 0 AS restored;
SELECT count(*) AS none_added FROM immich_jobs.jobs WHERE dedup_key = 'pk';
