/**
 * ImmichJobRepository: Immich's JobRepository (BullMQ 5 on Redis) on
 * immich_jobs, with the methods and the behaviour Immich relies on.
 *
 * Two sets of connections:
 *  - Immich's own postgres.js instance (`sql`) for everything but the
 *    workers: enqueues (concurrent ones share a statement), the admin
 *    calls, counts.  Never ended here.
 *  - one JobsClient of the immich-jobs package for the workers of all 18
 *    queues, opened by startWorkers(): a pool of at most 4 connections and
 *    one LISTEN connection, whatever the number of queues and jobs.
 *
 * What BullMQ does and this does too (clients/immich/README.md has the
 * table): jobId blocks a new job while one with it is waiting, delayed,
 * active or failed (dedup mode 'kept'); priority 1 runs after the jobs
 * without a priority; a handler's error completes its job (Immich's
 * processor never throws); a job whose worker died is run again, and fails
 * after maxAttempts; long jobs keep their lease (heartbeats); drain keeps
 * delayed jobs; counts of a paused queue show its waiting jobs as paused.
 * Unlike BullMQ, concurrency is global: it counts every process's jobs.
 */
import { EventEmitter } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';

import {
  type EnqueueOptions, type Job, JobsClient, type JobInput, type Worker,
} from 'immich-jobs';
import { type PostgresDriverOptions, postgresDriver } from 'immich-jobs/postgres';
import type postgres from 'postgres';

import {
  DEFAULT_CONCURRENCY, defaultQueueOf, type JobCounts, type JobItem, type JobOptions, jobOptions,
  JobStatus, QUEUE_NAMES, type QueueCleanType, type QueueJobResponse, QueueJobStatus, QueueName,
} from './types.js';

/** postgres.js options, whatever the instance's custom types. */
export type PostgresOptions = postgres.Options<Record<string, postgres.PostgresType>>;

/** Where Immich's messages go (Immich's LoggingRepository fits). */
export interface Logger {
  log?(message: string): void;
  warn?(message: string): void;
  error?(message: string, error?: unknown): void;
  verbose?(message: string): void;
}

/**
 * The job a worker runs, besides its name and data: what Immich's
 * JobStart event gets from BullMQ's Job (its id, attemptsMade + 1).
 */
export interface JobContext {
  /** the immich_jobs job id */
  readonly id: string;
  /** 1 on the first lease, +1 on each new one (a job whose worker died runs again) */
  readonly attempt: number;
  /** aborted when the lease is lost (cancelled, reclaimed) or close() gives the job up */
  readonly signal: AbortSignal;
}

/** What a job handler of Immich returns. */
export type JobHandler = (data: any) => Promise<JobStatus | undefined | void>;

/** Options of an ImmichJobRepository; only `sql` is required. */
export interface ImmichJobRepositoryOptions {
  /**
   * Immich's postgres.js instance: enqueues and admin calls run on it.  The
   * repository never ends it.
   */
  sql: postgres.Sql<any>;
  /**
   * The connection of the workers' client, which startWorkers() opens: a
   * pool of at most 4 (`options.max`, lowered to 4) and one LISTEN
   * connection.  Default: the server, database, user and password of `sql`,
   * with application_name 'immich_jobs'.
   */
  workerConnection?: { url?: string; options?: PostgresOptions };
  /**
   * The queue of a job name (Immich passes what its handler discovery
   * found).  Default: the built-in table, JOB_QUEUE.
   */
  queueOf?: (name: string) => QueueName;
  /**
   * What a worker runs for each job (Immich: eventRepository.emit('JobStart',
   * queueName, item)), with the job's id and attempt.  Whatever it throws
   * or returns, the job is completed.  Default: this.run(item).
   */
  onJob?: (queueName: QueueName, item: JobItem, job: JobContext) => Promise<unknown>;
  /** The handler of each job name, for run(). */
  handlers?: Partial<Record<string, JobHandler>>;
  /**
   * The options of each job, as BullMQ's (default: jobOptions(), Immich's
   * getJobOptions).
   */
  jobOptions?: (item: JobItem) => JobOptions | null;
  /**
   * A job's lease lasts this long without a heartbeat, in ms (default
   * 60,000; at least 1,000).  Workers heartbeat their running jobs, so only
   * a job whose process died loses its lease, and runs again.
   */
  leaseTimeoutMs?: number;
  /**
   * Leases a job may have before it fails for good (default 3): a job whose
   * worker died runs again until then.  BullMQ's default (maxStalledCount
   * 1: one recovery, then failed) is 2.
   */
  maxAttempts?: number;
  logger?: Logger;
  /** The name workers record their leases under (default host:pid:...), plus ':<queue>'. */
  workerId?: string;
  /**
   * LISTEN for wake-ups on one more connection (default true).  Turn it
   * off behind PgBouncer in transaction mode (the workers then poll every
   * second).
   */
  listen?: boolean;
  /** How long close() waits for running jobs before it releases them, in ms (default 10,000). */
  closeTimeout?: number;
  /** How often waitForQueueCompletion() polls, in ms (default 1,000, as Immich). */
  completionPollInterval?: number;
}

export interface ImmichJobRepository {
  /**
   * A background problem of the workers or their client (a broken
   * connection, a call retried): they retry on their own.  While nobody
   * listens, these go to the logger's warn.
   */
  on(event: 'error', listener: (error: Error) => void): this;
  once(event: 'error', listener: (error: Error) => void): this;
  off(event: 'error', listener: (error: Error) => void): this;
}

/** The most pooled connections of the workers' client. */
const WORKER_POOL_MAX = 4;
const NO_PRIORITY = 0;
/** BullMQ's highest priority number. */
const BULLMQ_MAX_PRIORITY = 2 ** 21;

/**
 * BullMQ's options as immich_jobs' enqueue options: jobId is a dedup key
 * in mode 'kept'; delay a run_at; BullMQ priority p (1 first; none before
 * all) is immich_jobs priority -p (higher first; none is 0).
 */
export function enqueueOptions(options: JobOptions | null | undefined): EnqueueOptions {
  const result: EnqueueOptions = {};
  if (options?.jobId !== undefined) {
    result.dedupKey = options.jobId;
    result.dedupMode = 'kept';
  }
  if (options?.delay !== undefined && options.delay > 0) {
    result.runAt = new Date(Date.now() + options.delay);
  }
  const priority = options?.priority;
  if (priority !== undefined && priority !== NO_PRIORITY) {
    if (!Number.isInteger(priority) || priority < 0 || priority > BULLMQ_MAX_PRIORITY) {
      throw new RangeError(`priority must be an integer from 0 to ${BULLMQ_MAX_PRIORITY}`);
    }
    result.priority = -priority;
  }
  return result;
}

/** The states of immich_jobs' jobs view that each BullMQ status lists. */
const SEARCH_JOBS = `SELECT coalesce(j.dedup_key, j.job_id::text) AS id, j.job_name AS name,
       j.payload::text AS data, round(extract(epoch FROM j.created_at) * 1000)::int8::text AS ts
  FROM immich_jobs.jobs j
 WHERE j.queue_name = $1::text
   AND CASE WHEN j.state <> 'waiting' THEN j.state
            WHEN (SELECT c.paused FROM immich_jobs.queue_counts c WHERE c.queue_name = $1::text)
            THEN 'paused' ELSE 'waiting' END = ANY ($2::text::text[])
 ORDER BY j.job_id DESC
 LIMIT 1000`;

const FAILED_IDS = `SELECT coalesce(dedup_key, job_id::text) AS id
  FROM immich_jobs.jobs WHERE queue_name = $1::text AND state = 'failed' ORDER BY job_id`;

const CLEAR_FAILED = `SELECT immich_jobs.clear($1::text, 'failed')::text AS n`;

/** Create the queues that are missing, and give them all the repository's lease settings. */
const SETUP = `SELECT immich_jobs.create_queue(q.name, q.concurrency,
         pg_catalog.make_interval(secs => $3::text::float8), $4::text::int4,
         if_not_exists => true),
       immich_jobs.alter_queue(q.name,
         lease_timeout => pg_catalog.make_interval(secs => $3::text::float8),
         max_attempts => $4::text::int4)
  FROM unnest($1::text::text[], $2::text::int4[]) AS q(name, concurrency)`;

const SET_CONCURRENCY = `SELECT immich_jobs.set_concurrency(q.name, q.concurrency)
  FROM unnest($1::text::text[], $2::text::int4[]) AS q(name, concurrency)`;

/** $1 queue names: their limits in the database */
const GET_CONCURRENCY = `SELECT queue_name, concurrency::float8 AS concurrency
  FROM immich_jobs.queue_counts WHERE queue_name = ANY ($1::text::text[])`;

/** A queue's concurrency as startWorkers takes it: a number, or Immich's `{ concurrency }`. */
export type ConcurrencySetting = number | { concurrency: number };

/** A PostgreSQL array literal of simple values (queue names, numbers). */
function arrayLiteral(values: readonly (string | number)[]): string {
  return `{${values.map((v) => `"${String(v).replace(/["\\]/g, '\\$&')}"`).join(',')}}`;
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * The options `sql` was opened with that say where and as whom to connect,
 * to open the workers' client like it (not its pool settings, hooks,
 * transforms or types).
 */
function connectionOptionsOf(sql: postgres.Sql<any>): PostgresOptions {
  const o = sql.options as unknown as Record<string, unknown>;
  const picked: Record<string, unknown> = {};
  for (const key of ['host', 'port', 'path', 'database', 'user', 'pass', 'ssl',
    'target_session_attrs', 'prepare', 'keep_alive', 'connect_timeout', 'connection']) {
    if (o[key] !== undefined) {
      picked[key] = o[key];
    }
  }
  return picked as PostgresOptions;
}

function checkConcurrency(queue: string, concurrency: number): void {
  if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 10_000) {
    throw new RangeError(`concurrency of ${queue} must be an integer from 1 to 10000, not ${concurrency}`);
  }
}

/** A promise whose rejection is reported by `then` only if awaited: never unhandled. */
function quiet<T>(promise: Promise<T>, onError: (error: unknown) => void): Promise<T> {
  promise.catch(onError);
  return promise;
}

export class ImmichJobRepository extends EventEmitter {
  readonly sql: postgres.Sql<any>;
  private readonly admin: JobsClient;
  private workerClient: JobsClient | undefined;
  private readonly workers = new Map<QueueName, Worker<unknown>>();
  /** the limits this process set last (setConcurrency, startWorkers' argument) */
  private readonly limits = new Map<QueueName, number>();
  private readonly queueOfName: (name: string) => QueueName;
  private readonly onJob: (queueName: QueueName, item: JobItem, job: JobContext) => Promise<unknown>;
  private readonly handlers: Partial<Record<string, JobHandler>>;
  private readonly optionsOf: (item: JobItem) => JobOptions | null;
  private readonly logger: Logger;
  private readonly options: ImmichJobRepositoryOptions;
  readonly leaseTimeoutMs: number;
  readonly maxAttempts: number;
  private readonly completionPollInterval: number;
  private closing: Promise<void> | undefined;

  constructor(options: ImmichJobRepositoryOptions) {
    super();
    this.options = options;
    this.sql = options.sql;
    this.queueOfName = options.queueOf ?? defaultQueueOf;
    this.onJob = options.onJob ?? ((_queue, item) => this.run(item));
    this.handlers = options.handlers ?? {};
    this.optionsOf = options.jobOptions ?? jobOptions;
    this.logger = options.logger ?? {
      warn: (message) => console.warn(message),
      error: (message, error) => console.error(message, error ?? ''),
    };
    this.leaseTimeoutMs = options.leaseTimeoutMs ?? 60_000;
    this.maxAttempts = options.maxAttempts ?? 3;
    this.completionPollInterval = options.completionPollInterval ?? 1_000;
    if (!(this.leaseTimeoutMs >= 1_000)) {
      throw new RangeError('leaseTimeoutMs must be at least 1000');
    }
    if (!Number.isInteger(this.maxAttempts) || this.maxAttempts < 1 || this.maxAttempts > 1_000) {
      throw new RangeError('maxAttempts must be an integer from 1 to 1000');
    }
    // on Immich's instance: never ended by the driver, no LISTEN connection
    this.admin = new JobsClient({
      driver: postgresDriver({ sql: options.sql as postgres.Sql }),
      listen: false,
    });
    this.admin.on('error', (error) => this.report(error));
  }

  /**
   * The most connections the workers' client opens: its pool (at most 4)
   * and the LISTEN connection.  The rest runs on Immich's `sql`.
   */
  get maxConnections(): number {
    const max = this.options.workerConnection?.options?.max ?? WORKER_POOL_MAX;
    return Math.min(WORKER_POOL_MAX, max) + (this.options.listen === false ? 0 : 1);
  }

  /**
   * Create the 18 queues that are missing (each with its default
   * concurrency), and set every queue's lease timeout and attempts to the
   * repository's.  Idempotent; queues that exist keep their concurrency.
   */
  async setup(): Promise<void> {
    await this.sql.unsafe(SETUP, [
      arrayLiteral(QUEUE_NAMES), arrayLiteral(QUEUE_NAMES.map((q) => DEFAULT_CONCURRENCY[q])),
      String(this.leaseTimeoutMs / 1000), String(this.maxAttempts),
    ]);
  }

  /**
   * Start one worker per queue, on one client of its own (a pool of at most
   * 4 connections and one LISTEN connection for all 18).  A queue given in
   * `concurrency` (a number, or Immich's `{ concurrency }` of its system
   * config) gets that limit, in the database too, so it holds over every
   * process.  The others keep the limit the database has (what an
   * administrator or another process set, else what setup() created them
   * with): their workers start with the last limit this process set, or
   * DEFAULT_CONCURRENCY, and take the database's once it is read.  The
   * promise resolves once the limits are set and read; whether or not it is
   * awaited, a failure is logged.
   */
  startWorkers(concurrency: Partial<Record<QueueName, ConcurrencySetting>> = {}): Promise<void> {
    const given: (readonly [QueueName, number])[] = [];
    try {
      if (this.closing !== undefined) {
        throw new Error('the repository is closed');
      }
      for (const q of QUEUE_NAMES) {
        const setting = concurrency[q];
        if (setting !== undefined) {
          const n = typeof setting === 'number' ? setting : setting?.concurrency;
          checkConcurrency(q, n as number);
          given.push([q, n as number]);
        }
      }
    } catch (error) {
      return quiet(Promise.reject(error), (e) => this.logError('Unable to start the workers', e));
    }
    if (this.workerClient !== undefined) {
      this.logger.warn?.('The workers are already started');
      return Promise.resolve();
    }
    for (const [q, n] of given) {
      this.limits.set(q, n);
    }
    const client = new JobsClient({
      driver: postgresDriver(this.workerDriverOptions()),
      listen: this.options.listen ?? true,
    });
    client.on('error', (error) => this.report(error));
    this.workerClient = client;
    for (const queue of QUEUE_NAMES) {
      this.logger.verbose?.(`Starting worker for queue: ${queue}`);
      const worker = client.worker<unknown>(queue, (job) => this.process(queue, job), {
        concurrency: this.limits.get(queue) ?? DEFAULT_CONCURRENCY[queue],
        closeTimeout: this.options.closeTimeout ?? 10_000,
        ...(this.options.workerId !== undefined ? { workerId: `${this.options.workerId}:${queue}` } : {}),
      });
      worker.on('error', (error) => this.report(error));
      worker.on('lost', (job) => this.logger.warn?.(
        `Lost the lease of job ${job.name} (${job.id}) of queue ${queue}: it was cancelled or reclaimed`));
      this.workers.set(queue, worker);
    }
    const explicit = new Set(given.map(([q]) => q));
    return quiet(this.setLimits(given).then(() => this.adoptLimits(explicit)),
      (e) => this.logError('Unable to set the queues\' concurrency', e));
  }

  /**
   * Run a job's handler (handlers[item.name]); 'skipped', with a warning,
   * for a name without one.  A handler that returns nothing succeeded.
   */
  async run(item: JobItem): Promise<JobStatus> {
    const handler = this.handlers[item.name];
    if (handler === undefined) {
      this.logger.warn?.(`Skipping unknown job: "${item.name}"`);
      return JobStatus.Skipped;
    }
    return (await handler(item.data)) ?? JobStatus.Success;
  }

  /**
   * How many jobs of the queue run at once, over every process (in the
   * database), and in this process's worker.  Whether or not the promise is
   * awaited, a failure is logged.
   */
  setConcurrency(queueName: QueueName, concurrency: number): Promise<void> {
    try {
      checkConcurrency(queueName, concurrency);
    } catch (error) {
      return quiet(Promise.reject(error), (e) => this.logError('Unable to set queue concurrency', e));
    }
    this.limits.set(queueName, concurrency);
    this.workers.get(queueName)?.setConcurrency(concurrency);
    // (a closed client throws at once: keep that in the promise too)
    return quiet(Promise.resolve().then(() => this.admin.queue(queueName).setConcurrency(concurrency)),
      (e) => this.logError(`Unable to set the concurrency of ${queueName}`, e));
  }

  /** Does the queue have active jobs (in any process)? */
  async isActive(queueName: QueueName): Promise<boolean> {
    return (await this.admin.queue(queueName).counts()).active > 0;
  }

  async isPaused(queueName: QueueName): Promise<boolean> {
    return (await this.admin.queue(queueName).counts()).paused;
  }

  /**
   * Admit no more jobs of the queue (running ones go on), in every
   * process.  The backgroundTask queue is never paused (Immich refuses it).
   */
  async pause(queueName: QueueName): Promise<void> {
    if (queueName === QueueName.BackgroundTask) {
      this.logger.warn?.(`The ${queueName} queue cannot be paused`);
      return;
    }
    await this.admin.queue(queueName).pause();
  }

  async resume(queueName: QueueName): Promise<void> {
    await this.admin.queue(queueName).resume();
  }

  /** BullMQ's drain(): remove the waiting jobs, keep the delayed ones.  Resolves to how many. */
  async empty(queueName: QueueName): Promise<number> {
    return this.admin.queue(queueName).drain();
  }

  /**
   * BullMQ's clean(0, 1000, 'failed'): remove the failed jobs; resolves to
   * their ids (each job's jobId if it has one).  Unlike clean, removes them
   * all, not 1,000 at most.
   */
  async clear(queueName: QueueName, type: QueueCleanType): Promise<string[]> {
    if (type !== 'failed') {
      throw new RangeError(`only failed jobs can be cleared, not ${String(type)}`);
    }
    const ids = await this.sql.begin(async (tx) => {
      const rows = await tx.unsafe(FAILED_IDS, [queueName]);
      await tx.unsafe(CLEAR_FAILED, [queueName]);
      return rows.map((row) => String((row as Record<string, unknown>)['id']));
    });
    return ids as string[];
  }

  /**
   * The queue's counts, as BullMQ's getJobCounts: while the queue is
   * paused its waiting jobs count as paused, and waiting is 0.
   */
  async getJobCounts(queueName: QueueName): Promise<JobCounts> {
    return this.admin.queue(queueName).jobCounts();
  }

  /** Queue one job. */
  async queue(item: JobItem): Promise<void> {
    return this.queueAll([item]);
  }

  /**
   * Queue jobs, each in its job name's queue, with Immich's options: a
   * job whose jobId a kept job has is not added (BullMQ's add); a delay; a
   * priority.  A queue's jobs go in one transaction (one statement when
   * there is one job, shared with concurrent calls).
   */
  async queueAll(items: readonly JobItem[]): Promise<void> {
    if (items.length === 0) {
      return;
    }
    const byQueue = new Map<QueueName, JobInput[]>();
    for (const item of items) {
      const queue = this.queueOfName(item.name);
      const input: JobInput = {
        name: item.name,
        payload: item.data ?? {},
        ...enqueueOptions(this.optionsOf(item)),
      };
      const jobs = byQueue.get(queue);
      if (jobs === undefined) {
        byQueue.set(queue, [input]);
      } else {
        jobs.push(input);
      }
    }
    await Promise.all([...byQueue].map(async ([queue, jobs]) => {
      const q = this.admin.queue(queue);
      if (jobs.length === 1) {
        const [job] = jobs as [JobInput];
        await q.enqueue(job.name, job.payload, job);
      } else {
        await q.enqueueMany(jobs);
      }
    }));
  }

  /** Resolve once none of the queues has an active job, polling as Immich does. */
  async waitForQueueCompletion(...queues: QueueName[]): Promise<void> {
    for (;;) {
      const active = await Promise.all(queues.map((queue) => this.isActive(queue)));
      const busy = queues.find((_, i) => active[i]);
      if (busy === undefined) {
        this.logger.verbose?.('All queues are now idle');
        return;
      }
      this.logger.verbose?.(`Waiting for ${busy} queue to stop...`);
      await sleep(this.completionPollInterval);
    }
  }

  /**
   * The queue's jobs in these states (default: all), newest first, up to
   * 1,000.  'completed' lists nothing: completed jobs are not kept (as with
   * Immich's removeOnComplete).  A paused queue's waiting jobs are 'paused'.
   */
  async searchJobs(queueName: QueueName, dto: { status?: QueueJobStatus[] } = {}): Promise<QueueJobResponse[]> {
    const status = dto.status ?? Object.values(QueueJobStatus);
    const rows = await this.sql.unsafe(SEARCH_JOBS, [queueName, arrayLiteral(status)]);
    return rows.map((row) => {
      const r = row as Record<string, unknown>;
      return {
        id: String(r['id']),
        name: String(r['name']),
        data: JSON.parse(String(r['data'])) as unknown,
        timestamp: Number(r['ts']),
      };
    });
  }

  /**
   * Remove the job of this name's queue whose jobId is `jobId`, unless it
   * is running (BullMQ refuses to remove a locked job); resolves to its
   * data, or undefined if there was none.  Its jobId is free again.
   */
  async removeJob(name: JobItem['name'], jobId: string): Promise<unknown> {
    return this.admin.queue(this.queueOfName(name)).cancelByKey(jobId);
  }

  /**
   * Close the workers (each waits up to closeTimeout for its running jobs,
   * then gives the rest back: they run again without losing an attempt)
   * and their client.  Immich's `sql` stays open.
   */
  close(): Promise<void> {
    this.closing ??= (async () => {
      const timeout = this.options.closeTimeout ?? 10_000;
      await this.workerClient?.close({ timeout });
      this.workers.clear();
      await this.admin.close();
    })();
    return this.closing;
  }

  // ---- internals ---------------------------------------------------------

  /** The worker's handler: runs onJob, never throws, so the job is always completed. */
  private async process(queue: QueueName, job: Job<unknown>): Promise<void> {
    const item: JobItem = { name: job.name, data: job.payload };
    const context: JobContext = {
      id: job.id,
      attempt: job.attempt,
      get signal(): AbortSignal { return job.signal; },
    };
    try {
      const result = await this.onJob(queue, item, context);
      if (result === JobStatus.Failed) {
        this.logger.warn?.(`Job ${job.name} (${job.id}) of queue ${queue} failed`);
      }
    } catch (error) {
      this.logError(`Unable to run job ${job.name} (${job.id}) of queue ${queue}: ${messageOf(error)}`, error);
    }
  }

  /**
   * The workers of the queues whose limit startWorkers was not given take
   * the database's, unless setConcurrency has set one since.
   */
  private async adoptLimits(explicit: ReadonlySet<QueueName>): Promise<void> {
    const rest = QUEUE_NAMES.filter((q) => !explicit.has(q));
    if (rest.length === 0) {
      return;
    }
    const rows = await this.sql.unsafe(GET_CONCURRENCY, [arrayLiteral(rest)]);
    for (const row of rows) {
      const queue = row['queue_name'] as QueueName;
      const n = Number(row['concurrency']);
      if (!this.limits.has(queue) && Number.isInteger(n) && n > 0) {
        this.workers.get(queue)?.setConcurrency(n);
      }
    }
  }

  private async setLimits(limits: readonly (readonly [QueueName, number])[]): Promise<void> {
    if (limits.length === 0) {
      return;
    }
    await this.sql.unsafe(SET_CONCURRENCY, [
      arrayLiteral(limits.map(([q]) => q)), arrayLiteral(limits.map(([, n]) => n)),
    ]);
  }

  private workerDriverOptions(): PostgresDriverOptions {
    const given = this.options.workerConnection ?? {};
    const options = given.options ?? {};
    const base = given.url !== undefined ? {} : connectionOptionsOf(this.sql);
    const connection = {
      ...(base.connection ?? {}),
      ...(options.connection ?? {}),
      application_name: options.connection?.application_name ?? 'immich_jobs',
    };
    return {
      ...(given.url !== undefined ? { url: given.url } : {}),
      options: {
        ...base,
        // no array types to fetch: postgres.js does not handle that query's
        // failure (a connection terminated then is an unhandled rejection)
        fetch_types: false,
        ...options,
        max: Math.min(WORKER_POOL_MAX, options.max ?? WORKER_POOL_MAX),
        connection,
      },
    };
  }

  private logError(message: string, error: unknown): void {
    this.logger.error?.(message, error);
  }

  /** A background error: to 'error' listeners, else to the logger. */
  private report(error: unknown): void {
    if (this.listenerCount('error') > 0) {
      try {
        this.emit('error', error instanceof Error ? error : new Error(String(error)));
      } catch {
        // a listener that throws must not break a worker's loop
      }
      return;
    }
    this.logger.warn?.(`immich_jobs: ${messageOf(error)}`);
  }
}
