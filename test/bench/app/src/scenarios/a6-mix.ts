// A6: Immich's mix in one process. 18 queues at Immich's default concurrency,
// each with its own worker of that concurrency; each handler sleeps its job's
// duration, drawn uniformly from 2 to 50 ms (the same draws for every
// system). Every queue is pre-loaded with more jobs than its slots can run in
// the warm-up and the window. Figure: jobs completed in the window per
// second, against the bound the slots allow, sum over the queues of
// concurrency / mean duration of the jobs that ended in the window; and for
// the PostgreSQL systems the peak number of connections of the process.

import { immichQueues } from '../config.js';
import { ConnectionSampler } from '../connections.js';
import type { ConnectionPeak } from '../connections.js';
import { mean } from '../stats.js';
import type { SystemName, WorkerHandle } from '../systems/system.js';
import { sleep, Tracker } from '../tracker.js';
import type { Context } from './common.js';
import { fill } from './common.js';

export interface A6Result {
	completed: number; seconds: number; rate: number; bound: number;
	mean_duration_ms: number; queues_run_dry: number;
	// the same bound from the handlers' measured times (setTimeout sleeps longer than asked)
	bound_measured: number;
	peak_connections: number | null; peak_client_backends: number | null;
}

const MIN_MS = 2;
const MAX_MS = 50;

// mulberry32: a small seeded generator, so every system gets the same draws
function random(seed: number): () => number {
	let a = seed >>> 0;
	return () => {
		a = (a + 0x6d2b79f5) >>> 0;
		let t = a;
		t = Math.imul(t ^ (t >>> 15), t | 1);
		t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
		return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
	};
}

export function a6Durations(run: number, seconds: number): Map<string, number[]> {
	const next = random(run * 7919 + 1);
	const mid = (MIN_MS + MAX_MS) / 2;
	const out = new Map<string, number[]>();
	for (const [queue, concurrency] of immichQueues) {
		// 1.5 x what the slots can run in the time, plus some
		const n = Math.ceil(concurrency * seconds * (1000 / mid) * 1.5) + 100;
		out.set(queue, Array.from({ length: n }, () => MIN_MS + Math.floor(next() * (MAX_MS - MIN_MS + 1))));
	}
	return out;
}

export async function a6(ctx: Context, name: SystemName, run: number, applicationName: string): Promise<A6Result> {
	const { cfg } = ctx;
	const warm = cfg.a6WarmupSeconds * 1000;
	const window = cfg.a6WindowSeconds * 1000;
	const durations = a6Durations(run, cfg.a6WarmupSeconds + cfg.a6WindowSeconds);
	const sys = await ctx.open(name);
	const qname = (q: string) => `a6_${run}_${q}`;
	const workers: WorkerHandle[] = [];
	let sampler: ConnectionSampler | undefined;
	try {
		for (const [queue, concurrency] of immichQueues) {
			await sys.createQueue(qname(queue), { concurrency });
			const ds = durations.get(queue)!;
			await fill(sys, qname(queue), ds.length, (i) => ({ ms: ds[i] }));
		}
		await ctx.settle();
		if (name !== 'bullmq') {
			sampler = new ConnectionSampler(ctx.server, applicationName);
			await sampler.start();
		}
		const t0 = performance.now();
		const from = t0 + warm;
		const to = from + window;
		let completed = 0;
		let dry = 0;
		const inWindow = new Map<string, number[]>();
		const measured = new Map<string, number[]>();
		for (const [queue, concurrency] of immichQueues) {
			const ended: number[] = [];
			const took: number[] = [];
			inWindow.set(queue, ended);
			measured.set(queue, took);
			const total = durations.get(queue)!.length;
			const started = new Map<string, number>();
			const tracker = new Tracker((job, now) => started.set(job.id, now), (job, now) => {
				const start = started.get(job.id) ?? now;
				started.delete(job.id);
				if (now >= from && now < to) {
					completed++;
					ended.push(job.payload.ms as number);
					took.push(now - start);
				}
			});
			const handler = tracker.wrap((job) => sleep(job.payload.ms as number));
			workers.push(sys.work(qname(queue), handler, concurrency));
			void tracker.endedAtLeast(total).then(() => { if (performance.now() < to) dry++; });
		}
		await sleep(to - performance.now());      // the window itself
		const peak: ConnectionPeak | undefined = await sampler?.stop();
		sampler = undefined;
		let bound = 0;
		let boundMeasured = 0;
		for (const [queue, concurrency] of immichQueues) {
			const ms = inWindow.get(queue)!;
			bound += concurrency / (mean(ms.length > 0 ? ms : durations.get(queue)!) / 1000);
			const took = measured.get(queue)!;
			if (took.length > 0) boundMeasured += concurrency / (mean(took) / 1000);
		}
		const all = [...inWindow.values()].flat();
		return {
			completed,
			seconds: window / 1000,
			rate: completed / (window / 1000),
			bound,
			bound_measured: boundMeasured,
			mean_duration_ms: mean(all),
			queues_run_dry: dry,
			peak_connections: peak?.peak ?? null,
			peak_client_backends: peak?.peakAllClients ?? null,
		};
	} finally {
		await sampler?.stop().catch(() => {});
		await Promise.all(workers.map((w) => w.close()));
		for (const [queue] of immichQueues) await sys.dropQueue(qname(queue)).catch(() => {});
		await sys.close();
	}
}
