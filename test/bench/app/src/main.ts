// make bench-app: the harness. ./run has started PostgreSQL and redis-server
// and passes them in BENCH_* variables; this runs every scenario for every
// system (the runs interleave the systems, so that each figure and its
// reference see the same machine), then writes the table.
//
//   BENCH_SYSTEMS=sqlq,bullmq   only these systems (default: all three)
//   BENCH_ONLY=A1,A4            only these figures (R, A1..A7, memory)

import os from 'node:os';
import { config } from './config.js';
import { log } from './log.js';
import { pgbenchInit, pgbenchUpdate } from './reference.js';
import type { Meta, RawRun } from './report.js';
import { buildRows, writeReport } from './report.js';
import { a1 } from './scenarios/a1-drain.js';
import { a2, a2Input } from './scenarios/a2-bulk.js';
import { a3 } from './scenarios/a3-enqueue.js';
import { a4 } from './scenarios/a4-latency.js';
import { a5 } from './scenarios/a5-limit.js';
import { a6 } from './scenarios/a6-mix.js';
import { a7 } from './scenarios/a7-restart.js';
import type { Context } from './scenarios/common.js';
import { memory } from './scenarios/memory.js';
import { adminClient, adminQuery, serverFromEnv, serverVersion } from './server.js';
import { BullMq, bullmqVersion } from './systems/bullmq.js';
import { applicationName, loadImmich, openSystem } from './systems/open.js';
import { schema as sqlqSchema } from './systems/sqlq.js';
import type { SystemName } from './systems/system.js';
import { fmt, fmtInt } from './stats.js';

const t0 = Number(process.env.BENCH_T0 ?? Math.floor(Date.now() / 1000));
const quick = !['', '0', 'no', 'false'].includes(process.env.QUICK ?? '');
const cfg = config(quick);
const server = serverFromEnv();
const redisPort = Number(process.env.BENCH_REDIS_PORT);
const outDir = process.env.BENCH_OUT ?? '.';
const only = process.env.BENCH_ONLY ? new Set(process.env.BENCH_ONLY.split(',')) : undefined;
const wanted = (figure: string): boolean => !only || only.has(figure);

const all: SystemName[] = ['immich_jobs', 'bullmq', 'sqlq'];
const asked = process.env.BENCH_SYSTEMS ? process.env.BENCH_SYSTEMS.split(',') as SystemName[] : all;
const status: Record<string, string> = {};

// immich_jobs needs its client (clients/node built) and the extension
async function immichAvailable(): Promise<string | null> {
	try {
		await loadImmich();
	} catch (err) {
		return `not measured: the Node client could not be loaded (${(err as Error).message.split('\n')[0]})`;
	}
	return null;
}

const raw: RawRun[] = [];

async function measure<T extends object>(figure: string, system: string, run: number,
	fn: () => Promise<T>, say: (r: T) => string): Promise<void> {
	try {
		const result = await fn();
		raw.push({ figure, system, run, result: result as Record<string, unknown> });
		log(`${figure} ${system} run ${run}: ${say(result)}`);
	} catch (err) {
		const message = (err as Error).message;
		raw.push({ figure, system, run, error: message });
		log(`${figure} ${system} run ${run} FAILED: ${message}`);
	}
}

async function settle(): Promise<void> {
	const c = await adminClient(server);
	try {
		await c.query('VACUUM (ANALYZE) immich_jobs.job');
		await c.query('VACUUM (ANALYZE) sqlq.job');
		await c.query('CHECKPOINT');
	} finally {
		await c.end();
	}
}

async function main(): Promise<void> {
	log(`bench-app: ${quick ? 'QUICK' : 'full'} run`);
	await adminQuery(server, 'CREATE EXTENSION IF NOT EXISTS immich_jobs');
	await adminQuery(server, sqlqSchema);
	await pgbenchInit(server);

	const systems: SystemName[] = [];
	for (const s of all) {
		if (!asked.includes(s)) { status[s] = 'not measured (BENCH_SYSTEMS)'; continue; }
		const why = s === 'immich_jobs' ? await immichAvailable() : null;
		if (why) {
			status[s] = why;
			log(`immich_jobs ${why}`);
			continue;
		}
		status[s] = 'measured';
		systems.push(s);
	}

	const ctx: Context = { server, cfg, redisPort, settle,
		open: (name) => openSystem(name, { server, cfg, redisPort }) };
	const rate = (r: { rate: number; jobs: number; seconds: number }): string =>
		`${fmtInt(r.rate)} jobs/s (${fmtInt(r.jobs)} jobs in ${fmt(r.seconds, 2)} s)`;

	for (let run = 1; run <= cfg.runs; run++) {
		if (wanted('R')) {
			await settle();
			await measure('R', 'pgbench', run, () => pgbenchUpdate(server, cfg.pgbenchSeconds),
				(r) => `${fmtInt(r.tps)} commits/s`);
		}
		if (wanted('A1'))
			for (const s of systems) await measure('A1', s, run, () => a1(ctx, s, run), rate);
		if (wanted('A2')) {
			const input = a2Input(cfg.a2Calls, cfg.a2Batch);
			for (const s of systems) await measure('A2', s, run, () => a2(ctx, s, run, input), rate);
		}
		if (wanted('A3'))
			for (const s of systems) await measure('A3', s, run, () => a3(ctx, s, run), rate);
		if (wanted('A4'))
			for (const s of systems)
				await measure('A4', s, run, () => a4(ctx, s, run),
					(r) => `p50 ${fmt(r.p50_ms, 2)} ms, p99 ${fmt(r.p99_ms, 2)} ms, max ${fmt(r.max_ms, 2)} ms (${r.jobs} jobs; ` +
						`the enqueue calls: p50 ${fmt(r.enqueue_p50_ms, 2)} ms, p99 ${fmt(r.enqueue_p99_ms, 2)} ms)`);
		if (wanted('A5'))
			for (const s of systems)
				await measure('A5', s, run, () => a5(ctx, s, run),
					(r) => `${rate(r)}, at most ${r.max_running} at once (handlers took ${fmt(r.mean_handler_ms, 2)} ms on average)`);
		if (wanted('A6'))
			for (const s of systems)
				await measure('A6', s, run, () => a6(ctx, s, run, applicationName),
					(r) => `${fmtInt(r.rate)} jobs/s, bound ${fmtInt(r.bound)} (${fmt(r.rate / r.bound, 2)}; ` +
						`from the handlers' measured times ${fmtInt(r.bound_measured)}), ` +
						`peak connections ${r.peak_connections ?? '-'} (client backends ${r.peak_client_backends ?? '-'})` +
						(r.queues_run_dry ? `, WARNING: ${r.queues_run_dry} queues ran dry` : ''));
	}
	if (wanted('A7') && systems.includes('immich_jobs'))
		await measure('A7', 'immich_jobs', 1, () => a7(ctx),
			(r) => `survived ${r.survived}, draining again after ${r.drain_again_seconds ?? '-'} s, ` +
				`${r.ran_twice ?? '-'} ran twice, ${r.never_ran ?? '-'} never ran, ${r.left_in_queue} left, ` +
				`${r.failed} failed, ${fmt(r.total_seconds, 1)} s in all`);
	if (wanted('memory'))
		for (const s of systems.filter((x) => x === 'immich_jobs' || (x === 'bullmq' && cfg.memoryBullmq)))
			await measure('memory', s, 1, () => memory(ctx, s),
				(r) => `RSS ${fmt(r.rss_baseline_mb, 1)} MB after ${fmtInt(cfg.memoryBaselineJobs)} jobs, ` +
					`peak ${fmt(r.rss_peak_mb, 1)} MB: growth ${fmt(r.growth_mb, 1)} MB (${rate(r)})`);

	const bull = new BullMq(redisPort);
	const meta: Meta = {
		mode: quick ? 'quick' : 'full',
		started: new Date(t0 * 1000).toISOString().replace('T', ' ').replace(/\.\d+Z$/, ' UTC'),
		wall_seconds: Math.floor(Date.now() / 1000) - t0,
		commit: process.env.BENCH_COMMIT ?? 'unknown',
		postgresql: await serverVersion(server),
		redis: await bull.redisVersion(),
		node: process.version,
		bullmq: bullmqVersion(),
		cpus: os.cpus().length,
		systems: status,
		config: cfg,
	};
	await bull.close();
	const md = await writeReport(outDir, buildRows(raw, cfg), meta, raw);
	process.stdout.write('\n' + md);
}

await main();
