/**
 * The small interface between the client and a PostgreSQL driver.  Two
 * implementations ship with the package: `immich-jobs/pg` (node-postgres)
 * and `immich-jobs/postgres` (postgres.js).
 *
 * The client sends every parameter as text or a number (arrays and JSON as
 * their text forms, cast in the statement) and reads only text, int4,
 * float8 and boolean columns, so the drivers' type conversions never matter.
 */

/** A parameter value. */
export type SqlValue = string | number | boolean | null;

/** A result row: column name to value. */
export type Row = Record<string, unknown>;

/** Options of one call. */
export interface QueryOptions {
  /**
   * Stop waiting for the answer after this many ms, counted from the call
   * (waiting for a connection of the pool included): the call rejects with
   * an error whose `code` is `QUERY_TIMEOUT` (a connection failure after
   * which the statement may still run, or have run).  The postgres.js
   * driver then gives the call's place in its pool to the next call, and
   * does not send at all a call whose time ran out while it waited for a
   * place; node-postgres's pool keeps the connection until the query
   * settles.  Workers set it on their lease statements: postgres.js
   * was seen to leave a query unanswered for 10 s, or for good, after its
   * sessions were terminated.  The client enforces it for any driver too.
   */
  timeout?: number;
}

/** Something statements can be run on. */
export interface Queryable {
  /**
   * Run one statement with parameters `$1`, `$2`, ... and return its rows.
   * Outside `transaction`, on any connection of the pool, in a transaction
   * of its own.  Rejects with what the driver threw.
   */
  query(text: string, values: readonly SqlValue[], options?: QueryOptions): Promise<Row[]>;
}

/** Called by a LISTEN connection. */
export interface ListenCallbacks {
  /** A notification arrived on the channel. */
  notification(payload: string): void;
  /** The connection ended (after `listen` resolved); called once. */
  closed(error: unknown): void;
}

/** A connection that listens on a channel. */
export interface ListenConnection {
  /** Stop listening and close the connection. */
  close(): Promise<void>;
}

/** A PostgreSQL driver, as the client needs it. */
export interface Driver extends Queryable {
  /** The most connections `query` and `transaction` open at once. */
  readonly maxConnections: number;
  /** Run `fn` in a transaction on one connection; commit if it resolves. */
  transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T>;
  /**
   * Open one more connection and LISTEN on `channel`.  Resolves once the
   * LISTEN is in effect; rejects if that fails (the client retries).
   */
  listen(channel: string, callbacks: ListenCallbacks): Promise<ListenConnection>;
  /** Called with errors that the driver reports outside any call (an idle connection that broke). */
  onBackgroundError?: ((error: unknown) => void) | undefined;
  /** Close every connection this driver opened. */
  end(): Promise<void>;
}

/** The error of a call that got no answer within its `timeout`. */
export class QueryTimeoutError extends Error {
  override readonly name: string = 'QueryTimeoutError';
  readonly code = 'QUERY_TIMEOUT';

  constructor(timeout: number) {
    super(`no answer from the database within ${timeout} ms`);
  }
}

/**
 * `run()`, or a QueryTimeoutError once `timeout` ms have passed without its
 * answer (which is then dropped).  Without a timeout, `run()` itself.
 */
export function settleWithin<T>(run: () => Promise<T>, timeout: number | undefined): Promise<T> {
  if (timeout === undefined || !Number.isFinite(timeout)) {
    return run();
  }
  if (!(timeout > 0)) {
    return Promise.reject(new QueryTimeoutError(0));
  }
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new QueryTimeoutError(timeout)), timeout);
    let promise: Promise<T>;
    try {
      promise = run();
    } catch (err) {
      clearTimeout(timer);
      reject(err);
      return;
    }
    promise.then(
      (value) => { clearTimeout(timer); resolve(value); },
      (err: unknown) => { clearTimeout(timer); reject(err); },
    );
  });
}
