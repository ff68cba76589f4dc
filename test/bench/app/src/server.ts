// The throwaway PostgreSQL server that ./run started, as the harness sees it:
// how to connect, an admin connection, its version, and pg_ctl restart (A7).
// ./run passes everything in BENCH_* variables.

import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import pg from 'pg';

const run = promisify(execFile);

export interface Server {
	socketDir: string;    // the server listens only on a Unix socket here
	database: string;
	user: string;
	dataDir: string;
	logFile: string;
	binDir: string;
	runAs: string;        // the user pg_ctl must run as ('' = this one)
}

function need(name: string): string {
	const v = process.env[name];
	if (v === undefined || v === '') throw new Error(`${name} is not set (run the benchmark with make bench-app)`);
	return v;
}

export function serverFromEnv(): Server {
	return {
		socketDir: need('BENCH_PGHOST'),
		database: need('BENCH_PGDATABASE'),
		user: need('BENCH_PGUSER'),
		dataDir: need('BENCH_PGDATA'),
		logFile: need('BENCH_PGLOG'),
		binDir: need('BENCH_PGBIN'),
		runAs: process.env.BENCH_PG_RUNAS ?? '',
	};
}

export function connectionString(s: Server): string {
	return `postgresql://${encodeURIComponent(s.user)}@/${encodeURIComponent(s.database)}` +
		`?host=${encodeURIComponent(s.socketDir)}`;
}

export function clientConfig(s: Server, applicationName: string): pg.ClientConfig {
	return { host: s.socketDir, database: s.database, user: s.user, application_name: applicationName };
}

export async function adminClient(s: Server): Promise<pg.Client> {
	const c = new pg.Client(clientConfig(s, 'bench-app-admin'));
	c.on('error', () => { /* A7 restarts the server under it; each use reconnects */ });
	await c.connect();
	return c;
}

// one statement on a fresh connection (survives a server restart)
export async function adminQuery<R extends pg.QueryResultRow = pg.QueryResultRow>(
	s: Server, text: string, values?: unknown[]): Promise<R[]> {
	const c = await adminClient(s);
	try {
		return (await c.query<R>(text, values)).rows;
	} finally {
		await c.end();
	}
}

export async function serverVersion(s: Server): Promise<string> {
	const rows = await adminQuery<{ server_version: string }>(s, 'SHOW server_version');
	return rows[0]!.server_version;
}

// run one of the server's programs, as the server's user if there is one
export async function serverProgram(s: Server, program: string, args: string[]): Promise<string> {
	const path = `${s.binDir}/${program}`;
	const [cmd, argv] = s.runAs === '' ? [path, args] : ['runuser', ['-u', s.runAs, '--', path, ...args]];
	const { stdout } = await run(cmd, argv, { maxBuffer: 16 << 20 });
	return stdout;
}

// pg_ctl restart -m immediate -w: returns when the server accepts connections again
export async function restartImmediate(s: Server): Promise<void> {
	await serverProgram(s, 'pg_ctl', ['-D', s.dataDir, '-l', s.logFile,
		'restart', '-m', 'immediate', '-w']);
}
