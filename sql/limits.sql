--
-- Limits on what a caller may store or ask for: intervals with months,
-- infinite run_at, payloads and error texts over their size settings; and
-- leases timed from the start of the statement, not of the transaction.
--
-- Every queue of this file is named 'limits.*'; all files share one database.
--
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS immich_jobs;
RESET client_min_messages;

CREATE TEMP TABLE held (job_id bigint, job_name text, payload jsonb,
                        attempt integer, lease_token bigint,
                        lease_expires_at timestamptz);

--
-- intervals: months are refused wherever an interval is taken, even when
-- they compare as in range ('3500000 mon -104999993 days' is "7 days" to
-- interval comparison, and thousands of years when added to a time)
--
SELECT immich_jobs.create_queue('limits.m', lease_timeout => '3500000 mon -104999993 days');
SELECT immich_jobs.create_queue('limits.m', retry_backoff => '1 mon');
SELECT immich_jobs.create_queue('limits.q', concurrency => 5, lease_timeout => '1 minute');
SELECT immich_jobs.alter_queue('limits.q', lease_timeout => '1 year -358 days');
SELECT immich_jobs.alter_queue('limits.q', retry_backoff => '-1 mon 31 days');
SELECT lease_timeout, retry_backoff FROM immich_jobs.queue WHERE queue_name = 'limits.q';
SELECT immich_jobs.enqueue('limits.q', 'j') > 0 AS enqueued;
INSERT INTO held SELECT * FROM immich_jobs.claim('limits.q', 'w');
SELECT immich_jobs.fail(job_id, lease_token, retry_in => '1 mon') FROM held;
SELECT immich_jobs.heartbeat(job_id, lease_token, extend_by => '1 mon -29 days') FROM held;
-- days and hours that add up to the range are fine
SELECT immich_jobs.heartbeat(job_id, lease_token, extend_by => '8 days -25 hours') IS NOT NULL AS extended
  FROM held;

--
-- run_at: infinity is refused (it would block its dedup key forever);
-- -infinity too
--
SELECT immich_jobs.enqueue('limits.q', 'never', run_at => 'infinity');
SELECT immich_jobs.enqueue('limits.q', 'always', run_at => '-infinity');
SELECT immich_jobs.enqueue_many('limits.q', '[{"name": "ok"}, {"name": "never", "run_at": "infinity"}]');
SELECT immich_jobs.release(job_id, lease_token, run_at => 'infinity') FROM held;
SELECT job_name, state FROM immich_jobs.jobs WHERE queue_name = 'limits.q' ORDER BY job_id;

--
-- sizes: immich_jobs.max_payload_size (default 1MB) and
-- immich_jobs.max_error_size (default 64kB)
--
SHOW immich_jobs.max_payload_size;
SHOW immich_jobs.max_error_size;
SET immich_jobs.max_payload_size = '1kB';
SET immich_jobs.max_error_size = '1kB';
SELECT immich_jobs.enqueue('limits.q', 'big', jsonb_build_object('s', repeat('x', 2000)));
SELECT immich_jobs.enqueue_many('limits.q',
         jsonb_build_array(jsonb_build_object('name', 'small'),
                           jsonb_build_object('name', 'big', 'payload',
                                              jsonb_build_object('s', repeat('x', 2000)))));
SELECT immich_jobs.enqueue('limits.q', 'fits', jsonb_build_object('s', repeat('x', 900))) > 0 AS enqueued;
SELECT immich_jobs.fail(job_id, lease_token, repeat('e', 1025)) FROM held;
SELECT immich_jobs.fail(job_id, lease_token, repeat('e', 1024)) FROM held;
SELECT job_name, state, length(last_error) FROM immich_jobs.jobs
 WHERE queue_name = 'limits.q' ORDER BY job_id;
RESET immich_jobs.max_payload_size;
RESET immich_jobs.max_error_size;
-- an application role cannot raise them
CREATE ROLE limits_app;
SET ROLE limits_app;
SET immich_jobs.max_payload_size = '1GB';
RESET ROLE;
DROP ROLE limits_app;

--
-- leases are timed from the start of the statement, not of the transaction:
-- a claim or heartbeat made late in a transaction gets its whole
-- lease_timeout from when it was made
--
SELECT immich_jobs.create_queue('limits.clock', lease_timeout => '10 seconds');
SELECT immich_jobs.enqueue('limits.clock', 'c') > 0 AS enqueued;
TRUNCATE held;
BEGIN;
SELECT pg_sleep(0.3);
INSERT INTO held SELECT * FROM immich_jobs.claim('limits.clock', 'w');
SELECT lease_expires_at >= now() + interval '10.3 seconds' AS from_the_statement FROM held;
SELECT pg_sleep(0.3);
SELECT immich_jobs.heartbeat(job_id, lease_token) >= now() + interval '10.6 seconds' AS from_the_statement
  FROM held;
COMMIT;
