// The machine reference: pgbench -n -M prepared -c 1 -T 5, a one-row UPDATE
// by primary key per transaction: one connection's durable commit rate on the
// same server.

import { execFile } from 'node:child_process';
import { rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { Server } from './server.js';

const run = promisify(execFile);

function pgbenchEnv(s: Server): NodeJS.ProcessEnv {
	return { ...process.env, PGHOST: s.socketDir, PGUSER: s.user, PGDATABASE: s.database,
		PGAPPNAME: 'bench-app-pgbench' };
}

export async function pgbenchInit(s: Server): Promise<void> {
	await run(`${s.binDir}/pgbench`, ['-i', '-s', '1', '-q'], { env: pgbenchEnv(s) });
}

export interface PgbenchResult { tps: number; transactions: number; seconds: number }

export async function pgbenchUpdate(s: Server, seconds: number): Promise<PgbenchResult> {
	const script = join(tmpdir(), `bench-app-update-${process.pid}.sql`);
	await writeFile(script,
		'\\set aid random(1, 100000)\n' +
		'UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid = :aid;\n');
	const { stdout } = await run(`${s.binDir}/pgbench`,
		['-n', '-M', 'prepared', '-c', '1', '-T', String(seconds), '-f', script], { env: pgbenchEnv(s) })
		.finally(() => rm(script, { force: true }));
	const tps = /^tps = ([0-9.]+) /m.exec(stdout);
	const n = /^number of transactions actually processed: ([0-9]+)/m.exec(stdout);
	if (!tps || !n) throw new Error(`pgbench printed no tps:\n${stdout}`);
	return { tps: Number(tps[1]), transactions: Number(n[1]), seconds };
}
