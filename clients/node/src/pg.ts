/**
 * The node-postgres (`pg`) driver: `import { pgDriver } from 'immich-jobs/pg'`.
 */
import pg from 'pg';

import { settleWithin } from './driver.js';
import type { Driver, ListenCallbacks, ListenConnection, Queryable, Row, SqlValue } from './driver.js';

/** Options of `pgDriver`: a `pg.Pool`'s, or a pool of your own. */
export interface PgDriverOptions extends pg.PoolConfig {
  /**
   * A pool to run the statements on instead of one the driver opens.  The
   * driver then neither configures nor ends it; it adds an `error` listener
   * so that a broken idle connection cannot crash the process.  The LISTEN
   * connection is opened with `listenConfig`, or with the pool's options.
   */
  pool?: pg.Pool;
  /** Connection options of the LISTEN connection (default: the pool's). */
  listenConfig?: pg.ClientConfig;
  /**
   * Use named prepared statements (default true).  Turn it off behind
   * PgBouncer in transaction mode older than 1.21 or without
   * max_prepared_statements.
   */
  prepare?: boolean;
}

/** Defaults for a pool the driver opens. */
const POOL_DEFAULTS: pg.PoolConfig = {
  max: 4,
  connectionTimeoutMillis: 10_000,
  idleTimeoutMillis: 30_000,
  application_name: 'immich_jobs',
};

/** Statement names for prepared statements, one per distinct text. */
class StatementNames {
  private readonly names = new Map<string, string>();

  get(text: string): string {
    let name = this.names.get(text);
    if (name === undefined) {
      name = `immich_jobs_${this.names.size + 1}`;
      this.names.set(text, name);
    }
    return name;
  }
}

/**
 * A driver on a node-postgres pool (4 connections unless `max` says
 * otherwise), plus one LISTEN connection when the client listens.
 */
export function pgDriver(options: PgDriverOptions = {}): Driver {
  const { pool: given, listenConfig, prepare = true, ...config } = options;
  const owned = given === undefined;
  const pool = given ?? new pg.Pool({ ...POOL_DEFAULTS, ...config });
  const names = new StatementNames();
  const clientConfig: pg.ClientConfig = listenConfig ?? (given?.options ?? { ...POOL_DEFAULTS, ...config });

  const query = async (runner: pg.Pool | pg.PoolClient, text: string,
    values: readonly SqlValue[]): Promise<Row[]> => {
    const result = await runner.query<Row>(prepare ?
      { name: names.get(text), text, values: values as SqlValue[] } :
      { text, values: values as SqlValue[] });
    return result.rows;
  };

  const driver: Driver = {
    maxConnections: pool.options.max ?? 10,

    query: (text, values, queryOptions) =>
      settleWithin(() => query(pool, text, values), queryOptions?.timeout),

    async transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T> {
      const client = await pool.connect();
      let broken: unknown;
      try {
        await client.query('BEGIN');
        const result = await fn({ query: (text, values) => query(client, text, values) });
        await client.query('COMMIT');
        return result;
      } catch (err) {
        broken = err;
        try {
          await client.query('ROLLBACK');
          broken = undefined;
        } catch {
          // the connection is gone: release() below destroys it
        }
        throw err;
      } finally {
        client.release(broken !== undefined ? toError(broken) : undefined);
      }
    },

    async listen(channel: string, callbacks: ListenCallbacks): Promise<ListenConnection> {
      const client = new pg.Client(clientConfig);
      let ready = false;
      let closed = false;
      const onClose = (error: unknown): void => {
        if (ready && !closed) {
          closed = true;
          callbacks.closed(error);
        }
      };
      // until connect() resolves, errors reject it; after, they end the listener
      client.on('error', (err) => onClose(err));
      client.on('end', () => onClose(new Error('the LISTEN connection ended')));
      client.on('notification', (msg) => {
        if (msg.channel === channel) {
          callbacks.notification(msg.payload ?? '');
        }
      });
      try {
        await client.connect();
        await client.query(`LISTEN ${pg.escapeIdentifier(channel)}`);
      } catch (err) {
        client.end().catch(() => undefined);
        throw err;
      }
      ready = true;
      return {
        async close(): Promise<void> {
          closed = true;
          await client.end().catch(() => undefined);
        },
      };
    },

    async end(): Promise<void> {
      if (owned) {
        await pool.end();
      }
    },
  };

  // an idle connection that breaks (a server restart) emits 'error' on the
  // pool: without a listener that would end the process
  pool.on('error', (err) => driver.onBackgroundError?.(err));
  return driver;
}

function toError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}
