/**
 * The postgres.js driver: `import { postgresDriver } from 'immich-jobs/postgres'`.
 */
import postgres from 'postgres';

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

  return {
    maxConnections: sql.options.max,

    query: (text, values) => run(sql, text, values),

    async transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T> {
      const result = await sql.begin((tx) => fn({ query: (text, values) => run(tx, text, values) }));
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
