/**
 * The postgres.js driver: `import { postgresDriver } from 'immich-jobs/postgres'`.
 */
import postgres from 'postgres';

import { QueryTimeoutError, settleWithin } from './driver.js';
import type { Driver, ListenCallbacks, ListenConnection, Queryable, Row, SqlValue } from './driver.js';

/** Options of `postgresDriver`. */
export interface PostgresDriverOptions {
  /**
   * A postgres.js instance to run the statements on (Immich's own, for
   * example): it is used as it is and never ended by the driver.  Without
   * it the driver opens its own from `url` and `options`.
   */
  sql?: postgres.Sql;
  /** A connection URL for the instance the driver opens. */
  url?: string;
  /** postgres.js options for the instance the driver opens (and the LISTEN connection). */
  options?: postgres.Options<Record<string, postgres.PostgresType>>;
}

/** Defaults for an instance the driver opens. */
const DEFAULTS: postgres.Options<Record<string, postgres.PostgresType>> = {
  max: 4,
  connect_timeout: 10,
  idle_timeout: 30,
  // postgres.js waits up to 20 s before it reconnects after failures in a
  // row; the client has a backoff of its own, so reconnect when asked
  backoff: () => 0,
  connection: { application_name: 'immich_jobs' },
  onnotice: () => undefined,
  // the client sends and reads only text and numbers, so it needs no array
  // types; and postgres.js fetches them on each new connection without
  // handling the query's failure: a connection terminated during that
  // query is an unhandled rejection
  fetch_types: false,
};

/**
 * At most `size` calls at once; the others wait their turn, in order.
 *
 * postgres.js queues the queries it has no free connection for itself; when
 * its sessions are terminated while such a queue is long, the pool was seen
 * to fail every query for 10 to 20 s, and to leave some never settled.
 * Keeping the queue on our side, never handing it more calls than it has
 * connections, lets it recover within about a second.
 */
class Gate {
  private free: number;
  private readonly waiting: (() => void)[] = [];

  constructor(size: number) {
    this.free = Math.max(1, size);
  }

  /**
   * Run fn() when a place is free.  With a timeout (counted from this call),
   * a call still waiting for a place when it has passed is not run at all,
   * and a call that runs gives its place back once it has passed even if
   * fn() has not settled: a query postgres.js never answers must not keep
   * it.
   */
  async run<T>(fn: () => Promise<T>, timeout?: number): Promise<T> {
    const deadline = timeout === undefined ? Infinity : Date.now() + timeout;
    if (this.free > 0) {
      this.free--;
    } else {
      await new Promise<void>((resolve, reject) => {
        const waiter = (): void => {
          clearTimeout(timer);
          resolve();
        };
        const timer = deadline === Infinity ? undefined : setTimeout(() => {
          const at = this.waiting.indexOf(waiter);
          if (at >= 0) {
            this.waiting.splice(at, 1);
            reject(new QueryTimeoutError(timeout ?? 0));
          }
        }, Math.max(0, deadline - Date.now()));
        this.waiting.push(waiter);
      });
    }
    try {
      return await settleWithin(fn, deadline === Infinity ? undefined : deadline - Date.now());
    } finally {
      const next = this.waiting.shift();
      if (next !== undefined) {
        next();
      } else {
        this.free++;
      }
    }
  }
}

/**
 * A driver on a postgres.js instance (its own, with at most 4 connections
 * unless `options.max` says otherwise, or the one given as `sql`), plus one
 * LISTEN connection when the client listens.
 */
export function postgresDriver(given: PostgresDriverOptions = {}): Driver {
  const options = { ...DEFAULTS, ...given.options };
  const owned = given.sql === undefined;
  const sql = given.sql ?? (given.url !== undefined ? postgres(given.url, options) : postgres(options));
  // prepared statements unless the instance says otherwise (prepare: false,
  // for PgBouncer in transaction mode)
  const prepare = sql.options.prepare !== false;

  const run = async (runner: postgres.Sql | postgres.TransactionSql, text: string,
    values: readonly SqlValue[]): Promise<Row[]> => {
    const rows = await runner.unsafe(text, values as postgres.ParameterOrJSON<never>[], { prepare });
    return rows as unknown as Row[];
  };

  const gate = new Gate(sql.options.max);

  return {
    maxConnections: sql.options.max,

    // (no cancel of a query that timed out: postgres.js 3.4.9's cancel()
    // drops the promise of its cancel request, whose failure, the server
    // being away, would be an unhandled rejection)
    query: (text, values, queryOptions) =>
      gate.run(() => run(sql, text, values), queryOptions?.timeout),

    async transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T> {
      const result = await gate.run(
        () => sql.begin((tx) => fn({ query: (text, values) => run(tx, text, values) })));
      return result as T;
    },

    async listen(channel: string, callbacks: ListenCallbacks): Promise<ListenConnection> {
      // a connection of its own, so that its state is ours to watch
      let ready = false;
      let closed = false;
      const listener = given.url !== undefined
        ? postgres(given.url, listenOptions())
        : postgres(listenOptions());
      function listenOptions(): postgres.Options<Record<string, postgres.PostgresType>> {
        const base = given.sql !== undefined ? { ...optionsOf(given.sql), ...given.options } : options;
        return {
          ...(base as postgres.Options<Record<string, postgres.PostgresType>>),
          max: 1,
          idle_timeout: 0,
          max_lifetime: null,
          fetch_types: false,
          onnotify: (name: string, payload: string) => {
            if (name === channel) {
              callbacks.notification(payload);
            }
          },
          onclose: () => {
            if (ready && !closed) {
              closed = true;
              callbacks.closed(new Error('the LISTEN connection closed'));
            }
          },
        } as postgres.Options<Record<string, postgres.PostgresType>>;
      }
      try {
        await listener.unsafe(`LISTEN "${channel.replace(/"/g, '""')}"`);
      } catch (err) {
        listener.end({ timeout: 0 }).catch(() => undefined);
        throw err;
      }
      ready = true;
      return {
        async close(): Promise<void> {
          closed = true;
          await listener.end({ timeout: 1 }).catch(() => undefined);
        },
      };
    },

    async end(): Promise<void> {
      if (owned) {
        await sql.end({ timeout: 1 });
      }
    },
  };
}

/**
 * The options a postgres.js instance was opened with, to open another
 * connection like its own (without its shared, per-instance state).
 */
function optionsOf(sql: postgres.Sql): Record<string, unknown> {
  const { shared: _shared, parameters: _parameters, ...rest } =
    sql.options as unknown as Record<string, unknown>;
  return rest;
}
