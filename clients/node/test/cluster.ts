/**
 * A throwaway PostgreSQL server for the tests: initdb in a temporary
 * directory, the extension preloaded, a Unix socket only.  As root, the
 * server runs as the "postgres" user (PostgreSQL refuses root).
 *
 * The binaries come from PG_CONFIG (or pg_config on the PATH).
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, chownSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { after, before } from 'node:test';

import pg from 'pg';

import { pgDriver } from '../src/pg.js';
import { postgresDriver } from '../src/postgres.js';
import type { Driver } from '../src/driver.js';

const asRoot = process.getuid?.() === 0;

function bindir(): string {
  const pgConfig = process.env['PG_CONFIG'] ?? 'pg_config';
  return execFileSync(pgConfig, ['--bindir'], { encoding: 'utf8' }).trim();
}

export class Cluster {
  readonly dir: string;
  readonly socket: string;
  readonly port = 5432;
  private readonly bin = bindir();
  private admin: pg.Client | undefined;

  private constructor(dir: string) {
    this.dir = dir;
    this.socket = dir;
  }

  /** Create and start a server; `conf` lines are added to postgresql.conf. */
  static async start(conf: string[] = []): Promise<Cluster> {
    const dir = mkdtempSync(join(tmpdir(), 'immich_jobs_node_'));
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
      'max_connections = 50',
      'fsync = off',
      ...conf,
    ];
    cluster.run('sh', ['-c', `cat >> '${cluster.data}/postgresql.conf'`], settings.join('\n') + '\n');
    cluster.pgctl('start');
    await cluster.sql('CREATE EXTENSION immich_jobs');
    return cluster;
  }

  get data(): string {
    return join(this.dir, 'data');
  }

  /** Connection options for node-postgres. */
  get pgConfig(): pg.ClientConfig {
    return { host: this.socket, port: this.port, user: 'postgres', database: 'postgres' };
  }

  /** A driver of the given kind on this server (pool of `max`, default 4). */
  driver(kind: DriverKind,
    options: { max?: number; applicationName?: string; prepare?: boolean } = {}): Driver {
    const max = options.max ?? 4;
    const application = options.applicationName ?? 'immich_jobs_test';
    const prepare = options.prepare ?? true;
    if (kind === 'pg') {
      return pgDriver({
        ...this.pgConfig, max, application_name: application, connectionTimeoutMillis: 2_000, prepare,
      });
    }
    return postgresDriver({
      options: {
        host: this.socket, port: this.port, user: 'postgres', database: 'postgres', max,
        connect_timeout: 2, connection: { application_name: application },
        onnotice: () => undefined, prepare,
      },
    });
  }

  /** Run SQL as the superuser, on a connection of the test's own. */
  async sql<T extends pg.QueryResultRow = Record<string, unknown>>(text: string,
    values: unknown[] = []): Promise<T[]> {
    if (this.admin === undefined) {
      const client = new pg.Client({ ...this.pgConfig, application_name: 'immich_jobs_test_admin' });
      client.on('error', () => { this.admin = undefined; });
      await client.connect();
      this.admin = client;
    }
    try {
      return (await this.admin.query<T>(text, values)).rows;
    } catch (err) {
      // a restart broke the admin connection: open a new one once
      if (this.admin !== undefined && (err as { code?: string }).code === undefined) {
        await this.admin.end().catch(() => undefined);
        this.admin = undefined;
        return this.sql<T>(text, values);
      }
      throw err;
    }
  }

  /** pg_ctl restart; mode 'immediate' is a crash. */
  async restart(mode: 'fast' | 'immediate' = 'fast'): Promise<void> {
    await this.dropAdmin();
    this.pgctl('restart', ['-m', mode]);
  }

  async stopServer(mode: 'fast' | 'immediate' = 'fast'): Promise<void> {
    await this.dropAdmin();
    this.pgctl('stop', ['-m', mode]);
  }

  startServer(): void {
    this.pgctl('start');
  }

  /** Stop the server and remove everything. */
  async destroy(): Promise<void> {
    await this.dropAdmin();
    try {
      this.pgctl('stop', ['-m', 'immediate']);
    } catch {
      // already stopped
    }
    rmSync(this.dir, { recursive: true, force: true });
  }

  private async dropAdmin(): Promise<void> {
    const admin = this.admin;
    this.admin = undefined;
    await admin?.end().catch(() => undefined);
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

export type DriverKind = 'pg' | 'postgres';
export const DRIVERS: readonly DriverKind[] = ['pg', 'postgres'];

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

/** A statement a recording driver ran, and whether it has been answered. */
export interface Recorded {
  readonly text: string;
  readonly values: readonly unknown[];
  answered: boolean;
}

/** A driver that records every statement it runs (not those in transactions). */
export interface RecordingDriver extends Driver {
  readonly statements: Recorded[];
  /** the statements that mention `what` and have been answered */
  answered(what: string): number;
}

export function recording(driver: Driver): RecordingDriver {
  const statements: Recorded[] = [];
  const wrapped: RecordingDriver = {
    statements,
    answered: (what) => statements.filter((s) => s.answered && s.text.includes(what)).length,
    get maxConnections() { return driver.maxConnections; },
    async query(text, values) {
      const recorded: Recorded = { text, values, answered: false };
      statements.push(recorded);
      try {
        return await driver.query(text, values);
      } finally {
        recorded.answered = true;
      }
    },
    transaction: (fn) => driver.transaction(fn),
    listen: (channel, callbacks) => driver.listen(channel, callbacks),
    end: () => driver.end(),
    set onBackgroundError(handler) { driver.onBackgroundError = handler; },
    get onBackgroundError() { return driver.onBackgroundError; },
  };
  return wrapped;
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
