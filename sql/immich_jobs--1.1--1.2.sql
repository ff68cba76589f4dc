/* immich_jobs--1.1--1.2.sql */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION immich_jobs UPDATE TO '1.2'" to load this file. \quit

/*
 * 1.2: what Immich's job repository needs besides 1.1, with BullMQ's
 * semantics.
 *
 * Dedup mode 'kept': BullMQ's jobId blocks a new job with the same id while
 * a job with it is kept in any state (waiting, delayed, active, failed).  A
 * job enqueued with dedup_mode => 'kept' is marked dedup_kept, and a unique
 * index over such jobs in those states enforces it.  Mode 'unstarted' (the
 * default, as in 1.0) keeps its index, job_dedup_idx.  Adding a column with
 * a constant default rewrites nothing.
 */
ALTER TABLE immich_jobs.job
    ADD COLUMN dedup_kept boolean NOT NULL DEFAULT false;

CREATE UNIQUE INDEX job_dedup_kept_idx ON immich_jobs.job (queue_id, dedup_key)
    WHERE dedup_key IS NOT NULL AND dedup_kept AND state IN ('w', 'd', 'a', 'f');

-- cancel_by_key finds a queue's jobs by key in any state
CREATE INDEX job_key_idx ON immich_jobs.job (queue_id, dedup_key)
    WHERE dedup_key IS NOT NULL;

/*
 * enqueue() gains dedup_mode; a new argument means a new function.  Whoever
 * could call the old one can call the new one: its grants are noted before
 * the DROP and given again after the CREATE below, so that applications
 * keep enqueueing through the update.
 */
SELECT pg_catalog.set_config('immich_jobs_upgrade.enqueue_acl',
           coalesce((SELECT p.proacl::pg_catalog.text FROM pg_catalog.pg_proc p
                      WHERE p.oid OPERATOR(pg_catalog.=)
                            'immich_jobs.enqueue(text, text, jsonb, integer, timestamptz, text, integer)'::pg_catalog.regprocedure),
                    '{}'),
           true);
DROP FUNCTION immich_jobs.enqueue(text, text, jsonb, integer, timestamptz, text, integer);

CREATE FUNCTION immich_jobs.enqueue(
    queue_name text,
    job_name text,
    payload jsonb DEFAULT '{}',
    priority integer DEFAULT 0,
    run_at timestamptz DEFAULT NULL,
    dedup_key text DEFAULT NULL,
    max_attempts integer DEFAULT NULL,
    dedup_mode text DEFAULT 'unstarted')
RETURNS bigint
AS 'MODULE_PATHNAME', 'ij_enqueue'
LANGUAGE C SECURITY DEFINER;

COMMENT ON FUNCTION immich_jobs.enqueue(text, text, jsonb, integer, timestamptz, text, integer, text) IS
'add one job and return its id; with a dedup_key that blocks (dedup_mode unstarted: a job of the queue not yet started has it; kept: a waiting, delayed, active or failed job has it), return that job''s id instead';

CREATE FUNCTION immich_jobs.drain(queue_name text, delayed boolean DEFAULT false)
RETURNS bigint
AS 'MODULE_PATHNAME', 'ij_drain'
LANGUAGE C SECURITY DEFINER;

COMMENT ON FUNCTION immich_jobs.drain(text, boolean) IS
'remove the queue''s waiting jobs, and its delayed jobs only if delayed (BullMQ''s drain); returns how many';

CREATE FUNCTION immich_jobs.cancel_by_key(queue_name text, dedup_key text)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'ij_cancel_by_key'
LANGUAGE C SECURITY DEFINER;

COMMENT ON FUNCTION immich_jobs.cancel_by_key(text, text) IS
'cancel the queue''s waiting, delayed and failed jobs with the dedup key; returns the payload of the newest one cancelled, NULL if none; active jobs go on';

CREATE FUNCTION immich_jobs.job_counts(
    queue_name text,
    OUT active bigint,
    OUT completed bigint,
    OUT failed bigint,
    OUT delayed bigint,
    OUT waiting bigint,
    OUT paused bigint)
RETURNS record
AS 'MODULE_PATHNAME', 'ij_job_counts'
LANGUAGE C SECURITY DEFINER;

COMMENT ON FUNCTION immich_jobs.job_counts(text) IS
'the queue''s counts as BullMQ''s getJobCounts gives them: a paused queue''s waiting jobs count as paused';

REVOKE ALL ON FUNCTION immich_jobs.enqueue(text, text, jsonb, integer, timestamptz, text, integer, text) FROM PUBLIC;
DO $$
DECLARE
    g record;
BEGIN
    FOR g IN
        SELECT a.grantee, a.is_grantable
          FROM pg_catalog.aclexplode(pg_catalog.current_setting('immich_jobs_upgrade.enqueue_acl')::pg_catalog.aclitem[]) a
         WHERE a.privilege_type OPERATOR(pg_catalog.=) 'EXECUTE'
           AND a.grantee OPERATOR(pg_catalog.<>) a.grantor
    LOOP
        EXECUTE pg_catalog.format(
            'GRANT EXECUTE ON FUNCTION immich_jobs.enqueue(text, text, jsonb, integer, timestamptz, text, integer, text) TO %s%s',
            CASE WHEN g.grantee OPERATOR(pg_catalog.=) 0 THEN 'PUBLIC'
                 ELSE g.grantee::pg_catalog.regrole::pg_catalog.text END,
            CASE WHEN g.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END);
    END LOOP;
END
$$;
REVOKE ALL ON FUNCTION immich_jobs.drain(text, boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION immich_jobs.cancel_by_key(text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION immich_jobs.job_counts(text) FROM PUBLIC;
