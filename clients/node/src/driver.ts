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

/** Something statements can be run on. */
export interface Queryable {
  /**
   * Run one statement with parameters `$1`, `$2`, ... and return its rows.
   * Outside `transaction`, on any connection of the pool, in a transaction
   * of its own.  Rejects with what the driver threw.
   */
  query(text: string, values: readonly SqlValue[]): Promise<Row[]>;
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
