/**
 * Queue: a handle on one queue, with a method for each SQL function that
 * administers it or adds to it.  Durations are in milliseconds.
 */
import type { JobsClient } from './client.js';
import { type EnqueueBatcher, type EnqueueOptions, type JobInput, jobJson } from './enqueue.js';
import { InvalidArgumentError, NotFoundError } from './errors.js';
import * as sql from './sql.js';

/** A queue's settings; every one has a default on `create`. */
export interface QueueSettings {
  /** Jobs of the queue active at once, over every process (1 to 10,000; default 1). */
  concurrency?: number;
  /** A lease lasts this long without a heartbeat, in ms (1 s to 7 days; default 5 minutes). */
  leaseTimeout?: number;
  /** Attempts of a job before it fails for good (1 to 1,000; default 3). */
  maxAttempts?: number;
  /** First retry delay, doubled at each attempt, in ms (0 to 7 days; default 30 s). */
  retryBackoff?: number;
}

/** The job counts of a queue (the queue_counts view). */
export interface QueueCounts {
  paused: boolean;
  concurrency: number;
  active: number;
  waiting: number;
  delayed: number;
  failed: number;
  /** completed since the queue was created or the count cleared */
  completed: number;
}

/**
 * A queue's job counts as BullMQ's getJobCounts gives them (1.2): when the
 * queue is paused its waiting jobs count as `paused` and `waiting` is 0.
 */
export interface JobCounts {
  active: number;
  /** completed since the queue was created or the count cleared */
  completed: number;
  failed: number;
  delayed: number;
  waiting: number;
  paused: number;
}

/** The states a kept job can be in. */
export type JobState = 'waiting' | 'delayed' | 'active' | 'failed' | 'cancelled';

/** A job as the jobs view shows it. */
export interface JobInfo {
  id: string;
  name: string;
  state: JobState;
  priority: number;
  attempt: number;
  maxAttempts: number;
  payload: unknown;
  lastError: string | null;
  dedupKey: string | null;
  workerId: string | null;
  createdAt: Date;
  runAt: Date;
  startedAt: Date | null;
  finishedAt: Date | null;
}

const DEFAULT_CHUNK = 1_000;

function date(ms: number | undefined): Date | null {
  return ms === undefined ? null : new Date(ms);
}

export class Queue {
  /** @internal */
  constructor(
    private readonly client: JobsClient,
    private readonly batcher: EnqueueBatcher,
    readonly name: string,
  ) {}

  /** Create the queue (throws QueueExistsError if it exists, unless `ifNotExists`). */
  async create(settings: QueueSettings & { ifNotExists?: boolean } = {}): Promise<void> {
    const ifNotExists = settings.ifNotExists ?? false;
    await this.client.run(sql.CREATE_QUEUE, [
      this.name, settings.concurrency ?? 1, sql.seconds(settings.leaseTimeout ?? 300_000),
      settings.maxAttempts ?? 3, sql.seconds(settings.retryBackoff ?? 30_000), ifNotExists,
    ], ifNotExists ? 'idempotent' : 'once');
  }

  /** Change the settings given. */
  async alter(settings: QueueSettings): Promise<void> {
    await this.client.run(sql.ALTER_QUEUE, [
      this.name, settings.concurrency ?? null, sql.seconds(settings.leaseTimeout),
      settings.maxAttempts ?? null, sql.seconds(settings.retryBackoff),
    ], 'idempotent');
  }

  /** How many jobs of the queue may be active at once, over every process. */
  async setConcurrency(concurrency: number): Promise<void> {
    await this.alter({ concurrency });
  }

  /** Admit no more jobs; leases already held go on. */
  async pause(): Promise<void> {
    await this.client.run(sql.PAUSE, [this.name], 'idempotent');
  }

  async resume(): Promise<void> {
    await this.client.run(sql.RESUME, [this.name], 'idempotent');
  }

  /** Remove the queue and its jobs (throws QueueInUseError while jobs are active, unless `force`). */
  async drop(options: { force?: boolean } = {}): Promise<void> {
    await this.client.run(sql.DROP, [this.name, options.force ?? false], 'once');
  }

  /**
   * Add one job; resolves to its id (or, with a dedup key that a job
   * blocking it has, to that job's: see `dedupMode`).  Concurrent calls share a statement.
   * A connection that fails is retried until operationTimeout: if it broke
   * after the database committed the job, the job is added twice (unless
   * it has a dedup key).
   */
  enqueue(name: string, payload?: unknown, options: EnqueueOptions = {}): Promise<string> {
    try {
      this.client.assertOpen();
    } catch (err) {
      return Promise.reject(err);
    }
    return this.batcher.add(this.name, { ...options, name, payload });
  }

  /**
   * Add many jobs, all or nothing; resolves to how many were added (jobs
   * whose dedup key is blocked, see `dedupMode`, are not).  Sent in
   * statements of `chunkSize` jobs (default 1,000), in one transaction.
   * Retried as enqueue() is.
   */
  async enqueueMany(jobs: readonly JobInput[], options: { chunkSize?: number } = {}): Promise<number> {
    this.client.assertOpen();
    const chunkSize = options.chunkSize ?? DEFAULT_CHUNK;
    if (!Number.isInteger(chunkSize) || chunkSize < 1) {
      throw new InvalidArgumentError('chunkSize must be a positive integer', '22023',
        undefined, undefined, undefined);
    }
    // check every job before sending anything
    const chunks: string[] = [];
    for (let i = 0; i < jobs.length; i += chunkSize) {
      chunks.push(`[${jobs.slice(i, i + chunkSize).map((job) => jobJson(job)).join(',')}]`);
    }
    if (chunks.length === 0) {
      return 0;
    }
    const count = (rows: readonly { [k: string]: unknown }[]): number => sql.readNumber(rows[0]!, 'added');
    if (chunks.length === 1) {
      return count(await this.client.run(sql.ENQUEUE_MANY, [this.name, chunks[0]!], 'idempotent'));
    }
    return this.client.transaction('idempotent', async (query) => {
      let added = 0;
      for (const chunk of chunks) {
        added += count(await query(sql.ENQUEUE_MANY, [this.name, chunk]));
      }
      return added;
    });
  }

  /** The queue's job counts. */
  async counts(): Promise<QueueCounts> {
    const rows = await this.client.run(sql.COUNTS, [this.name], 'idempotent');
    const row = rows[0];
    if (row === undefined) {
      throw new NotFoundError(`queue "${this.name}" does not exist`, '42704',
        undefined, undefined, undefined);
    }
    return {
      paused: row['paused'] === true,
      concurrency: sql.readNumber(row, 'concurrency'),
      active: sql.readNumber(row, 'active'),
      waiting: sql.readNumber(row, 'waiting'),
      delayed: sql.readNumber(row, 'delayed'),
      failed: sql.readNumber(row, 'failed'),
      completed: sql.readNumber(row, 'completed'),
    };
  }

  /** The queue's kept jobs, oldest first (default: every state, up to 1,000). */
  async jobs(options: { states?: readonly JobState[]; limit?: number } = {}): Promise<JobInfo[]> {
    const states = options.states === undefined ? null : `{${options.states.join(',')}}`;
    const rows = await this.client.run(sql.JOBS, [this.name, states, options.limit ?? 1_000], 'idempotent');
    return rows.map((row) => ({
      id: sql.readText(row, 'id'),
      name: sql.readText(row, 'name'),
      state: sql.readText(row, 'state') as JobState,
      priority: sql.readNumber(row, 'priority'),
      attempt: sql.readNumber(row, 'attempt'),
      maxAttempts: sql.readNumber(row, 'max_attempts'),
      payload: JSON.parse(sql.readText(row, 'payload')) as unknown,
      lastError: (row['last_error'] as string | null) ?? null,
      dedupKey: (row['dedup_key'] as string | null) ?? null,
      workerId: (row['worker_id'] as string | null) ?? null,
      createdAt: new Date(sql.readNumber(row, 'created_at')),
      runAt: new Date(sql.readNumber(row, 'run_at')),
      startedAt: date(sql.optionalNumber(row, 'started_at')),
      finishedAt: date(sql.optionalNumber(row, 'finished_at')),
    }));
  }

  /** Put the failed jobs back to waiting with a fresh attempt count; resolves to how many. */
  async retryFailed(): Promise<number> {
    const rows = await this.client.run(sql.RETRY_FAILED, [this.name], 'once');
    return sql.readNumber(rows[0]!, 'n');
  }

  /**
   * Remove the jobs in a state: 'waiting' (with the delayed ones, the
   * default), 'delayed', 'failed', 'cancelled', or 'completed' (resets the
   * count).  Resolves to how many.
   */
  async clear(state: 'waiting' | 'delayed' | 'failed' | 'cancelled' | 'completed' = 'waiting'): Promise<number> {
    const rows = await this.client.run(sql.CLEAR, [this.name, state], 'once');
    return sql.readNumber(rows[0]!, 'n');
  }

  /**
   * Remove the queue's waiting jobs, and its delayed ones too only with
   * `delayed: true` (BullMQ's drain; needs immich_jobs 1.2).  Active and
   * failed jobs stay.  Resolves to how many were removed.
   */
  async drain(options: { delayed?: boolean } = {}): Promise<number> {
    const rows = await this.client.run(sql.DRAIN, [this.name, options.delayed ?? false], 'once');
    return sql.readNumber(rows[0]!, 'n');
  }

  /**
   * Cancel the queue's waiting, delayed and failed jobs with this dedup key
   * (needs immich_jobs 1.2).  Resolves to the payload of the newest one
   * cancelled, or undefined if there was none.  An active job with the key
   * goes on (BullMQ does not remove a locked job either).
   */
  async cancelByKey(key: string): Promise<unknown> {
    const rows = await this.client.run(sql.CANCEL_BY_KEY, [this.name, key], 'once');
    const payload = rows[0]?.['payload'];
    return typeof payload === 'string' ? JSON.parse(payload) as unknown : undefined;
  }

  /**
   * The queue's counts as BullMQ's getJobCounts gives them (needs
   * immich_jobs 1.2): a paused queue's waiting jobs count as `paused`.
   */
  async jobCounts(): Promise<JobCounts> {
    const rows = await this.client.run(sql.JOB_COUNTS, [this.name], 'idempotent');
    const row = rows[0]!;
    return {
      active: sql.readNumber(row, 'active'),
      completed: sql.readNumber(row, 'completed'),
      failed: sql.readNumber(row, 'failed'),
      delayed: sql.readNumber(row, 'delayed'),
      waiting: sql.readNumber(row, 'waiting'),
      paused: sql.readNumber(row, 'paused'),
    };
  }

  /**
   * Cancel a waiting, delayed or active job (of any queue) by id; an active
   * job's lease is revoked.  Resolves to false if it had already finished.
   */
  async cancel(jobId: string): Promise<boolean> {
    const rows = await this.client.run(sql.CANCEL, [jobId], 'idempotent');
    return rows[0]?.['cancelled'] === true;
  }
}
