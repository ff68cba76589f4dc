--
-- roles.sql: the two roles the README sets up.  The worker role adds jobs,
-- leases them, ends its leases and reads counts; it cannot administer
-- (create, alter, pause, resume, drop, clear, drain, retry, cancel, reap).
-- The admin role can do all of it.  The statements below are the README's.
--
-- The roles are created in the transaction, which is rolled back.
--
BEGIN;

SET LOCAL client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS immich_jobs;
RESET client_min_messages;

CREATE ROLE immich_jobs_worker NOLOGIN;
GRANT USAGE ON SCHEMA immich_jobs TO immich_jobs_worker;
GRANT EXECUTE ON FUNCTION
    immich_jobs.enqueue(text, text, jsonb, integer, timestamptz, text, integer, text),
    immich_jobs.enqueue_many(text, jsonb),
    immich_jobs.claim(text, text, integer),
    immich_jobs.complete(bigint, bigint),
    immich_jobs.complete_many(bigint[], bigint[]),
    immich_jobs.complete_and_claim(text, text, integer, bigint[], bigint[]),
    immich_jobs.fail(bigint, bigint, text, interval),
    immich_jobs.heartbeat(bigint, bigint, interval),
    immich_jobs.release(bigint, bigint, timestamptz),
    immich_jobs.job_counts(text),
    immich_jobs._queue_counts(integer)
  TO immich_jobs_worker;
GRANT SELECT ON immich_jobs.queue_counts, immich_jobs.jobs TO immich_jobs_worker;
CREATE ROLE immich_jobs_admin NOLOGIN IN ROLE immich_jobs_worker;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA immich_jobs TO immich_jobs_admin;

SELECT plan(24);

CREATE TEMP TABLE leased (job_id bigint, job_name text, payload jsonb, attempt integer,
                          lease_token bigint, lease_expires_at timestamptz) ON COMMIT DROP;
GRANT ALL ON leased TO immich_jobs_worker;

-- the admin sets up a queue
SET ROLE immich_jobs_admin;
SELECT lives_ok($$SELECT immich_jobs.create_queue('pgtap_roles', concurrency => 2)$$,
                'the admin role creates a queue');
RESET ROLE;

-- the worker works
SET ROLE immich_jobs_worker;
SELECT lives_ok($$SELECT immich_jobs.enqueue('pgtap_roles', 'a')$$,
                'the worker role enqueues');
SELECT lives_ok($$SELECT immich_jobs.enqueue_many('pgtap_roles', '[{"name": "b"}, {"name": "c"}]')$$,
                'the worker role enqueues many');
SELECT lives_ok($$INSERT INTO leased SELECT * FROM immich_jobs.claim('pgtap_roles', 'w', 2)$$,
                'the worker role claims');
SELECT is((SELECT count(*) FROM leased)::int, 2, 'it leased two jobs');
SELECT isnt((SELECT immich_jobs.heartbeat(job_id, lease_token) FROM leased ORDER BY job_id LIMIT 1),
            NULL, 'the worker role heartbeats');
SELECT is((SELECT immich_jobs.fail(job_id, lease_token, 'x', '0') FROM leased ORDER BY job_id LIMIT 1),
          'retrying', 'the worker role fails a job');
SELECT is((SELECT immich_jobs.complete(job_id, lease_token) FROM leased ORDER BY job_id DESC LIMIT 1),
          true, 'the worker role completes a job');
SELECT lives_ok($$SELECT * FROM immich_jobs.complete_and_claim('pgtap_roles', 'w', 1)$$,
                'the worker role completes and claims');
SELECT is((SELECT active FROM immich_jobs.job_counts('pgtap_roles'))::int, 1,
          'the worker role reads job_counts');
SELECT is((SELECT active FROM immich_jobs.queue_counts WHERE queue_name = 'pgtap_roles')::int, 1,
          'the worker role reads the queue_counts view');

-- ... and cannot administer
SELECT throws_ok($$SELECT immich_jobs.create_queue('pgtap_roles_2')$$, '42501', NULL,
                 'the worker role cannot create a queue');
SELECT throws_ok($$SELECT immich_jobs.alter_queue('pgtap_roles', concurrency => 100)$$, '42501', NULL,
                 'the worker role cannot alter a queue');
SELECT throws_ok($$SELECT immich_jobs.set_concurrency('pgtap_roles', 100)$$, '42501', NULL,
                 'the worker role cannot set the concurrency');
SELECT throws_ok($$SELECT immich_jobs.pause_queue('pgtap_roles')$$, '42501', NULL,
                 'the worker role cannot pause');
SELECT throws_ok($$SELECT immich_jobs.resume_queue('pgtap_roles')$$, '42501', NULL,
                 'the worker role cannot resume');
SELECT throws_ok($$SELECT immich_jobs.drop_queue('pgtap_roles', force => true)$$, '42501', NULL,
                 'the worker role cannot drop a queue');
SELECT throws_ok($$SELECT immich_jobs.clear('pgtap_roles', 'waiting')$$, '42501', NULL,
                 'the worker role cannot clear');
SELECT throws_ok($$SELECT immich_jobs.drain('pgtap_roles')$$, '42501', NULL,
                 'the worker role cannot drain');
SELECT throws_ok($$SELECT immich_jobs.cancel((SELECT min(job_id) FROM leased))$$, '42501', NULL,
                 'the worker role cannot cancel');
SELECT throws_ok($$SELECT immich_jobs.cancel_by_key('pgtap_roles', 'k')$$, '42501', NULL,
                 'the worker role cannot cancel by key');
SELECT throws_ok($$SELECT immich_jobs.retry_failed('pgtap_roles')$$, '42501', NULL,
                 'the worker role cannot retry failed jobs');
SELECT throws_ok($$SELECT immich_jobs.reap()$$, '42501', NULL,
                 'the worker role cannot reap');
RESET ROLE;

-- the admin can
SET ROLE immich_jobs_admin;
SELECT lives_ok($$SELECT immich_jobs.pause_queue('pgtap_roles'),
                         immich_jobs.drain('pgtap_roles'),
                         immich_jobs.drop_queue('pgtap_roles', force => true)$$,
                'the admin role pauses, drains and drops');
RESET ROLE;

SELECT * FROM finish();
ROLLBACK;
