/**
 * JobsClient: one per process.  It holds the driver (a pool of at most 4
 * connections by default), the one LISTEN connection, and the retry policy;
 * queue handles and workers come from it.
 */
import { EventEmitter } from 'node:events';

import { Backoff, type BackoffOptions, sleep } from './backoff.js';
import type { Driver, Row, SqlValue } from './driver.js';
import { ClosedError, failureKind, type JobsError, toJobsError } from './errors.js';
import { Listener } from './listener.js';
import { EnqueueBatcher } from './enqueue.js';
import { Queue } from './queue.js';
import { type Handler, Worker, type WorkerOptions } from './worker.js';

/** Options of a JobsClient; every one but `driver` has a default. */
export interface JobsClientOptions {
  /** The PostgreSQL driver: `pgDriver()` or `postgresDriver()`. */
  driver: Driver;
  /**
   * LISTEN for wake-ups on one extra connection (default true).  Turn it off
   * behind PgBouncer in transaction mode: workers then poll.
   */
  listen?: boolean;
  /**
   * Wait for the WAL flush when leasing and completing jobs (default false).
   * false: claims, completions, failures, heartbeats and releases commit as
   * with synchronous_commit = off (enqueues stay durable); a server crash may
   * then lose the last ~0.6 s of them, and their jobs run again.
   */
  synchronousLeaseCommit?: boolean;
  /**
   * How often an idle worker claims while it cannot count on LISTEN (turned
   * off, or its connection down), in ms (default 1,000).
   */
  pollInterval?: number;
  /** How often an idle worker claims anyway while LISTEN is up, in ms (default 30,000). */
  listenPollInterval?: number;
  /**
   * How long a call of a queue handle keeps trying to reach the database,
   * in ms (default 30,000); then it throws a ConnectionError.
   */
  operationTimeout?: number;
  /** The backoff between retries (default 100 ms doubling up to 5 s, with jitter). */
  backoff?: BackoffOptions;
  /**
   * How long a worker waits for the answer to one of its lease statements
   * (complete_and_claim, heartbeat, fail, release), in ms (default 10,000),
   * and at most a third of the shortest lease it has been given (but at
   * least 1,000 ms): then it takes the connection for broken and sends the
   * statement again (its completions with it), so that a driver that never
   * answers cannot let a finished job's lease run out.
   */
  callTimeout?: number;
}

/** How a statement is retried when its connection fails. */
export type RetryMode =
  /**
   * it changes nothing, may run twice, or had better run twice than not at
   * all (an enqueue): retry any connection failure
   */
  | 'idempotent'
  /** retry only failures before the statement was sent */
  | 'once';

/** Resolved options, shared with queues and workers. */
export interface ClientSettings {
  readonly listen: boolean;
  readonly synchronousLeaseCommit: boolean;
  readonly pollInterval: number;
  readonly listenPollInterval: number;
  readonly operationTimeout: number;
  readonly backoff: BackoffOptions;
  readonly callTimeout: number;
}

export interface JobsClient {
  /** A background problem: the LISTEN connection broke, an idle pooled connection failed.  Emitted only while someone listens. */
  on(event: 'error', listener: (error: JobsError) => void): this;
  once(event: 'error', listener: (error: JobsError) => void): this;
  off(event: 'error', listener: (error: JobsError) => void): this;
}

export class JobsClient extends EventEmitter {
  readonly driver: Driver;
  readonly settings: ClientSettings;
  /** @internal */
  readonly listener: Listener;
  private readonly batcher: EnqueueBatcher;
  private readonly workers = new Set<{
    close(options: { timeout?: number }): Promise<void>;
    connectionTrouble(): void;
  }>();
  private resendWindowMs = 2_000;
  private resendWindowAsked = false;
  private readonly stop = new AbortController();
  private closing: Promise<void> | undefined;

  constructor(options: JobsClientOptions) {
    super();
    this.driver = options.driver;
    this.settings = {
      listen: options.listen ?? true,
      synchronousLeaseCommit: options.synchronousLeaseCommit ?? false,
      pollInterval: options.pollInterval ?? 1_000,
      listenPollInterval: options.listenPollInterval ?? 30_000,
      operationTimeout: options.operationTimeout ?? 30_000,
      backoff: options.backoff ?? {},
      callTimeout: options.callTimeout ?? 10_000,
    };
    this.driver.onBackgroundError = (err) => {
      this.report(err);
      for (const worker of this.workers) {
        worker.connectionTrouble();
      }
    };
    this.listener = new Listener(this.driver, (err) => this.report(err), this.settings.backoff);
    this.batcher = new EnqueueBatcher(this);
  }

  /** The connections this client may open at once: the pool's, plus one to LISTEN. */
  get maxConnections(): number {
    return this.driver.maxConnections + (this.settings.listen ? 1 : 0);
  }

  /** A handle on a queue (nothing is checked until it is used). */
  queue(name: string): Queue {
    this.assertOpen();
    return new Queue(this, this.batcher, name);
  }

  /**
   * How long a completion that committed without waiting for the WAL flush
   * may still be lost in a crash, in ms: three wal_writer_delay (asked of
   * the server once), and a second.  2 s until the server has answered.
   * @internal
   */
  get resendWindow(): number {
    if (!this.resendWindowAsked && !this.settings.synchronousLeaseCommit) {
      this.resendWindowAsked = true;
      this.run(`SELECT (extract(epoch FROM pg_catalog.current_setting('wal_writer_delay')::interval)
                        * 1000)::float8 AS ms`, [], 'idempotent').then(
        (rows) => {
          const ms = Number(rows[0]?.['ms']);
          if (Number.isFinite(ms)) {
            this.resendWindowMs = 3 * ms + 1_000;
          }
        },
        (err: unknown) => {
          this.resendWindowAsked = false;
          this.report(err);
        });
    }
    return this.resendWindowMs;
  }

  /** Start a worker that runs `handler` for the jobs of a queue. */
  worker<P = unknown>(queue: string, handler: Handler<P>, options: WorkerOptions = {}): Worker<P> {
    this.assertOpen();
    const worker = new Worker<P>(this, queue, handler, options);
    this.workers.add(worker);
    worker.once('closed', () => this.workers.delete(worker));
    return worker;
  }

  /**
   * Close every worker (each waits up to `timeout` ms for its running jobs,
   * then releases them), the LISTEN connection, and the driver.
   */
  close(options: { timeout?: number } = {}): Promise<void> {
    this.closing ??= (async () => {
      await Promise.all([...this.workers].map((w) => w.close(options)));
      await this.batcher.drain();
      this.stop.abort();
      await this.listener.close();
      await this.driver.end();
    })();
    return this.closing;
  }

  /**
   * Run a statement for a caller, retrying connection failures with backoff
   * (as `mode` allows) until operationTimeout.  Throws a JobsError.
   * @internal
   */
  run(text: string, values: readonly SqlValue[], mode: RetryMode): Promise<Row[]> {
    return this.retrying(mode, () => this.driver.query(text, values));
  }

  /**
   * Run statements in one transaction, retried as `run` is (a transaction
   * that broke before its COMMIT changed nothing).
   * @internal
   */
  transaction<T>(mode: RetryMode,
    fn: (query: (text: string, values: readonly SqlValue[]) => Promise<Row[]>) => Promise<T>): Promise<T> {
    return this.retrying(mode, () =>
      this.driver.transaction((tx) => fn((text, values) => tx.query(text, values))));
  }

  private async retrying<T>(mode: RetryMode, attempt: () => Promise<T>): Promise<T> {
    this.assertRunning();
    const backoff = new Backoff(this.settings.backoff);
    const deadline = Date.now() + this.settings.operationTimeout;
    for (;;) {
      try {
        return await attempt();
      } catch (err) {
        const kind = failureKind(err);
        const retry = kind === 'connect' || (kind === 'connection' && mode === 'idempotent');
        const delay = backoff.next();
        if (!retry || Date.now() + delay > deadline || this.stop.signal.aborted) {
          throw toJobsError(err);
        }
        await sleep(delay, this.stop.signal);
      }
    }
  }

  /** Emit 'error' if anybody listens; never throws. @internal */
  report(error: unknown, emitter: EventEmitter = this): void {
    if (emitter.listenerCount('error') === 0) {
      return;
    }
    try {
      emitter.emit('error', toJobsError(error));
    } catch {
      // a listener that throws must not break the caller's loop
    }
  }

  /** Throw unless the client takes new calls. @internal */
  assertOpen(): void {
    if (this.closing !== undefined) {
      throw new ClosedError('the client is closed');
    }
  }

  /** Throw once the client has stopped (calls made before close() still finish). */
  private assertRunning(): void {
    if (this.stop.signal.aborted) {
      throw new ClosedError('the client is closed');
    }
  }
}
