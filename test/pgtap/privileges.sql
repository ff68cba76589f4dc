--
-- privileges.sql: nothing in schema immich_jobs is open to PUBLIC, and an
-- application role granted what the README says (USAGE on the schema, EXECUTE
-- on the functions, SELECT on the views) works through the functions only.
--
-- The role is created in the transaction, which is rolled back.
--
BEGIN;

SET LOCAL client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS immich_jobs;
RESET client_min_messages;

CREATE ROLE immich_jobs_pgtap_app NOLOGIN;

SELECT plan(36);

-- PUBLIC: no EXECUTE on any function, no privilege on any table, view or
-- sequence (nor on any of their columns).  The counts make sure that the
-- emptiness checks below look at every object.

SELECT is((SELECT count(*) FROM pg_proc WHERE pronamespace = 'immich_jobs'::regnamespace)::int,
          24, 'schema immich_jobs has 24 functions');
SELECT is_empty(
    $$SELECT p.oid::regprocedure FROM pg_proc p
       WHERE p.pronamespace = 'immich_jobs'::regnamespace
         AND has_function_privilege('public', p.oid, 'EXECUTE')$$,
    'PUBLIC may execute no function of schema immich_jobs');

SELECT is((SELECT count(*) FROM pg_class
            WHERE relnamespace = 'immich_jobs'::regnamespace
              AND relkind IN ('r', 'p', 'v', 'm', 'f'))::int,
          5, 'schema immich_jobs has 5 tables and views');
SELECT is_empty(
    $$SELECT c.oid::regclass FROM pg_class c
       WHERE c.relnamespace = 'immich_jobs'::regnamespace
         AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
         AND has_table_privilege('public', c.oid,
                 'SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER')$$,
    'PUBLIC has no privilege on any table or view of schema immich_jobs');
SELECT is_empty(
    $$SELECT c.oid::regclass FROM pg_class c
       WHERE c.relnamespace = 'immich_jobs'::regnamespace
         AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
         AND has_any_column_privilege('public', c.oid, 'SELECT, INSERT, UPDATE, REFERENCES')$$,
    'PUBLIC has no privilege on any column of schema immich_jobs');

SELECT is((SELECT count(*) FROM pg_class
            WHERE relnamespace = 'immich_jobs'::regnamespace AND relkind = 'S')::int,
          3, 'schema immich_jobs has 3 sequences');
SELECT is_empty(
    $$SELECT c.oid::regclass FROM pg_class c
       WHERE c.relnamespace = 'immich_jobs'::regnamespace
         AND CASE WHEN c.relkind = 'S'   -- (never evaluated for other relations)
                  THEN has_sequence_privilege('public', c.oid, 'USAGE, SELECT, UPDATE')
             END$$,
    'PUBLIC has no privilege on any sequence of schema immich_jobs');

-- a role with no grants at all

SET ROLE immich_jobs_pgtap_app;

SELECT throws_ok($$SELECT immich_jobs.enqueue('pgtap_privileges', 'pgtap-job')$$,
                 '42501', NULL, 'a role with no grants cannot enqueue');
SELECT throws_ok($$SELECT * FROM immich_jobs.claim('pgtap_privileges', 'pgtap-worker')$$,
                 '42501', NULL, 'a role with no grants cannot claim');
SELECT throws_ok($$SELECT * FROM immich_jobs.job$$,
                 '42501', NULL, 'a role with no grants cannot read immich_jobs.job');

RESET ROLE;

-- USAGE on the schema alone: the functions themselves refuse (EXECUTE was
-- revoked from PUBLIC), and so do the tables

GRANT USAGE ON SCHEMA immich_jobs TO immich_jobs_pgtap_app;
SET ROLE immich_jobs_pgtap_app;

SELECT throws_ok($$SELECT immich_jobs.create_queue('pgtap_privileges')$$,
                 '42501', 'permission denied for function create_queue',
                 'USAGE on the schema does not let a role create a queue');
SELECT throws_ok($$SELECT immich_jobs.enqueue('pgtap_privileges', 'pgtap-job')$$,
                 '42501', 'permission denied for function enqueue',
                 'USAGE on the schema does not let a role enqueue');
SELECT throws_ok($$SELECT * FROM immich_jobs.claim('pgtap_privileges', 'pgtap-worker')$$,
                 '42501', 'permission denied for function claim',
                 'USAGE on the schema does not let a role claim');
SELECT throws_ok($$SELECT * FROM immich_jobs.job$$,
                 '42501', 'permission denied for table job',
                 'USAGE on the schema does not let a role read immich_jobs.job');

RESET ROLE;

-- EXECUTE on the functions: the whole job cycle works through them

GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA immich_jobs TO immich_jobs_pgtap_app;
SET ROLE immich_jobs_pgtap_app;

-- what the role gets back, kept for the next steps (created up front, so that
-- a failing step fails its test and does not abort the script)
CREATE TEMP TABLE enqueued (job_id bigint) ON COMMIT DROP;
CREATE TEMP TABLE claimed (job_id bigint, job_name text, payload jsonb, attempt integer,
                           lease_token bigint, lease_expires_at timestamptz) ON COMMIT DROP;

SELECT lives_ok($$SELECT immich_jobs.create_queue('pgtap_privileges', concurrency => 2)$$,
                'with EXECUTE a role can create a queue');
SELECT lives_ok($$INSERT INTO enqueued
                  SELECT immich_jobs.enqueue('pgtap_privileges', 'pgtap-job', '{"n": 1}')$$,
                'with EXECUTE a role can enqueue');
SELECT lives_ok($$INSERT INTO claimed
                  SELECT * FROM immich_jobs.claim('pgtap_privileges', 'pgtap-worker', 5)$$,
                'with EXECUTE a role can claim');
SELECT results_eq(
    $$SELECT job_id, job_name, payload, attempt,
             lease_token IS NOT NULL, lease_expires_at > now()
        FROM claimed$$,
    $$VALUES ((SELECT job_id FROM enqueued), 'pgtap-job'::text, '{"n": 1}'::jsonb, 1, true, true)$$,
    'the claim leased the job the role enqueued');
SELECT is((SELECT immich_jobs.complete(job_id, lease_token) FROM claimed),
          true, 'with EXECUTE a role can complete its job');

-- ... but it still cannot touch the storage directly

SELECT throws_ok($$SELECT * FROM immich_jobs.job$$,
                 '42501', 'permission denied for table job',
                 'the role cannot read immich_jobs.job');
SELECT throws_ok($$INSERT INTO immich_jobs.job (job_id, run_at, created_at, queue_id, priority,
                                                  attempt, max_attempts, state, job_name, payload)
                   VALUES (1000000, now(), now(), 1, 0, 0, 1, 'w', 'forged', '{}')$$,
                 '42501', 'permission denied for table job',
                 'the role cannot insert into immich_jobs.job');
SELECT throws_ok($$UPDATE immich_jobs.job SET state = 'w'$$,
                 '42501', 'permission denied for table job',
                 'the role cannot update immich_jobs.job');
SELECT throws_ok($$DELETE FROM immich_jobs.job$$,
                 '42501', 'permission denied for table job',
                 'the role cannot delete from immich_jobs.job');
SELECT throws_ok($$TRUNCATE immich_jobs.job$$,
                 '42501', 'permission denied for table job',
                 'the role cannot truncate immich_jobs.job');
SELECT throws_ok($$SELECT * FROM immich_jobs.queue$$,
                 '42501', 'permission denied for table queue',
                 'the role cannot read immich_jobs.queue');
SELECT throws_ok($$UPDATE immich_jobs.queue SET concurrency = 10000$$,
                 '42501', 'permission denied for table queue',
                 'the role cannot update immich_jobs.queue');
SELECT throws_ok($$INSERT INTO immich_jobs.completed_log VALUES (1, 1000)$$,
                 '42501', 'permission denied for table completed_log',
                 'the role cannot insert into immich_jobs.completed_log');
SELECT throws_ok($$SELECT nextval('immich_jobs.lease_token_seq')$$,
                 '42501', 'permission denied for sequence lease_token_seq',
                 'the role cannot draw lease tokens from immich_jobs.lease_token_seq');
SELECT throws_ok($$SELECT setval('immich_jobs.job_id_seq', 1)$$,
                 '42501', 'permission denied for sequence job_id_seq',
                 'the role cannot reset immich_jobs.job_id_seq');

-- the views need their own grant

SELECT throws_ok($$SELECT * FROM immich_jobs.queue_counts$$,
                 '42501', 'permission denied for view queue_counts',
                 'without SELECT on it the role cannot read immich_jobs.queue_counts');
SELECT throws_ok($$SELECT * FROM immich_jobs.jobs$$,
                 '42501', 'permission denied for view jobs',
                 'without SELECT on it the role cannot read immich_jobs.jobs');

SELECT lives_ok($$SELECT immich_jobs.enqueue('pgtap_privileges', 'pgtap-job-2')$$,
                'the role enqueues a second job');

RESET ROLE;

GRANT SELECT ON immich_jobs.queue_counts, immich_jobs.jobs TO immich_jobs_pgtap_app;
SET ROLE immich_jobs_pgtap_app;

SELECT results_eq(
    $$SELECT queue_name, paused, concurrency FROM immich_jobs.queue_counts
       WHERE queue_name = 'pgtap_privileges'$$,
    $$VALUES ('pgtap_privileges'::text, false, 2)$$,
    'with SELECT on it the role reads immich_jobs.queue_counts');
SELECT results_eq(
    $$SELECT job_name, state FROM immich_jobs.jobs
       WHERE queue_name = 'pgtap_privileges'$$,
    $$VALUES ('pgtap-job-2'::text, 'waiting'::text)$$,
    'with SELECT on it the role reads immich_jobs.jobs (the completed job is gone)');
SELECT throws_ok($$SELECT * FROM immich_jobs.job$$,
                 '42501', 'permission denied for table job',
                 'SELECT on the views gives no access to immich_jobs.job');

RESET ROLE;

SELECT is(current_user, session_user, 'the test ends as the user it started as');

SELECT * FROM finish();
ROLLBACK;
