/**
 * The errors this package throws, and how it tells a connection problem
 * (retried on its own) from an error of the database (passed on).
 */

/** The base class of every error this package throws. */
export class JobsError extends Error {
  override readonly name: string = 'JobsError';

  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/**
 * The database refused a call: bad input, an unknown queue, and so on.
 * `code` is the SQLSTATE (for example `42704` for an unknown queue; the
 * README's Errors table lists them).
 */
export class DatabaseError extends JobsError {
  override readonly name: string = 'DatabaseError';
  /** The SQLSTATE of the error. */
  readonly code: string;
  /** PostgreSQL's DETAIL, if any. */
  readonly detail: string | undefined;
  /** PostgreSQL's HINT, if any. */
  readonly hint: string | undefined;

  constructor(message: string, code: string, detail: string | undefined,
    hint: string | undefined, cause: unknown) {
    super(message, { cause });
    this.code = code;
    this.detail = detail;
    this.hint = hint;
  }
}

/** SQLSTATE 42704: the queue (or the job, for `cancel`) does not exist. */
export class NotFoundError extends DatabaseError {
  override readonly name: string = 'NotFoundError';
}

/** SQLSTATE 22023 or 22004: an argument is out of range, malformed or null. */
export class InvalidArgumentError extends DatabaseError {
  override readonly name: string = 'InvalidArgumentError';
}

/** SQLSTATE 42710: `create` of a queue that exists (without `ifNotExists`). */
export class QueueExistsError extends DatabaseError {
  override readonly name: string = 'QueueExistsError';
}

/** SQLSTATE 55006: `drop` of a queue with active jobs (without `force`). */
export class QueueInUseError extends DatabaseError {
  override readonly name: string = 'QueueInUseError';
}

/**
 * The connection to the database failed: it could not be opened, the server
 * restarted, the session was terminated, the network broke.  Workers retry
 * on their own and report these as `error` events; calls of a queue handle
 * retry while the statement certainly did not run, and throw this error when
 * it may have (`maybeApplied`) or when `operationTimeout` has passed.
 */
export class ConnectionError extends JobsError {
  override readonly name: string = 'ConnectionError';
  /** True when the statement may have run before the connection broke. */
  readonly maybeApplied: boolean;

  constructor(message: string, maybeApplied: boolean, cause: unknown) {
    super(message, { cause });
    this.maybeApplied = maybeApplied;
  }
}

/** The client (or the worker) was closed. */
export class ClosedError extends JobsError {
  override readonly name: string = 'ClosedError';
}

/** How a failure of a statement is handled. */
export type FailureKind =
  /** the statement was never sent: safe to retry anything */
  | 'connect'
  /** the connection broke while the statement ran: it may have committed */
  | 'connection'
  /** the database answered with an error */
  | 'database';

const CONNECT_CODES = new Set([
  'ECONNREFUSED', 'ENOENT', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN',
  'ENOTFOUND', 'CONNECT_TIMEOUT',
  '57P03', // cannot_connect_now: starting up, shutting down, in recovery
  '53300', // too_many_connections
  '08001', '08004', // could not connect, connection rejected
]);

const CONNECTION_CODES = new Set([
  'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'ECONNABORTED',
  'CONNECTION_CLOSED', 'CONNECTION_DESTROYED', 'CONNECTION_ENDED',
  'QUERY_TIMEOUT', // no answer within a call's timeout (driver.ts)
  '57P01', // admin_shutdown: pg_terminate_backend, a fast shutdown
  '57P02', // crash_shutdown: another backend crashed
  '57P05', // idle_session_timeout
]);

function codeOf(err: unknown): string | undefined {
  if (typeof err !== 'object' || err === null) {
    return undefined;
  }
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' ? code : undefined;
}

function messageOf(err: unknown): string {
  if (err instanceof Error) {
    return err.message;
  }
  return String(err);
}

/** Is this a SQLSTATE (five characters of digits and capital letters)? */
function isSqlState(code: string | undefined): code is string {
  return code !== undefined && /^[0-9A-Z]{5}$/.test(code);
}

/** Classify what a driver threw. */
export function failureKind(err: unknown): FailureKind {
  const code = codeOf(err);
  if (code !== undefined && CONNECT_CODES.has(code)) {
    return 'connect';
  }
  if (code !== undefined && (CONNECTION_CODES.has(code) || code.startsWith('08'))) {
    return 'connection';
  }
  if (isSqlState(code)) {
    return 'database';
  }
  const message = messageOf(err);
  // node-postgres: pool connect timeout, a connect on a closed socket
  if (/timeout exceeded when trying to connect|connect E[A-Z]+/i.test(message)) {
    return 'connect';
  }
  // anything else without a SQLSTATE is the connection's: node-postgres's
  // "Connection terminated unexpectedly", a TypeError from inside a driver
  // that lost its connection, and so on
  return 'connection';
}

/**
 * Turn what a driver threw into this package's error.  `retryable`
 * connection failures keep their kind in `maybeApplied`.
 */
export function toJobsError(err: unknown): JobsError {
  if (err instanceof JobsError) {
    return err;
  }
  const kind = failureKind(err);
  if (kind !== 'database') {
    return new ConnectionError(`connection to the database failed: ${messageOf(err)}`,
      kind === 'connection', err);
  }
  const e = err as { code: string; detail?: unknown; hint?: unknown };
  const detail = typeof e.detail === 'string' ? e.detail : undefined;
  const hint = typeof e.hint === 'string' ? e.hint : undefined;
  const message = messageOf(err);
  switch (e.code) {
    case '42704':
      return new NotFoundError(message, e.code, detail, hint, err);
    case '22023':
    case '22004':
      return new InvalidArgumentError(message, e.code, detail, hint, err);
    case '42710':
      return new QueueExistsError(message, e.code, detail, hint, err);
    case '55006':
      return new QueueInUseError(message, e.code, detail, hint, err);
    default:
      return new DatabaseError(message, e.code, detail, hint, err);
  }
}
