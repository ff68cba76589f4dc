--
-- PREPARE TRANSACTION is refused after any call that locked or changed the
-- extension's rows, with or without the preload (this file runs in both
-- modes), and the refusal leaves nothing behind; reading counts does not
-- prevent it.
--
-- Every queue of this file is named 'prep.*'; all files share one database.
--
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS immich_jobs;
RESET client_min_messages;

SELECT immich_jobs.create_queue('prep.q', concurrency => 2);
SELECT immich_jobs.enqueue('prep.q', 'other') > 0 AS enqueued;
SELECT immich_jobs.enqueue('prep.q', 'keyed', dedup_key => 'k') AS keyed_id \gset
CREATE TEMP TABLE held (job_id bigint, job_name text, payload jsonb,
                        attempt integer, lease_token bigint,
                        lease_expires_at timestamptz);
INSERT INTO held SELECT * FROM immich_jobs.claim('prep.q', 'w', 1);

-- each call, then PREPARE: refused, and the transaction is rolled back
BEGIN;
SELECT immich_jobs.heartbeat(job_id, lease_token) IS NOT NULL AS extended FROM held;
PREPARE TRANSACTION 'prep_heartbeat';
BEGIN;
SELECT immich_jobs.clear('prep.q', 'completed');
PREPARE TRANSACTION 'prep_clear';
BEGIN;
SELECT immich_jobs.enqueue('prep.q', 'keyed', dedup_key => 'k') = :keyed_id AS existing_job;
PREPARE TRANSACTION 'prep_dedup';
BEGIN;
SELECT immich_jobs.enqueue_many('prep.q', '[]');
PREPARE TRANSACTION 'prep_empty';
BEGIN;
SELECT count(*) AS claimed FROM immich_jobs.claim('prep.q', 'w', 1);
PREPARE TRANSACTION 'prep_claim';
BEGIN;
SELECT immich_jobs.pause_queue('prep.q');
PREPARE TRANSACTION 'prep_pause';
BEGIN;
SELECT immich_jobs.cancel_by_key('prep.q', 'none');
PREPARE TRANSACTION 'prep_cancel';
-- a refusal inside a savepoint that was rolled back still counts: the
-- locks the call took are the transaction's
BEGIN;
SAVEPOINT s;
SELECT immich_jobs.enqueue('prep.q', 'rolled back') > 0 AS enqueued;
ROLLBACK TO SAVEPOINT s;
PREPARE TRANSACTION 'prep_savepoint';

-- nothing was prepared, and nothing changed
SELECT count(*) AS prepared FROM pg_prepared_xacts WHERE gid LIKE 'prep_%';
SELECT job_name, state FROM immich_jobs.jobs WHERE queue_name = 'prep.q' ORDER BY job_id;
SELECT paused, active, waiting FROM immich_jobs.queue_counts WHERE queue_name = 'prep.q';

-- reading is fine: a transaction that only read counts and jobs prepares
BEGIN;
SELECT active, waiting FROM immich_jobs.job_counts('prep.q');
SELECT count(*) FROM immich_jobs.queue_counts WHERE queue_name = 'prep.q';
PREPARE TRANSACTION 'prep_read';
SELECT gid FROM pg_prepared_xacts WHERE gid LIKE 'prep_%';
ROLLBACK PREPARED 'prep_read';

-- and the next transaction after a refused one starts afresh
BEGIN;
SELECT immich_jobs.enqueue('prep.q', 'then') > 0 AS enqueued;
ROLLBACK;
BEGIN;
SELECT 1 AS nothing;
PREPARE TRANSACTION 'prep_fresh';
ROLLBACK PREPARED 'prep_fresh';
SELECT immich_jobs.complete(job_id, lease_token) FROM held;
