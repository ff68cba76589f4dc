/**
 * Worker: runs a handler for the jobs of one queue, up to `concurrency` at
 * once, on the client's pool (it opens no connection of its own).
 *
 * The loop.  One statement, complete_and_claim, does the work: it completes
 * the jobs whose handlers have finished since the last call and claims jobs
 * for the free slots, reusing in the same transaction the slots that the
 * completions free.  Handlers that finish in the same turn of the event loop
 * go in the same call, which asks for every free slot.  A second call (up
 * to `callsInFlight`, 2) goes out while one is in flight when there are
 * new completions or free slots, so that a handler that ends does not wait
 * for a call that left just before.
 *
 * Waiting.  When a claim comes back with fewer jobs than it asked for, the
 * worker waits for a notification for its queue (LISTEN immich_jobs), or for
 * its poll timer.  A notification that arrives while that claim is in flight
 * is remembered, so none is lost between "the claim came back short" and
 * "start waiting".
 *
 * Leases.  Each running job is heartbeated when half of its lease is gone
 * (one timer for them all); if the lease was lost (reclaimed or cancelled)
 * its signal is aborted, and nothing is reported for it when its handler
 * ends.
 *
 * Failures.  A call that fails is retried with backoff, its completions
 * with it, and the failure is reported as an 'error' event: nothing a driver
 * throws escapes.  A call that gets no answer within its timeout (callTimeout,
 * and a third of the lease) fails the same way: postgres.js was seen to leave
 * a query unanswered for 10 s, or for good, after its sessions were
 * terminated, and a completion waiting behind it would outlive its lease.
 * Completions commit without waiting for the WAL flush
 * (unless synchronousLeaseCommit): after any connection failure the worker
 * sends the completions of the last client.resendWindow ms again (three
 * wal_writer_delay and a second), in case a server crash lost them; their
 * tokens make the repeats harmless.
 */
import { EventEmitter } from 'node:events';
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';

import { Backoff, sleep } from './backoff.js';
import type { JobsClient } from './client.js';
import { settleWithin } from './driver.js';
import type { Row, SqlValue } from './driver.js';
import { ClosedError, failureKind, InvalidArgumentError, JobsError } from './errors.js';
import * as sql from './sql.js';

/** Characters of a handler's error message sent with fail (at most 4 bytes each: under 64kB). */
const MAX_ERROR_CHARS = 8_000;

/** A job, as its handler gets it. */
export interface Job<P = unknown> {
  readonly id: string;
  readonly queue: string;
  readonly name: string;
  readonly payload: P;
  /** 1 on the first lease, +1 on each new one */
  readonly attempt: number;
  /**
   * Aborted when the worker no longer holds the job's lease: it was lost
   * (reclaimed after a long outage, or cancelled; the reason is a
   * LeaseLostError), or close() gave the job up (a ClosedError).
   */
  readonly signal: AbortSignal;
}

/** What runs a job: resolve to complete it, throw (reject) to fail it. */
export type Handler<P = unknown> = (job: Job<P>) => unknown;

/** Options of a worker; each has a default. */
export interface WorkerOptions {
  /** Jobs this worker runs at once (1 to 10,000; default 1). */
  concurrency?: number;
  /** The name leases are recorded under (default host:pid:queue:random). */
  workerId?: string;
  /** Calls to the database in flight at once (default 2). */
  callsInFlight?: number;
  /** How long close() waits for running jobs by default, in ms (default 10,000). */
  closeTimeout?: number;
}

/** The reason of a job's signal when its lease was lost. */
export class LeaseLostError extends JobsError {
  override readonly name: string = 'LeaseLostError';
}

/** What happened to a job whose handler threw. */
export type FailOutcome = 'retrying' | 'failed' | 'refused';

export interface Worker<P> {
  /** A call failed; the worker retries on its own.  Emitted only while someone listens. */
  on(event: 'error', listener: (error: JobsError) => void): this;
  /** A handler resolved (emitted only while someone listens). */
  on(event: 'completed', listener: (job: Job<P>) => void): this;
  /** A handler threw: the job is retrying, failed for good, or its lease was no longer ours. */
  on(event: 'failed', listener: (job: Job<P>, error: unknown, outcome: FailOutcome) => void): this;
  /** A completion was refused: the job's lease had been reclaimed or cancelled (it may run again). */
  on(event: 'refused', listener: (jobId: string) => void): this;
  /** A running job's lease was lost; its signal is aborted. */
  on(event: 'lost', listener: (job: Job<P>) => void): this;
  /** close() has finished. */
  on(event: 'closed', listener: () => void): this;
  on(event: string, listener: (...args: never[]) => void): this;
}

/** A job as the worker hands it out: its signal is made when first asked for. */
class RunningJob<P> implements Job<P> {
  private controller: AbortController | undefined;
  private reason: unknown;

  constructor(
    readonly id: string,
    readonly queue: string,
    readonly name: string,
    readonly payload: P,
    readonly attempt: number,
  ) {}

  get signal(): AbortSignal {
    if (this.controller === undefined) {
      this.controller = new AbortController();
      if (this.reason !== undefined) {
        this.controller.abort(this.reason);
      }
    }
    return this.controller.signal;
  }

  /** Abort the signal (once), whether or not anybody holds it yet. */
  abort(reason: unknown): void {
    if (this.reason === undefined) {
      this.reason = reason;
      this.controller?.abort(reason);
    }
  }
}

interface Running<P> {
  readonly job: RunningJob<P>;
  readonly token: string;
  /** local time a heartbeat is due: half of the lease gone */
  dueAt: number;
  /** local time the lease runs out */
  expiresAt: number;
  /** a heartbeat is in flight */
  beating: boolean;
  lost: boolean;
}

interface Completion {
  readonly id: string;
  readonly token: string;
  /** sent before, with an outcome we do not know: a refusal means nothing */
  readonly again: boolean;
}

/** Completions per call, at most. */
const MAX_COMPLETIONS = 1_000;

export class Worker<P = unknown> extends EventEmitter {
  readonly queue: string;
  readonly workerId: string;
  private concurrencyValue: number;
  private readonly maxCalls: number;
  private readonly closeTimeout: number;
  private readonly synchronous: boolean;
  /** the statements, made for this worker's commit setting once */
  private readonly statements: { claim: string; heartbeat: string; fail: string; release: string };

  /** the jobs whose handlers run, by lease token (a job may run twice, below) */
  private readonly running = new Map<string, Running<P>>();
  /** the lease this worker holds of each job, by job id */
  private readonly leases = new Map<string, Running<P>>();
  private done: Completion[] = [];
  /** completions answered lately, as the array literals they were sent as */
  private recent: { at: number; ids: string; tokens: string }[] = [];
  private calls = 0;
  private asked = 0;
  private idle = false;
  private wakeSeq = 0;
  private pumpScheduled = false;
  private pollTimer: NodeJS.Timeout | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private beatTimer: NodeJS.Timeout | undefined;
  private beatAt = Infinity;
  /** the shortest lease a claim or heartbeat has given this worker, in ms */
  private shortestLease = Infinity;
  private retryAt = 0;
  private readonly backoff: Backoff;
  private readonly ops = new Set<Promise<void>>();
  private readonly waiters = new Set<() => void>();
  private unsubscribe: (() => void) | undefined;
  private closing = false;
  private stopped = false;
  /** aborted when the worker has stopped: ends the sleeps of retries */
  private readonly stopping = new AbortController();
  private closed: Promise<void> | undefined;

  /** @internal use client.worker() */
  constructor(
    private readonly client: JobsClient,
    queue: string,
    private readonly handler: Handler<P>,
    options: WorkerOptions = {},
  ) {
    super();
    this.queue = queue;
    this.concurrencyValue = checkConcurrency(options.concurrency ?? 1);
    this.maxCalls = Math.max(1, options.callsInFlight ?? 2);
    this.closeTimeout = options.closeTimeout ?? 10_000;
    this.workerId = options.workerId ??
      `${hostname()}:${process.pid}:${queue}:${randomBytes(4).toString('hex')}`;
    this.synchronous = client.settings.synchronousLeaseCommit;
    this.statements = {
      claim: sql.completeAndClaim(this.synchronous),
      heartbeat: sql.heartbeat(this.synchronous),
      fail: sql.fail(this.synchronous),
      release: sql.release(this.synchronous),
    };
    this.backoff = new Backoff(client.settings.backoff);
    if (client.settings.listen) {
      this.unsubscribe = client.listener.subscribe(queue, {
        wake: () => this.wake(),
        connection: (up) => {
          if (up) {
            this.wake();
          } else {
            this.connectionTrouble();
            this.armPoll();
          }
        },
      });
    }
    this.schedulePump();
  }

  /** How many jobs this worker runs at once. */
  get concurrency(): number {
    return this.concurrencyValue;
  }

  /** Jobs whose handlers are running now. */
  get active(): number {
    return this.running.size;
  }

  /** Run up to `concurrency` jobs at once from now on (running jobs go on). */
  setConcurrency(concurrency: number): void {
    this.concurrencyValue = checkConcurrency(concurrency);
    this.idle = false;
    this.schedulePump();
  }

  /**
   * Stop claiming, wait up to `timeout` ms (default closeTimeout) for the
   * running jobs, give the others back (release: they run again without
   * losing an attempt), and send what is left to send (for at most as long
   * again).
   */
  close(options: { timeout?: number } = {}): Promise<void> {
    this.closed ??= this.shutdown(options.timeout ?? this.closeTimeout);
    return this.closed;
  }

  // ---- the loop ----------------------------------------------------------

  /**
   * A notification for the queue, or the LISTEN connection (re)opened:
   * the server is up, so a backoff in progress ends too.
   */
  private wake(): void {
    this.wakeSeq++;
    if (this.retryAt > 0) {
      this.retryAt = 0;
      clearTimeout(this.retryTimer);
      this.retryTimer = undefined;
      this.backoff.reset();
    }
    this.idle = false;
    this.schedulePump();
  }

  private schedulePump(): void {
    if (!this.pumpScheduled && !this.stopped) {
      this.pumpScheduled = true;
      setImmediate(() => this.pump());
    }
  }

  /** Send what there is to send, as far as the calls in flight allow. */
  private pump(): void {
    this.pumpScheduled = false;
    while (!this.stopped && this.calls < this.maxCalls) {
      if (this.retryAt > Date.now()) {
        this.armRetry();
        return;
      }
      const free = this.closing ? 0 :
        Math.max(0, this.concurrencyValue - this.running.size - this.asked);
      const haveCompletions = this.done.length > 0;
      // with completions, always claim: they free slots the claim may reuse
      const ask = this.idle && !haveCompletions ? 0 : free;
      // completions alone wait for the call in flight, and go with the next
      if (ask === 0 && (!haveCompletions || this.calls > 0)) {
        return;
      }
      this.call(this.done.splice(0, MAX_COMPLETIONS), ask);
    }
  }

  private call(completions: Completion[], ask: number): void {
    const seq = this.wakeSeq;
    const ids = sql.bigintArray(completions.map((c) => c.id));
    const tokens = sql.bigintArray(completions.map((c) => c.token));
    this.calls++;
    this.asked += ask;
    this.leaseCall(this.statements.claim, [this.queue, this.workerId, ask, ids, tokens]).then(
      (rows) => {
        this.calls--;
        this.asked -= ask;
        this.remember(ids, tokens);
        this.answered(completions, ask, seq, rows);
      },
      (err: unknown) => this.callFailed(completions, ask, err),
    ).catch((err: unknown) => this.client.report(err, this));
  }

  private answered(completions: Completion[], ask: number, seq: number, rows: Row[]): void {
    this.backoff.reset();
    this.retryAt = 0;
    const { jobs, refused } = sql.readClaim(rows);
    if (refused.length > 0) {
      const again = new Set(completions.filter((c) => c.again).map((c) => c.id));
      for (const id of refused) {
        if (!again.has(id)) {
          this.emitSafely('refused', id);
        }
      }
    }
    for (const job of jobs) {
      this.start(job);
    }
    if (ask > 0) {
      // short: the queue is empty, full or paused, unless somebody woke us
      this.idle = jobs.length < ask && this.wakeSeq === seq;
      if (this.idle) {
        this.armPoll();
      }
    }
    this.changed();
    this.pump();
  }

  private callFailed(completions: Completion[], ask: number, err: unknown): void {
    this.calls--;
    this.asked -= ask;
    const kind = failureKind(err);
    // only a statement whose connection broke under it may have committed
    const requeue = kind === 'connection' ?
      completions.map((c) => ({ ...c, again: true })) : completions;
    this.done = requeue.concat(this.done);
    if (kind !== 'database') {
      this.connectionTrouble();
    }
    this.client.report(err, this);
    this.retryAt = Date.now() + this.backoff.next();
    this.changed();
    this.armRetry();
  }

  /** Keep confirmed completions for a while, in case a crash loses them. */
  private remember(ids: string, tokens: string): void {
    if (this.synchronous) {
      return;
    }
    const now = Date.now();
    const window = this.client.resendWindow;
    while (this.recent.length > 0 && this.recent[0]!.at < now - window) {
      this.recent.shift();
    }
    if (ids !== '{}') {
      this.recent.push({ at: now, ids, tokens });
    }
  }

  /**
   * A connection failed (this worker's, the LISTEN connection, an idle one
   * of the pool): the server may have crashed and lost the completions it
   * had not flushed yet.  Send those of the last resendWindow ms again.
   * @internal
   */
  connectionTrouble(): void {
    const since = Date.now() - this.client.resendWindow;
    for (const r of this.recent) {
      if (r.at >= since) {
        const ids = r.ids.slice(1, -1).split(',');
        const tokens = r.tokens.slice(1, -1).split(',');
        ids.forEach((id, i) => this.done.push({ id, token: tokens[i]!, again: true }));
      }
    }
    this.recent = [];
    this.schedulePump();
  }

  private armRetry(): void {
    if (this.retryTimer !== undefined || this.stopped) {
      return;
    }
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      this.pump();
    }, Math.max(0, this.retryAt - Date.now()));
  }

  private armPoll(): void {
    if (this.stopped || this.closing) {
      return;
    }
    clearTimeout(this.pollTimer);
    const listening = this.client.settings.listen && this.client.listener.connected;
    this.pollTimer = setTimeout(() => {
      this.pollTimer = undefined;
      this.idle = false;
      this.pump();
    }, listening ? this.client.settings.listenPollInterval : this.client.settings.pollInterval);
  }

  // ---- jobs --------------------------------------------------------------

  private start(leased: sql.LeasedJob): void {
    if (this.closing) {
      // claimed by a call sent before close(): give it back unrun
      this.track(this.release(leased.id, leased.token));
      return;
    }
    const job = new RunningJob<P>(leased.id, this.queue, leased.name, leased.payload as P,
      leased.attempt);
    const running: Running<P> = {
      job, token: leased.token, dueAt: 0, expiresAt: 0, beating: false, lost: false,
    };
    // leased again while its handler still runs: the old lease was
    // reclaimed (a long outage) before a heartbeat could tell
    const old = this.leases.get(job.id);
    if (old !== undefined && !old.lost) {
      this.lose(old);
    }
    this.leases.set(job.id, running);
    this.running.set(running.token, running);
    this.leaseRenewed(running, leased.leaseMs);
    let result: unknown;
    try {
      result = this.handler(job);
    } catch (err) {
      result = Promise.reject(err);
    }
    Promise.resolve(result).then(
      () => this.finished(running, undefined),
      (err: unknown) => this.finished(running, err ?? new Error('the handler rejected without a reason')),
    ).catch((err: unknown) => this.client.report(err, this));
  }

  private finished(running: Running<P>, error: unknown): void {
    const { job } = running;
    if (!this.running.delete(running.token)) {
      return; // given up by close()
    }
    if (this.leases.get(job.id) === running) {
      this.leases.delete(job.id);
    }
    if (!running.lost) {
      if (error === undefined) {
        this.done.push({ id: job.id, token: running.token, again: false });
        if (this.listenerCount('completed') > 0) {
          this.emitSafely('completed', job);
        }
      } else {
        this.track(this.fail(running, error));
      }
    }
    this.changed();
    this.schedulePump();
  }

  private async fail(running: Running<P>, error: unknown): Promise<void> {
    // the server refuses an error text over immich_jobs.max_error_size
    // (64kB by default): keep the start of a long one
    const full = error instanceof Error ? error.message : String(error);
    const message = full.length > MAX_ERROR_CHARS ? `${full.slice(0, MAX_ERROR_CHARS)}…` : full;
    const rows = await this.retrying(this.statements.fail,
      [running.job.id, running.token, message]);
    if (rows !== undefined) {
      const outcome = rows[0]?.['outcome'];
      this.emitSafely('failed', running.job, error,
        outcome === 'retrying' || outcome === 'failed' ? outcome : 'refused');
    }
  }

  private async release(id: string, token: string): Promise<void> {
    await this.retrying(this.statements.release, [id, token]);
  }

  // ---- heartbeats: one timer for every running job -----------------------

  /** The lease was renewed (or taken) with leaseMs left: beat at half of it. */
  private leaseRenewed(running: Running<P>, leaseMs: number): void {
    this.shortestLease = Math.min(this.shortestLease, leaseMs);
    const now = Date.now();
    running.expiresAt = now + leaseMs;
    this.beatLater(running, now + leaseMs / 2);
  }

  private beatLater(running: Running<P>, at: number): void {
    running.dueAt = at;
    if (at < this.beatAt) {
      clearTimeout(this.beatTimer);
      this.beatAt = at;
      this.beatTimer = setTimeout(() => this.beatDue(), Math.max(0, at - Date.now()));
    }
  }

  /** Heartbeat every job that is due (or nearly), and wait for the next. */
  private beatDue(): void {
    this.beatTimer = undefined;
    this.beatAt = Infinity;
    const now = Date.now();
    let next = Infinity;
    for (const running of this.running.values()) {
      if (running.lost || running.beating) {
        continue;
      }
      if (running.dueAt <= now + 1_000) {
        this.beat(running);
      } else {
        next = Math.min(next, running.dueAt);
      }
    }
    if (next !== Infinity) {
      this.beatAt = next;
      this.beatTimer = setTimeout(() => this.beatDue(), Math.max(0, next - now));
    }
  }

  private beat(running: Running<P>): void {
    running.beating = true;
    const current = (): boolean => this.running.get(running.token) === running && !running.lost;
    this.leaseCall(this.statements.heartbeat, [running.job.id, running.token]).then(
      (rows) => {
        running.beating = false;
        if (!current()) {
          return;
        }
        const leaseMs = rows[0] === undefined ? undefined : sql.optionalNumber(rows[0], 'lease_ms');
        if (leaseMs === undefined) {
          this.lose(running);
        } else {
          this.leaseRenewed(running, leaseMs);
        }
      },
      (err: unknown) => {
        running.beating = false;
        this.client.report(err, this);
        if (failureKind(err) !== 'database') {
          this.connectionTrouble();
        }
        if (current()) {
          // try again soon: before the lease runs out, and after it too
          const left = running.expiresAt - Date.now();
          this.beatLater(running, Date.now() + Math.min(this.backoff.next(), Math.max(100, left / 4)));
        }
      },
    ).catch((err: unknown) => this.client.report(err, this));
  }

  private lose(running: Running<P>): void {
    running.lost = true;
    running.job.abort(new LeaseLostError(
      `the lease of job ${running.job.id} was lost: it was reclaimed or cancelled`));
    this.emitSafely('lost', running.job);
  }

  /**
   * Run a lease statement until it gets an answer from the database:
   * connection failures are retried with backoff (until the worker has
   * stopped); a database error is reported.  Resolves to the rows, or to
   * undefined when it gave up.
   */
  private async retrying(text: string, values: readonly SqlValue[]): Promise<Row[] | undefined> {
    const backoff = new Backoff(this.client.settings.backoff);
    for (;;) {
      try {
        return await this.leaseCall(text, values);
      } catch (err) {
        this.client.report(err, this);
        if (failureKind(err) === 'database' || this.stopped) {
          return undefined;
        }
        this.connectionTrouble();
        await sleep(backoff.next(), this.stopping.signal);
      }
    }
  }

  /**
   * Run a lease statement, waiting for its answer callTimeout ms at most,
   * and a third of the shortest lease this worker was given: a statement
   * left unanswered fails as a broken connection would (QUERY_TIMEOUT), and
   * is sent again, so that a completion still lands within its lease.  The
   * driver is asked to keep to it; the worker enforces it whatever the driver.
   */
  private leaseCall(text: string, values: readonly SqlValue[]): Promise<Row[]> {
    const timeout = Math.min(this.client.settings.callTimeout,
      Math.max(1_000, Math.floor(this.shortestLease / 3)));
    return settleWithin(() => this.client.driver.query(text, values, { timeout }), timeout);
  }

  private track(op: Promise<void>): void {
    const tracked = op.catch((err: unknown) => this.client.report(err, this)).finally(() => {
      this.ops.delete(tracked);
      this.changed();
    });
    this.ops.add(tracked);
  }

  // ---- closing -----------------------------------------------------------

  private async shutdown(timeout: number): Promise<void> {
    this.closing = true;
    this.unsubscribe?.();
    clearTimeout(this.pollTimer);
    this.schedulePump();

    // the running jobs, for up to timeout ms
    await this.waitFor(() => this.running.size === 0, Date.now() + timeout);
    clearTimeout(this.beatTimer);
    for (const running of this.running.values()) {
      running.job.abort(new ClosedError(`the worker closed before job ${running.job.id} finished`));
      if (!running.lost) {
        this.track(this.release(running.job.id, running.token));
      }
    }
    this.running.clear();
    this.leases.clear();

    // what is left to send, for up to timeout ms more
    this.schedulePump();
    const sent = await this.waitFor(
      () => this.done.length === 0 && this.calls === 0 && this.ops.size === 0,
      Date.now() + timeout);
    this.stopped = true;
    this.stopping.abort();
    clearTimeout(this.retryTimer);
    if (!sent) {
      this.client.report(new JobsError(
        `worker ${this.workerId} closed with ${this.done.length} completions unsent: ` +
        'their leases will expire and the jobs run again'), this);
    }
    this.emitSafely('closed');
  }

  /** Resolve true once cond() holds, or false at the deadline. */
  private async waitFor(cond: () => boolean, deadline: number): Promise<boolean> {
    while (!cond()) {
      const left = deadline - Date.now();
      if (left <= 0) {
        return false;
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, left);
        this.waiters.add(done);
        function done(): void {
          clearTimeout(timer);
          resolve();
        }
      });
    }
    return true;
  }

  /** Something closing waits for may have changed. */
  private changed(): void {
    if (this.waiters.size === 0) {
      return;
    }
    const waiters = [...this.waiters];
    this.waiters.clear();
    for (const waiter of waiters) {
      waiter();
    }
  }

  private emitSafely(event: string, ...args: unknown[]): void {
    try {
      this.emit(event, ...args);
    } catch (err) {
      // a listener threw: report it, never let it break the loop
      this.client.report(err, this);
    }
  }
}

function checkConcurrency(concurrency: number): number {
  if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 10_000) {
    throw new InvalidArgumentError('concurrency must be an integer from 1 to 10000', '22023',
      undefined, undefined, undefined);
  }
  return concurrency;
}
