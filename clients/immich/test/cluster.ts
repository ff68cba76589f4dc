/**
 * Throwaway PostgreSQL servers for the tests (as clients/node/test/cluster.ts
 * starts them): initdb in a temporary directory, the extension preloaded,
 * a Unix socket only.  As root, the server runs as the "postgres" user.
 * Each test takes a database of its own (the 18 queue names are fixed).
 *
 * The binaries come from PG_CONFIG (or pg_config on the PATH).
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, chownSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { after, before } from 'node:test';

import postgres from 'postgres';

import {
  ImmichJobRepository, type ImmichJobRepositoryOptions, type Logger, type PostgresOptions,
} from '../src/index.js';

const asRoot = process.getuid?.() === 0;

function bindir(): string {
  const pgConfig = process.env['PG_CONFIG'] ?? 'pg_config';
  return execFileSync(pgConfig, ['--bindir'], { encoding: 'utf8' }).trim();
}

export type Row = Record<string, unknown>;

export class Cluster {
  readonly dir: string;
  readonly socket: string;
  readonly port = 5432;
  private readonly bin = bindir();
  private admin: postgres.Sql | undefined;
  private databases = 0;

  private constructor(dir: string) {
    this.dir = dir;
    this.socket = dir;
  }

  /** Create and start a server; `conf` lines are added to postgresql.conf. */
  static async start(conf: string[] = []): Promise<Cluster> {
    const dir = mkdtempSync(join(tmpdir(), 'immich_jobs_immich_'));
    chmodSync(dir, 0o700);
    if (asRoot) {
      const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }));
      const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }));
      chownSync(dir, uid, gid);
    }
    const cluster = new Cluster(dir);
    cluster.run('initdb', ['-D', cluster.data, '-A', 'trust', '-U', 'postgres', '--no-sync']);
    const settings = [
      "listen_addresses = ''",
      `unix_socket_directories = '${dir}'`,
      "shared_preload_libraries = 'immich_jobs'",
      'immich_jobs.reaper_interval = 100ms',
      // a reaper per database that has the extension
      'max_worker_processes = 40',
      'max_connections = 200',
      'fsync = off',
      ...conf,
    ];
    cluster.run('sh', ['-c', `cat >> '${cluster.data}/postgresql.conf'`], settings.join('\n') + '\n');
    cluster.pgctl('start');
    return cluster;
  }

  get data(): string {
    return join(this.dir, 'data');
  }

  /** postgres.js options for a database of this server. */
  options(database: string, extra: PostgresOptions = {}): PostgresOptions {
    return {
      host: this.socket, port: this.port, user: 'postgres', database, max: 2,
      connect_timeout: 5, onnotice: () => undefined, ...extra,
    };
  }

  /** Run SQL as the superuser in database postgres. */
  async sql<T extends Row = Row>(text: string, values: (string | number | boolean | null)[] = []): Promise<T[]> {
    this.admin ??= postgres(this.options('postgres', { connection: { application_name: 'test_admin' } }));
    return await this.admin.unsafe(text, values) as unknown as T[];
  }

  /** A new database with the extension, and Immich's postgres.js instance on it. */
  async database(): Promise<Database> {
    const name = `immich_${process.pid}_${++this.databases}`;
    await this.sql(`CREATE DATABASE ${name}`);
    const db = new Database(this, name);
    await db.query('CREATE EXTENSION immich_jobs');
    return db;
  }

  /** Stop the server and remove everything. */
  async destroy(): Promise<void> {
    await this.admin?.end({ timeout: 1 }).catch(() => undefined);
    this.admin = undefined;
    try {
      this.pgctl('stop', ['-m', 'immediate']);
    } catch {
      // already stopped
    }
    rmSync(this.dir, { recursive: true, force: true });
  }

  private pgctl(action: string, args: string[] = []): void {
    this.run('pg_ctl', ['-D', this.data, '-l', join(this.dir, 'server.log'), '-w', action, ...args]);
  }

  private run(program: string, args: string[], input?: string): void {
    const path = program === 'sh' ? program : join(this.bin, program);
    const [cmd, argv] = asRoot ? ['runuser', ['-u', 'postgres', '--', path, ...args]] : [path, args];
    const result = spawnSync(cmd, argv, { input, encoding: 'utf8' });
    if (result.status !== 0) {
      throw new Error(`${program} ${args.join(' ')} failed: ${result.stderr || result.stdout}`);
    }
  }
}

/** A repository made by a test, with the logger it was given. */
export type TestRepo = ImmichJobRepository & { log: CapturingLogger };

/** A database of a test: `sql` plays Immich's own postgres.js instance (pool of 10). */
export class Database {
  readonly sql: postgres.Sql;
  private readonly admin: postgres.Sql;
  private readonly repos: ImmichJobRepository[] = [];

  constructor(readonly cluster: Cluster, readonly name: string) {
    this.sql = postgres(cluster.options(name, { max: 10, connection: { application_name: 'immich' } }));
    this.admin = postgres(cluster.options(name, { max: 2, connection: { application_name: 'test_admin' } }));
  }

  /**
   * A repository on this database's `sql`, closed by drop(); by default its
   * logger keeps what it is told (in `repo.log`) and it polls for
   * waitForQueueCompletion every 20 ms.
   */
  repo(options: Partial<ImmichJobRepositoryOptions> = {}): TestRepo {
    const log = capturingLogger();
    const repo = Object.assign(new ImmichJobRepository({
      sql: this.sql, logger: log, completionPollInterval: 20, closeTimeout: 2_000, ...options,
    }), { log });
    this.repos.push(repo);
    return repo;
  }

  /** postgres.js options for this database. */
  options(extra: PostgresOptions = {}): PostgresOptions {
    return this.cluster.options(this.name, extra);
  }

  /** Run SQL as the superuser in this database, on a connection of the test's own. */
  async query<T extends Row = Row>(text: string, values: (string | number | boolean | null)[] = []): Promise<T[]> {
    return await this.admin.unsafe(text, values) as unknown as T[];
  }

  /** The jobs view, for a queue. */
  async jobs(queue: string): Promise<{ id: string; name: string; state: string; attempt: number;
    key: string | null; priority: number; error: string | null; payload: unknown; worker: string | null }[]> {
    const rows = await this.query(`SELECT job_id::text AS id, job_name AS name, state, attempt, priority,
        dedup_key AS key, last_error AS error, payload::text AS payload, worker_id AS worker
      FROM immich_jobs.jobs WHERE queue_name = $1 ORDER BY job_id`, [queue]);
    return rows.map((r) => ({
      id: String(r['id']), name: String(r['name']), state: String(r['state']),
      attempt: Number(r['attempt']), priority: Number(r['priority']),
      key: (r['key'] as string | null) ?? null, error: (r['error'] as string | null) ?? null,
      payload: JSON.parse(String(r['payload'])) as unknown, worker: (r['worker'] as string | null) ?? null,
    }));
  }

  /** Sessions of this server with this application_name. */
  async sessions(applicationName: string): Promise<number> {
    const [row] = await this.query(
      'SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = $1', [applicationName]);
    return Number(row?.['n']);
  }

  /** Close the connections and drop the database. */
  async drop(): Promise<void> {
    await Promise.all(this.repos.map((repo) => repo.close()));
    await this.sql.end({ timeout: 1 }).catch(() => undefined);
    await this.admin.end({ timeout: 1 }).catch(() => undefined);
    await this.cluster.sql(`DROP DATABASE IF EXISTS ${this.name} WITH (FORCE)`);
  }
}

/** Poll cond() until it holds, or fail after timeout ms. */
export async function waitFor(cond: () => boolean | Promise<boolean>, what: string,
  timeout = 15_000): Promise<void> {
  const deadline = Date.now() + timeout;
  while (!(await cond())) {
    if (Date.now() > deadline) {
      throw new Error(`timed out waiting for ${what}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** A promise and its resolver. */
export function deferred<T = void>(): { promise: Promise<T>; resolve: (value: T) => void } {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => { resolve = r; });
  return { promise, resolve };
}

/** A logger that keeps what it is told. */
export interface CapturingLogger extends Required<Logger> {
  readonly lines: { level: string; message: string; error?: unknown }[];
  /** the messages of a level */
  of(level: 'log' | 'warn' | 'error' | 'verbose'): string[];
}

export function capturingLogger(): CapturingLogger {
  const lines: { level: string; message: string; error?: unknown }[] = [];
  return {
    lines,
    log: (message) => { lines.push({ level: 'log', message }); },
    warn: (message) => { lines.push({ level: 'warn', message }); },
    error: (message, error) => { lines.push({ level: 'error', message, error }); },
    verbose: (message) => { lines.push({ level: 'verbose', message }); },
    of: (level) => lines.filter((l) => l.level === level).map((l) => l.message),
  };
}

/** Fail the test run on any unhandled rejection or uncaught exception. */
export function trapUnhandled(): { readonly errors: unknown[] } {
  const errors: unknown[] = [];
  process.on('unhandledRejection', (err) => errors.push(err));
  process.on('uncaughtException', (err) => errors.push(err));
  return { errors };
}

/**
 * One server for a test file: started before its tests, removed after
 * them, when the file must also have seen no unhandled rejection or
 * uncaught exception.  Read `.cluster` inside the tests.
 */
export function serverForThisFile(): { readonly cluster: Cluster } {
  const unhandled = trapUnhandled();
  let cluster: Cluster | undefined;
  before(async () => {
    cluster = await Cluster.start();
  });
  after(async () => {
    await cluster?.destroy();
    assert.deepEqual(unhandled.errors, [], 'no unhandled rejection or exception');
  });
  return {
    get cluster(): Cluster {
      if (cluster === undefined) {
        throw new Error('the server is not started yet');
      }
      return cluster;
    },
  };
}

/** Run fn with a fresh database, dropped afterwards whatever happens. */
export async function withDatabase<T>(cluster: Cluster, fn: (db: Database) => Promise<T>): Promise<T> {
  const db = await cluster.database();
  try {
    return await fn(db);
  } finally {
    await db.drop();
  }
}
