/**
 * Every statement the client sends, and how it reads their rows.
 *
 * Every parameter is sent as text and cast in the statement ($1::text::int8),
 * and results are cast to text, int4, float8 or boolean, so that both
 * drivers pass and return the same JavaScript values (postgres.js would
 * otherwise serialize a value by the parameter's type: a JSON string given
 * for a jsonb parameter would be encoded a second time).  Job ids and lease tokens are bigints:
 * they travel as strings.
 */
import type { Row, SqlValue } from './driver.js';

/** A job as a worker gets it. */
export interface LeasedJob {
  readonly id: string;
  readonly name: string;
  readonly payload: unknown;
  readonly attempt: number;
  readonly token: string;
  /** milliseconds the lease had left when the database answered */
  readonly leaseMs: number;
}

/**
 * The first argument of a lease function, $1 of the given type.  Unless the
 * caller wants synchronous commits, evaluating it also turns
 * immich_jobs.synchronous_lease_commit off for this transaction only: the
 * setting is read when the transaction commits, and a function's arguments
 * are evaluated before it runs, whatever it returns.  (Nothing is set for
 * the session, so this works on any pooled connection.)
 */
function firstArg(type: string, synchronous: boolean): string {
  const arg = type === 'text' ? '$1::text' : `$1::text::${type}`;
  if (synchronous) {
    return arg;
  }
  return `CASE WHEN pg_catalog.set_config('immich_jobs.synchronous_lease_commit', 'off', true)
               IS NOT NULL THEN ${arg} END`;
}

/** complete_and_claim: $1 queue, $2 worker, $3 max_jobs, $4 ids, $5 tokens. */
export function completeAndClaim(synchronous: boolean): string {
  return `SELECT c.job_id::text AS id, c.job_name AS name, c.payload::text AS payload,
       c.attempt, c.lease_token::text AS token,
       (extract(epoch FROM c.lease_expires_at - pg_catalog.clock_timestamp()) * 1000)::float8 AS lease_ms
  FROM immich_jobs.complete_and_claim(${firstArg('text', synchronous)},
         $2::text, $3::text::int4, $4::text::int8[], $5::text::int8[]) c`;
}

/** heartbeat: $1 id, $2 token; lease_ms is NULL when the lease is lost. */
export function heartbeat(synchronous: boolean): string {
  return `SELECT (extract(epoch FROM h - pg_catalog.clock_timestamp()) * 1000)::float8 AS lease_ms
  FROM immich_jobs.heartbeat(${firstArg('int8', synchronous)}, $2::text::int8) h`;
}

/** fail: $1 id, $2 token, $3 error; outcome 'retrying', 'failed' or NULL. */
export function fail(synchronous: boolean): string {
  return `SELECT f AS outcome
  FROM immich_jobs.fail(${firstArg('int8', synchronous)}, $2::text::int8, $3::text) f`;
}

/** release: $1 id, $2 token. */
export function release(synchronous: boolean): string {
  return `SELECT r AS released
  FROM immich_jobs.release(${firstArg('int8', synchronous)}, $2::text::int8) r`;
}

/**
 * Jobs given as a JSON array in one statement, each through enqueue(), so
 * that each gets its own id (or its dedup key's job's): $1 queue, $2 jobs.
 */
export const ENQUEUE_EACH = `SELECT immich_jobs.enqueue($1::text, j.name, coalesce(j.payload, '{}'),
       coalesce(j.priority, 0), j.run_at, j.dedup_key, j.max_attempts)::text AS id
  FROM ROWS FROM (pg_catalog.jsonb_to_recordset($2::text::jsonb)
         AS (name text, payload jsonb, priority int4, run_at timestamptz,
             dedup_key text, max_attempts int4)) WITH ORDINALITY
       AS j(name, payload, priority, run_at, dedup_key, max_attempts, n)
 ORDER BY j.n`;

/**
 * ENQUEUE_EACH with each job's dedup_mode (the 8-argument enqueue() of
 * 1.2), for batches with a job that asks for 'kept'.
 */
export const ENQUEUE_EACH_MODE = `SELECT immich_jobs.enqueue($1::text, j.name, coalesce(j.payload, '{}'),
       coalesce(j.priority, 0), j.run_at, j.dedup_key, j.max_attempts,
       coalesce(j.dedup_mode, 'unstarted'))::text AS id
  FROM ROWS FROM (pg_catalog.jsonb_to_recordset($2::text::jsonb)
         AS (name text, payload jsonb, priority int4, run_at timestamptz,
             dedup_key text, max_attempts int4, dedup_mode text)) WITH ORDINALITY
       AS j(name, payload, priority, run_at, dedup_key, max_attempts, dedup_mode, n)
 ORDER BY j.n`;

/** $1 queue, $2 jobs: how many were added */
export const ENQUEUE_MANY = 'SELECT immich_jobs.enqueue_many($1::text, $2::text::jsonb)::float8 AS added';

export const CREATE_QUEUE = `SELECT immich_jobs.create_queue($1::text, $2::text::int4,
       pg_catalog.make_interval(secs => $3::text::float8), $4::text::int4,
       pg_catalog.make_interval(secs => $5::text::float8), $6::text::boolean)`;

export const ALTER_QUEUE = `SELECT immich_jobs.alter_queue($1::text, $2::text::int4,
       pg_catalog.make_interval(secs => $3::text::float8), $4::text::int4,
       pg_catalog.make_interval(secs => $5::text::float8))`;

export const PAUSE = 'SELECT immich_jobs.pause_queue($1::text)';
export const RESUME = 'SELECT immich_jobs.resume_queue($1::text)';
export const DROP = 'SELECT immich_jobs.drop_queue($1::text, $2::text::boolean)';
export const RETRY_FAILED = 'SELECT immich_jobs.retry_failed($1::text)::float8 AS n';
export const CLEAR = 'SELECT immich_jobs.clear($1::text, $2::text)::float8 AS n';
export const CANCEL = 'SELECT immich_jobs.cancel($1::text::int8) AS cancelled';

/** 1.2: $1 queue, $2 delayed too */
export const DRAIN = 'SELECT immich_jobs.drain($1::text, $2::text::boolean)::float8 AS n';
/** 1.2: $1 queue, $2 dedup key; payload is NULL when nothing was cancelled */
export const CANCEL_BY_KEY = 'SELECT immich_jobs.cancel_by_key($1::text, $2::text)::text AS payload';
/** 1.2: BullMQ's getJobCounts */
export const JOB_COUNTS = `SELECT active::float8, completed::float8, failed::float8, delayed::float8,
       waiting::float8, paused::float8
  FROM immich_jobs.job_counts($1::text)`;

export const COUNTS = `SELECT paused, concurrency, active::float8, waiting::float8, delayed::float8,
       failed::float8, completed::float8
  FROM immich_jobs.queue_counts WHERE queue_name = $1::text`;

/** $1 queue, $2 states (text[] or NULL for all), $3 limit */
export const JOBS = `SELECT job_id::text AS id, job_name AS name, state, priority, attempt,
       max_attempts, payload::text AS payload, last_error, dedup_key, worker_id,
       (extract(epoch FROM created_at) * 1000)::float8 AS created_at,
       (extract(epoch FROM run_at) * 1000)::float8 AS run_at,
       (extract(epoch FROM started_at) * 1000)::float8 AS started_at,
       (extract(epoch FROM finished_at) * 1000)::float8 AS finished_at
  FROM immich_jobs.jobs
 WHERE queue_name = $1::text AND ($2::text::text[] IS NULL OR state = ANY ($2::text::text[]))
 ORDER BY job_id LIMIT $3::text::int4`;

/** A PostgreSQL array literal of bigints given as strings. */
export function bigintArray(values: readonly string[]): string {
  return `{${values.join(',')}}`;
}

/** Seconds of an interval given in milliseconds, or NULL. */
export function seconds(ms: number | undefined): SqlValue {
  return ms === undefined ? null : ms / 1000;
}

function text(row: Row, column: string): string {
  const value = row[column];
  if (typeof value !== 'string') {
    throw new TypeError(`column ${column}: expected text, got ${typeof value}`);
  }
  return value;
}

function num(row: Row, column: string): number {
  const value = row[column];
  if (typeof value === 'number') {
    return value;
  }
  if (typeof value === 'string') {
    return Number(value);
  }
  throw new TypeError(`column ${column}: expected a number, got ${typeof value}`);
}

/** A number, or undefined for NULL. */
export function optionalNumber(row: Row, column: string): number | undefined {
  return row[column] === null || row[column] === undefined ? undefined : num(row, column);
}

/** complete_and_claim's rows: the jobs leased, and the ids of refused pairs. */
export function readClaim(rows: readonly Row[]): { jobs: LeasedJob[]; refused: string[] } {
  const jobs: LeasedJob[] = [];
  const refused: string[] = [];
  for (const row of rows) {
    if (row['token'] === null) {
      refused.push(text(row, 'id'));
      continue;
    }
    jobs.push({
      id: text(row, 'id'),
      name: text(row, 'name'),
      payload: JSON.parse(text(row, 'payload')) as unknown,
      attempt: num(row, 'attempt'),
      token: text(row, 'token'),
      leaseMs: num(row, 'lease_ms'),
    });
  }
  return { jobs, refused };
}

export { num as readNumber, text as readText };
