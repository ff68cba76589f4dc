/**
 * Capped exponential backoff with jitter, and a sleep that an AbortSignal
 * cuts short.
 */

/** How long to wait before retrying after a failure. */
export interface BackoffOptions {
  /** First delay, in ms (default 100). */
  initialDelay?: number;
  /** Longest delay, in ms (default 5,000). */
  maxDelay?: number;
}

export class Backoff {
  private failures = 0;
  private readonly initial: number;
  private readonly max: number;

  constructor(options: BackoffOptions = {}) {
    this.initial = options.initialDelay ?? 100;
    this.max = options.maxDelay ?? 5_000;
  }

  /** The delay after one more failure: half to all of min(max, initial * 2^n). */
  next(): number {
    const ceiling = Math.min(this.max, this.initial * 2 ** Math.min(this.failures, 30));
    this.failures++;
    return ceiling / 2 + Math.random() * ceiling / 2;
  }

  /** How many failures in a row so far. */
  get attempts(): number {
    return this.failures;
  }

  reset(): void {
    this.failures = 0;
  }
}

/** A promise that resolves after ms, or at once when the signal aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) {
      resolve();
      return;
    }
    const timer = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
    function done(): void {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    }
  });
}
