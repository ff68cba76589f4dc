--
-- complete_and_claim (1.1): complete a batch and claim the next jobs in one
-- call; the claim reuses the slots the completions free; refused pairs come
-- back as rows with only job_id.  And immich_jobs.synchronous_lease_commit.
--
-- Every queue of this file is named 'cac.*'; all files share one database.
--
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS immich_jobs;
RESET client_min_messages;

CREATE TEMP VIEW counts AS
    SELECT queue_name, concurrency, active, waiting, completed
      FROM immich_jobs.queue_counts
     WHERE queue_name LIKE 'cac.%' ORDER BY queue_name;
-- every lease this session got, by job name (unique in this file)
CREATE TEMP TABLE held (job_id bigint, job_name text, lease_token bigint);
CREATE FUNCTION pg_temp.cac(queue text, max_jobs int, names text[],
                            wrong_token boolean DEFAULT false)
RETURNS TABLE (job_name text, attempt int, refused text) LANGUAGE sql AS $$
  WITH p AS (SELECT h.job_id, h.lease_token + CASE WHEN wrong_token THEN 1 ELSE 0 END AS tok
               FROM held h WHERE h.job_name = ANY (names)),
       c AS (SELECT c.* FROM immich_jobs.complete_and_claim(
                 queue, 'worker-cac', max_jobs,
                 coalesce((SELECT array_agg(job_id ORDER BY job_id) FROM p), '{}'),
                 coalesce((SELECT array_agg(tok ORDER BY job_id) FROM p), '{}')) c),
       i AS (INSERT INTO held SELECT c.job_id, c.job_name, c.lease_token
               FROM c WHERE c.lease_token IS NOT NULL)
  SELECT c.job_name, c.attempt,
         (SELECT h.job_name FROM held h
           WHERE h.job_id = c.job_id AND c.lease_token IS NULL LIMIT 1)
    FROM c
$$;

SELECT immich_jobs.create_queue('cac.q', concurrency => 2);
SELECT count(immich_jobs.enqueue('cac.q', 'j' || lpad(i::text, 2, '0'))) AS enqueued
  FROM generate_series(1, 20) i;

-- with nothing to complete it is a claim: 2 jobs (the concurrency)
SELECT * FROM pg_temp.cac('cac.q', 5, '{}');
SELECT * FROM counts;

-- a full queue: completing j01 frees the slot that the claim then takes
SELECT * FROM pg_temp.cac('cac.q', 5, '{j01}');
SELECT * FROM counts;

-- both slots, in one call
SELECT * FROM pg_temp.cac('cac.q', 5, '{j02,j03}');
SELECT * FROM counts;

-- a stale token: not completed, returned as a row with only job_id; the
-- queue stays full, so nothing is claimed
SELECT * FROM pg_temp.cac('cac.q', 5, '{j04}', wrong_token => true);
SELECT job_name, state FROM immich_jobs.jobs WHERE job_name = 'j04';
SELECT * FROM counts;

-- max_jobs 0: only completes; a pair already completed is refused
SELECT * FROM pg_temp.cac('cac.q', 0, '{j04}');
SELECT * FROM pg_temp.cac('cac.q', 0, '{j04,j05}');
SELECT * FROM counts;

-- completions of another queue's jobs free no slot of this one
SELECT immich_jobs.create_queue('cac.other', concurrency => 1);
SELECT immich_jobs.enqueue('cac.other', 'o1') > 0 AS enqueued;
SELECT * FROM pg_temp.cac('cac.other', 1, '{}');
SELECT * FROM pg_temp.cac('cac.q', 5, '{}');
SELECT * FROM pg_temp.cac('cac.q', 5, '{o1}');
SELECT * FROM counts;

--
-- Slots freed in a transaction are reused by a claim in the same transaction
-- and nowhere else; the reuse follows the transaction's outcome.
--
BEGIN;
SELECT immich_jobs.complete(job_id, lease_token) FROM held WHERE job_name = 'j06';
SELECT * FROM pg_temp.cac('cac.q', 5, '{}');
SELECT * FROM counts;
ROLLBACK;
-- j06 is active again, and the queue is full again
SELECT * FROM counts;
SELECT * FROM pg_temp.cac('cac.q', 5, '{}');

-- (held, a temporary table, forgets the leases of what rolls back)

-- a completion in a savepoint that rolls back takes back the slot it freed,
-- together with the claim that reused it
BEGIN;
SAVEPOINT a;
SELECT * FROM pg_temp.cac('cac.q', 5, '{j06}');
ROLLBACK TO a;
SELECT * FROM pg_temp.cac('cac.q', 5, '{}');
COMMIT;
SELECT * FROM counts;

-- a claim in a savepoint that rolls back gives the slot back to this
-- transaction, whose completion still holds it free
BEGIN;
SELECT immich_jobs.complete(job_id, lease_token) FROM held WHERE job_name = 'j06';
SAVEPOINT a;
SELECT * FROM pg_temp.cac('cac.q', 5, '{}');
ROLLBACK TO a;
SELECT * FROM pg_temp.cac('cac.q', 5, '{}');
COMMIT;
SELECT * FROM counts;

-- a completion committed in a savepoint stays free for the transaction
BEGIN;
SAVEPOINT a;
SELECT immich_jobs.complete(job_id, lease_token) FROM held WHERE job_name = 'j07';
RELEASE a;
SELECT * FROM pg_temp.cac('cac.q', 5, '{}');
COMMIT;
SELECT * FROM counts;

-- lowered below the number of active jobs: completing one of them does not
-- make room for a claim, as the queue would still be over its limit
SELECT immich_jobs.set_concurrency('cac.q', 1);
SELECT * FROM pg_temp.cac('cac.q', 5, '{j08}');
SELECT * FROM counts;
-- once the queue is within its limit, a completion makes room again
SELECT * FROM pg_temp.cac('cac.q', 5, '{j09}');
SELECT * FROM counts;

-- a paused queue admits nothing, completions or not
SELECT immich_jobs.pause_queue('cac.q');
SELECT * FROM pg_temp.cac('cac.q', 5, '{j10}');
SELECT immich_jobs.resume_queue('cac.q');
SELECT * FROM counts;

-- many pairs, in no order: each completed job is told apart from the
-- refused ones (3,000 pairs, a few of them stale)
SELECT immich_jobs.create_queue('cac.many', concurrency => 3000);
SELECT immich_jobs.enqueue_many('cac.many',
    (SELECT jsonb_agg(jsonb_build_object('name', 'm' || i)) FROM generate_series(1, 3000) i));
CREATE TEMP TABLE many AS
    SELECT job_id, lease_token FROM immich_jobs.claim('cac.many', 'w', 3000);
SELECT count(*) AS claimed FROM many;
SELECT count(*) FILTER (WHERE lease_token IS NULL) AS refused,
       count(*) FILTER (WHERE lease_token IS NOT NULL) AS claimed,
       count(*) FILTER (WHERE lease_token IS NULL
                          AND job_id NOT IN (SELECT job_id FROM many
                                              WHERE job_id % 500 = 0)) AS wrongly_refused
  FROM immich_jobs.complete_and_claim('cac.many', 'w', 0,
         (SELECT array_agg(job_id ORDER BY job_id DESC) FROM many),
         (SELECT array_agg(lease_token + CASE WHEN job_id % 500 = 0 THEN 1 ELSE 0 END
                           ORDER BY job_id DESC) FROM many));
SELECT active, completed FROM immich_jobs.queue_counts WHERE queue_name = 'cac.many';
SELECT immich_jobs.drop_queue('cac.many', force => true);

--
-- Errors
--
SELECT * FROM immich_jobs.complete_and_claim(NULL, 'w', 1);
SELECT * FROM immich_jobs.complete_and_claim('cac.q', NULL, 1);
SELECT * FROM immich_jobs.complete_and_claim('cac.q', 'w', NULL);
SELECT * FROM immich_jobs.complete_and_claim('cac.q', 'w', -1);
SELECT * FROM immich_jobs.complete_and_claim('cac.q', 'w', 10001);
SELECT * FROM immich_jobs.complete_and_claim('cac.q', repeat('w', 256), 1);
SELECT * FROM immich_jobs.complete_and_claim('cac.q', 'w', 1, NULL, '{}');
SELECT * FROM immich_jobs.complete_and_claim('cac.q', 'w', 1, '{}', NULL);
SELECT * FROM immich_jobs.complete_and_claim('cac.q', 'w', 1, '{1,2}', '{1}');
SELECT * FROM immich_jobs.complete_and_claim('cac.q', 'w', 1, '{1,NULL}', '{1,2}');
SELECT * FROM immich_jobs.complete_and_claim('cac.q', 'w', 1, '{{1},{2}}', '{{1},{2}}');
SELECT * FROM immich_jobs.complete_and_claim('cac.nope', 'w', 1);
SELECT * FROM immich_jobs.complete_and_claim('bad name', 'w', 1);
-- an unknown queue is an error even with completions, or with nothing to
-- claim: nothing is completed
SELECT * FROM pg_temp.cac('cac.q', 1, '{}');
SELECT * FROM pg_temp.cac('cac.nope', 1, '{j11}');
SELECT * FROM pg_temp.cac('cac.nope', 0, '{j11}');
SELECT job_name, state FROM immich_jobs.jobs WHERE job_name = 'j11';

--
-- immich_jobs.synchronous_lease_commit: on by default, settable by anyone
-- (what it does to commits is tested in test/t/090_lease_commit.pl)
--
SHOW immich_jobs.synchronous_lease_commit;
SET immich_jobs.synchronous_lease_commit = off;
SHOW immich_jobs.synchronous_lease_commit;
SET immich_jobs.synchronous_lease_commit = 'maybe';
RESET immich_jobs.synchronous_lease_commit;
-- it never changes the session's synchronous_commit
SET immich_jobs.synchronous_lease_commit = off;
SELECT * FROM pg_temp.cac('cac.q', 0, '{j11}');
SHOW synchronous_commit;
RESET immich_jobs.synchronous_lease_commit;

SELECT immich_jobs.drop_queue('cac.q', force => true);
SELECT immich_jobs.drop_queue('cac.other', force => true);
