--
-- enqueue_many's bulk path (the COPY-style writer of src/bulk.c):
--
-- * It holds RowExclusiveLock on immich_jobs.job until the end of the
--   transaction, as an INSERT or a COPY does, so that what needs the table
--   to itself or waits for its writers (VACUUM FULL, ALTER TABLE SET
--   TABLESPACE, REINDEX CONCURRENTLY) waits for the transaction.  The
--   isolation test bulk-reindex shows REINDEX CONCURRENTLY waiting for it.
--
-- * 50,000 elements with one dedup key add one job and return 1 (each
--   element after the first runs the dedup statements; their results are
--   freed, so this no longer takes hundreds of MB: not measured here).
--
-- Every queue of this file is named 'bulk.*'; all files share one database.
--
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS immich_jobs;
RESET client_min_messages;

SELECT immich_jobs.create_queue('bulk.lock', concurrency => 10);
SELECT immich_jobs.create_queue('bulk.dedup');

-- this session's locks on the job table
CREATE TEMP VIEW job_locks AS
    SELECT mode, granted FROM pg_locks
     WHERE locktype = 'relation'
       AND database = (SELECT oid FROM pg_database
                        WHERE datname = current_database())
       AND relation = 'immich_jobs.job'::regclass
       AND pid = pg_backend_pid();

--
-- The table lock.  Jobs without a dedup key go through the bulk path only:
-- no statement of the function's own touches the job table, so the lock
-- seen here is the bulk writer's.
--
BEGIN;
SELECT * FROM job_locks;
SELECT immich_jobs.enqueue_many('bulk.lock',
         '[{"name": "a"}, {"name": "b", "priority": 5},
           {"name": "c", "run_at": "2999-01-01T00:00:00Z"}]') AS added;
-- held after the call, until the transaction ends
SELECT * FROM job_locks ORDER BY mode;
SELECT count(*) AS jobs_seen_by_the_transaction
  FROM immich_jobs.jobs WHERE queue_name = 'bulk.lock';
COMMIT;
SELECT * FROM job_locks;
-- the jobs it wrote are there and claimable, best first
SELECT job_name, attempt FROM immich_jobs.claim('bulk.lock', 'w', 10);
SELECT active, waiting, delayed FROM immich_jobs.queue_counts
 WHERE queue_name = 'bulk.lock';

--
-- 50,000 elements with the same dedup key: the first is added, the other
-- 49,999 find it.  One job (the first element's), and the call says 1.
--
SELECT immich_jobs.enqueue_many('bulk.dedup',
         (SELECT jsonb_agg(jsonb_build_object('name', 'j' || i,
                                              'dedup_key', 'same')
                           ORDER BY i)
            FROM generate_series(1, 50000) i)) AS added;
SELECT job_name, state, attempt, dedup_key
  FROM immich_jobs.jobs WHERE queue_name = 'bulk.dedup';
SELECT active, waiting, delayed FROM immich_jobs.queue_counts
 WHERE queue_name = 'bulk.dedup';
-- again: the key finds the job that has not started, nothing is added
SELECT immich_jobs.enqueue_many('bulk.dedup',
         (SELECT jsonb_agg(jsonb_build_object('name', 'k' || i,
                                              'dedup_key', 'same'))
            FROM generate_series(1, 50000) i)) AS added;
SELECT count(*) AS jobs FROM immich_jobs.jobs WHERE queue_name = 'bulk.dedup';

-- clean up: this file leaves no queue behind
SELECT immich_jobs.drop_queue(queue_name, force => true)
  FROM immich_jobs.queue WHERE queue_name LIKE 'bulk.%' ORDER BY queue_name;
DROP VIEW job_locks;
