/* immich_jobs--1.0--1.1.sql */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION immich_jobs UPDATE TO '1.1'" to load this file. \quit

/*
 * 1.1: a worker completes the jobs it finished and claims the next ones in
 * one call, one round trip and one commit; the claim may reuse the slots
 * the completions free.  (The setting immich_jobs.synchronous_lease_commit,
 * new with the 1.1 library, needs no SQL object.)
 */
CREATE FUNCTION immich_jobs.complete_and_claim(
    queue_name text,
    worker_id text,
    max_jobs integer,
    job_ids bigint[] DEFAULT '{}',
    lease_tokens bigint[] DEFAULT '{}')
RETURNS TABLE (
    job_id bigint,
    job_name text,
    payload jsonb,
    attempt integer,
    lease_token bigint,
    lease_expires_at timestamptz)
AS 'MODULE_PATHNAME', 'ij_complete_and_claim'
LANGUAGE C SECURITY DEFINER ROWS 16;

COMMENT ON FUNCTION immich_jobs.complete_and_claim(text, text, integer, bigint[], bigint[]) IS
'complete_many(job_ids, lease_tokens), then claim(queue_name, worker_id, max_jobs) reusing the slots freed; returns the jobs leased, then a row with only job_id for each pair not completed';

REVOKE ALL ON FUNCTION immich_jobs.complete_and_claim(text, text, integer, bigint[], bigint[]) FROM PUBLIC;
