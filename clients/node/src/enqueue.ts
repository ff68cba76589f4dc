/**
 * Enqueueing: checks a job before it is sent, and coalesces the single
 * enqueue() calls of a process into one statement per queue.
 *
 * Coalescing has no timer, so it adds no latency: the calls made in the
 * same synchronous stretch of code (a loop, a Promise.all), and those made
 * while the queue's previous statement is in flight, go in the next
 * statement (at most 1,000 jobs each, one statement in flight per queue); a
 * lone call is a batch of one.  Each job still goes through
 * immich_jobs.enqueue(), so each caller gets its own job's id (or, with a
 * dedup key, the id of the job that has it).  One transaction, one WAL
 * flush for them all: that is what makes many concurrent enqueues cheap.
 * If the statement fails for a reason of the database, the jobs are sent
 * again one at a time, so that only the bad job's caller gets the error.
 */
import type { JobsClient } from './client.js';
import { DatabaseError, InvalidArgumentError } from './errors.js';
import { ENQUEUE_EACH, ENQUEUE_EACH_MODE, readText } from './sql.js';

/** Options of one job. */
export interface EnqueueOptions {
  /** Higher runs first (default 0). */
  priority?: number;
  /** Not before this time (default: now). */
  runAt?: Date;
  /**
   * While a job of the queue with this key blocks it (see `dedupMode`),
   * enqueueing another with it adds nothing and returns that job's id.
   */
  dedupKey?: string;
  /**
   * Which jobs with the same `dedupKey` block a new one (default
   * 'unstarted'): 'unstarted', a job not yet started (waiting or delayed,
   * never leased); 'kept', a job waiting, delayed, active or failed, as
   * BullMQ's jobId does (needs immich_jobs 1.2; without it, nothing here
   * needs more than 1.1).
   */
  dedupMode?: DedupMode;
  /** Attempts before the job fails for good (default: the queue's). */
  maxAttempts?: number;
}

/** Which jobs with the same dedup key block a new one: see `EnqueueOptions.dedupMode`. */
export type DedupMode = 'unstarted' | 'kept';

/** A job to enqueue. */
export interface JobInput extends EnqueueOptions {
  /** What to do, for example 'AssetGenerateThumbnails' (1 to 255 bytes). */
  name: string;
  /** Any JSON value (default {}). */
  payload?: unknown;
}

const MAX_BATCH = 1_000;
const INT4_MAX = 2_147_483_647;

function invalid(message: string): InvalidArgumentError {
  return new InvalidArgumentError(message, '22023', undefined, undefined, undefined);
}

function checkText(what: string, value: unknown, required: boolean): void {
  if (value === undefined && !required) {
    return;
  }
  if (typeof value !== 'string') {
    throw invalid(`${what} must be a string`);
  }
  const bytes = Buffer.byteLength(value);
  if (bytes < 1 || bytes > 255) {
    throw invalid(`${what} must have 1 to 255 bytes`);
  }
}

/**
 * The JSON object immich_jobs.enqueue_many() takes for a job, as text.
 * Throws an InvalidArgumentError for what the database would refuse.
 */
export function jobJson(job: JobInput): string {
  checkText('name', job.name, true);
  checkText('dedupKey', job.dedupKey, false);
  if (job.priority !== undefined &&
    (!Number.isInteger(job.priority) || Math.abs(job.priority) > INT4_MAX)) {
    throw invalid('priority must be a 32-bit integer');
  }
  if (job.maxAttempts !== undefined &&
    (!Number.isInteger(job.maxAttempts) || job.maxAttempts < 1 || job.maxAttempts > 1000)) {
    throw invalid('maxAttempts must be an integer from 1 to 1000');
  }
  if (job.dedupMode !== undefined && job.dedupMode !== 'unstarted' && job.dedupMode !== 'kept') {
    throw invalid("dedupMode must be 'unstarted' or 'kept'");
  }
  if (job.runAt !== undefined && !(job.runAt instanceof Date && !Number.isNaN(job.runAt.getTime()))) {
    throw invalid('runAt must be a valid Date');
  }
  let payload: string | undefined;
  try {
    payload = JSON.stringify(job.payload ?? {});
  } catch (err) {
    throw invalid(`payload cannot be turned into JSON: ${(err as Error).message}`);
  }
  if (payload === undefined) {
    throw invalid('payload cannot be turned into JSON');
  }
  return `{"name":${JSON.stringify(job.name)},"payload":${payload}` +
    (job.priority !== undefined ? `,"priority":${job.priority}` : '') +
    (job.runAt !== undefined ? `,"run_at":${JSON.stringify(job.runAt.toISOString())}` : '') +
    (job.dedupKey !== undefined ? `,"dedup_key":${JSON.stringify(job.dedupKey)}` : '') +
    (keptDedup(job) ? ',"dedup_mode":"kept"' : '') +
    (job.maxAttempts !== undefined ? `,"max_attempts":${job.maxAttempts}` : '') + '}';
}

/**
 * The job asks for dedup mode 'kept' (with a key: without one the mode
 * means nothing).  Only then is the mode sent, so that everything else
 * works against a 1.1 server.
 */
export function keptDedup(job: EnqueueOptions): boolean {
  return job.dedupMode === 'kept' && job.dedupKey !== undefined;
}

interface Pending {
  readonly json: string;
  /** sent with dedup mode 'kept' */
  readonly kept: boolean;
  resolve(id: string): void;
  reject(error: unknown): void;
}

interface QueueState {
  pending: Pending[];
  sending: boolean;
  scheduled: boolean;
}

export class EnqueueBatcher {
  private readonly queues = new Map<string, QueueState>();
  private readonly inFlight = new Set<Promise<void>>();

  constructor(private readonly client: JobsClient) {}

  /** Enqueue one job; resolves to its id. */
  add(queue: string, job: JobInput): Promise<string> {
    let json: string;
    try {
      json = jobJson(job);
    } catch (err) {
      return Promise.reject(err);
    }
    let state = this.queues.get(queue);
    if (state === undefined) {
      state = { pending: [], sending: false, scheduled: false };
      this.queues.set(queue, state);
    }
    const result = new Promise<string>((resolve, reject) => {
      state.pending.push({ json, kept: keptDedup(job), resolve, reject });
    });
    this.schedule(queue, state);
    return result;
  }

  /** Wait for every enqueue made so far. */
  async drain(): Promise<void> {
    while (this.inFlight.size > 0 || [...this.queues.values()].some((s) => s.pending.length > 0)) {
      await Promise.all([...this.inFlight, new Promise((resolve) => setImmediate(resolve))]);
    }
  }

  private schedule(queue: string, state: QueueState): void {
    if (state.sending || state.scheduled) {
      return;
    }
    state.scheduled = true;
    queueMicrotask(() => {
      state.scheduled = false;
      this.send(queue, state);
    });
  }

  private send(queue: string, state: QueueState): void {
    if (state.sending || state.pending.length === 0) {
      return;
    }
    const batch = state.pending.splice(0, MAX_BATCH);
    state.sending = true;
    const done = this.sendBatch(queue, batch).finally(() => {
      this.inFlight.delete(done);
      state.sending = false;
      if (state.pending.length > 0) {
        this.send(queue, state);
      } else {
        this.queues.delete(queue);
      }
    });
    this.inFlight.add(done);
  }

  /**
   * Enqueue a batch in one statement.  If the database refuses it, send its
   * jobs again one at a time, so that only the bad job's caller fails.
   */
  private async sendBatch(queue: string, batch: Pending[]): Promise<void> {
    try {
      // the 8-argument enqueue() of 1.2 only for a batch that needs it
      const statement = batch.some((p) => p.kept) ? ENQUEUE_EACH_MODE : ENQUEUE_EACH;
      const rows = await this.client.run(statement,
        [queue, `[${batch.map((p) => p.json).join(',')}]`], 'idempotent');
      batch.forEach((p, i) => p.resolve(readText(rows[i]!, 'id')));
    } catch (err) {
      if (batch.length === 1 || !(err instanceof DatabaseError)) {
        batch.forEach((p) => p.reject(err));
        return;
      }
      await Promise.all(batch.map((p) => this.sendBatch(queue, [p])));
    }
  }
}
