/*
 * naive.sql: the textbook PostgreSQL job queue, in plain SQL and PL/pgSQL,
 * for `make bench` to run through the same workloads as immich_jobs.
 *
 * What "naive" means here is what most SQL-or-Node.js queues do:
 *   - one table of jobs; a claim takes the best waiting jobs with
 *     UPDATE ... WHERE id IN (SELECT ... FOR UPDATE SKIP LOCKED LIMIT n);
 *   - admission (at most `concurrency` active jobs per queue) by locking the
 *     queue's row FOR UPDATE and counting the active jobs, so the claims of
 *     one queue take turns until they commit;
 *   - a completed job is deleted by id and lease token.
 * No shared memory, no notifications, nothing from C.  The functions take and
 * return what immich_jobs' do (same argument order, result columns named
 * job_id and lease_token), so the benchmark driver runs either by changing
 * the schema name.
 */
CREATE SCHEMA naive;

CREATE TABLE naive.queues (
    name        text PRIMARY KEY,
    concurrency integer NOT NULL CHECK (concurrency > 0)
);

CREATE SEQUENCE naive.lease_token_seq;

CREATE TABLE naive.jobs (
    job_id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    queue       text NOT NULL,
    name        text NOT NULL,
    payload     jsonb NOT NULL DEFAULT '{}',
    priority    integer NOT NULL DEFAULT 0,
    state       text NOT NULL DEFAULT 'waiting'
                CHECK (state IN ('waiting', 'active')),
    attempt     integer NOT NULL DEFAULT 0,
    lease_token bigint,
    locked_by   text,
    locked_until timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- claim order within a queue, waiting jobs only
CREATE INDEX jobs_claim_idx ON naive.jobs (queue, priority DESC, job_id)
    WHERE state = 'waiting';
-- admission counts the active jobs of a queue
CREATE INDEX jobs_active_idx ON naive.jobs (queue) WHERE state = 'active';

CREATE FUNCTION naive.create_queue(queue_name text, concurrency integer DEFAULT 1)
RETURNS void LANGUAGE sql AS $$
    INSERT INTO naive.queues (name, concurrency) VALUES (queue_name, concurrency)
$$;

CREATE FUNCTION naive.drop_queue(queue_name text)
RETURNS void LANGUAGE sql AS $$
    DELETE FROM naive.jobs WHERE queue = queue_name;
    DELETE FROM naive.queues WHERE name = queue_name;
$$;

CREATE FUNCTION naive.enqueue(queue_name text, job_name text,
                              payload jsonb DEFAULT '{}', priority integer DEFAULT 0)
RETURNS bigint LANGUAGE sql AS $$
    INSERT INTO naive.jobs (queue, name, payload, priority)
    VALUES (queue_name, job_name, payload, priority)
    RETURNING job_id
$$;

-- jobs: a JSON array of {"name": ..., "payload": ..., "priority": ...}
CREATE FUNCTION naive.enqueue_many(queue_name text, jobs jsonb)
RETURNS bigint LANGUAGE sql AS $$
    WITH i AS (
        INSERT INTO naive.jobs (queue, name, payload, priority)
        SELECT queue_name, e->>'name', coalesce(e->'payload', '{}'),
               coalesce((e->>'priority')::integer, 0)
          FROM jsonb_array_elements(jobs) AS e
        RETURNING 1)
    SELECT count(*) FROM i
$$;

CREATE FUNCTION naive.claim(queue_name text, worker_id text, max_jobs integer DEFAULT 1)
RETURNS TABLE (job_id bigint, job_name text, payload jsonb, attempt integer,
               lease_token bigint)
LANGUAGE plpgsql AS $$
DECLARE
    limit_  integer;
    active_ bigint;
BEGIN
    -- admission: the queue's row lock makes the claims of a queue take turns
    SELECT q.concurrency INTO limit_
      FROM naive.queues q WHERE q.name = queue_name FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'queue "%" does not exist', queue_name;
    END IF;
    SELECT count(*) INTO active_
      FROM naive.jobs j WHERE j.queue = queue_name AND j.state = 'active';
    IF active_ >= limit_ THEN
        RETURN;
    END IF;

    RETURN QUERY
    UPDATE naive.jobs j
       SET state = 'active', attempt = j.attempt + 1,
           lease_token = nextval('naive.lease_token_seq'),
           locked_by = worker_id, locked_until = now() + interval '5 minutes'
     WHERE j.job_id IN (SELECT k.job_id FROM naive.jobs k
                         WHERE k.queue = queue_name AND k.state = 'waiting'
                         ORDER BY k.priority DESC, k.job_id
                         LIMIT least(max_jobs, limit_ - active_)
                         FOR UPDATE SKIP LOCKED)
    RETURNING j.job_id, j.name, j.payload, j.attempt, j.lease_token;
END
$$;

CREATE FUNCTION naive.complete(job_id bigint, lease_token bigint)
RETURNS boolean LANGUAGE sql AS $$
    WITH d AS (DELETE FROM naive.jobs j
                WHERE j.job_id = complete.job_id
                  AND j.lease_token = complete.lease_token
                  AND j.state = 'active'
               RETURNING 1)
    SELECT count(*) = 1 FROM d
$$;

CREATE FUNCTION naive.complete_many(job_ids bigint[], lease_tokens bigint[])
RETURNS bigint LANGUAGE sql AS $$
    WITH d AS (DELETE FROM naive.jobs j
                USING unnest(job_ids, lease_tokens) AS t(id, tok)
                WHERE j.job_id = t.id AND j.lease_token = t.tok
                  AND j.state = 'active'
               RETURNING 1)
    SELECT count(*) FROM d
$$;
