/**
 * The process's one LISTEN connection: `LISTEN immich_jobs`, whose
 * notifications carry the name of a queue that has jobs or free slots
 * again.  It is open while at least one worker listens, and reopened with
 * backoff when it breaks.  Workers hear about every notification for their
 * queue, and about the connection going down (they then poll) and coming
 * back (they claim at once: notifications sent meanwhile were lost).
 */
import { Backoff, type BackoffOptions, sleep } from './backoff.js';
import type { Driver, ListenConnection } from './driver.js';

export const CHANNEL = 'immich_jobs';

/** What a worker is told. */
export interface Subscriber {
  /** A notification for the worker's queue arrived. */
  wake(): void;
  /** The connection is up (true) or down (false). */
  connection(up: boolean): void;
}

export class Listener {
  private readonly subscribers = new Map<string, Set<Subscriber>>();
  private connection: ListenConnection | undefined;
  private running = false;
  private stop = new AbortController();
  private loop: Promise<void> | undefined;
  private up = false;

  constructor(
    private readonly driver: Driver,
    private readonly report: (error: unknown) => void,
    private readonly backoffOptions: BackoffOptions,
  ) {}

  /** Is the LISTEN in effect now? */
  get connected(): boolean {
    return this.up;
  }

  /** Hear about a queue; returns the function that stops it. */
  subscribe(queue: string, subscriber: Subscriber): () => void {
    let set = this.subscribers.get(queue);
    if (set === undefined) {
      set = new Set();
      this.subscribers.set(queue, set);
    }
    set.add(subscriber);
    if (!this.running) {
      this.start();
    }
    return () => {
      set.delete(subscriber);
      if (set.size === 0) {
        this.subscribers.delete(queue);
      }
      if (this.subscribers.size === 0) {
        void this.close();
      }
    };
  }

  /** Close the connection (a later subscribe opens it again). */
  async close(): Promise<void> {
    if (!this.running) {
      return;
    }
    this.running = false;
    this.stop.abort();
    const connection = this.connection;
    this.connection = undefined;
    this.setUp(false);
    await connection?.close().catch(() => undefined);
    await this.loop;
  }

  private start(): void {
    this.running = true;
    this.stop = new AbortController();
    this.loop = this.run(this.stop.signal).catch((err: unknown) => this.report(err));
  }

  /** Connect, wait for the connection to end, and again, until closed. */
  private async run(signal: AbortSignal): Promise<void> {
    const backoff = new Backoff(this.backoffOptions);
    while (!signal.aborted) {
      let ended!: () => void;
      const closed = new Promise<void>((resolve) => { ended = resolve; });
      try {
        const connection = await this.driver.listen(CHANNEL, {
          notification: (payload) => this.dispatch(payload),
          closed: (error) => {
            this.report(error);
            ended();
          },
        });
        if (signal.aborted) {
          await connection.close();
          return;
        }
        this.connection = connection;
        backoff.reset();
        this.setUp(true);
        await Promise.race([closed, new Promise<void>((resolve) => {
          signal.addEventListener('abort', () => resolve(), { once: true });
        })]);
        this.connection = undefined;
        this.setUp(false);
        await connection.close().catch(() => undefined);
      } catch (err) {
        this.report(err);
      }
      if (!signal.aborted) {
        await sleep(backoff.next(), signal);
      }
    }
  }

  private dispatch(queue: string): void {
    for (const subscriber of this.subscribers.get(queue) ?? []) {
      subscriber.wake();
    }
  }

  private setUp(up: boolean): void {
    if (this.up === up) {
      return;
    }
    this.up = up;
    for (const set of [...this.subscribers.values()]) {
      for (const subscriber of set) {
        subscriber.connection(up);
      }
    }
  }
}
