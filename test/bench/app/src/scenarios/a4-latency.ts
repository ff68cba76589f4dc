// A4: pickup latency. An idle worker (concurrency 16); a producer in the same
// process enqueues one job every 20 ms; latency = from the start of the
// enqueue call (its time travels in the payload) to the start of the handler.
// One warm-up job first, not measured: the worker is idle when it has run.

import type { SystemName } from '../systems/system.js';
import { noop, sleep, Tracker } from '../tracker.js';
import { percentile } from '../stats.js';
import type { Context } from './common.js';
import { assetJob, withDeadline } from './common.js';

export interface A4Result {
	jobs: number; p50_ms: number; p99_ms: number; max_ms: number;
	// how long the enqueue calls took (part of the latency), for the raw results
	enqueue_p50_ms: number; enqueue_p99_ms: number;
}

export async function a4(ctx: Context, name: SystemName, run: number): Promise<A4Result> {
	const { cfg } = ctx;
	const n = cfg.a4Jobs;
	const sys = await ctx.open(name);
	const queue = `a4_${run}`;
	const latencies: number[] = [];
	const enqueues: number[] = [];
	const tracker = new Tracker((job, now) => {
		const t0 = job.payload.t0;
		if (typeof t0 === 'number') latencies.push(now - t0);
	});
	try {
		await sys.createQueue(queue, { concurrency: cfg.concurrency });
		await ctx.settle();
		const worker = sys.work(queue, tracker.wrap(noop), cfg.concurrency);
		await sys.enqueue(queue, assetJob({ warmup: true }));
		await withDeadline(tracker.endedAtLeast(1), 30_000, () => 'the warm-up job did not run');
		const start = performance.now();
		for (let k = 0; k < n; k++) {
			const wait = start + k * cfg.a4IntervalMs - performance.now();
			if (wait > 0) await sleep(wait);
			const t0 = performance.now();
			await sys.enqueue(queue, assetJob({ t0 }));
			enqueues.push(performance.now() - t0);
		}
		await withDeadline(tracker.endedAtLeast(n + 1), 60_000, () => `${tracker.ended - 1} of ${n} jobs ran`);
		await worker.close();
		return {
			jobs: latencies.length,
			p50_ms: percentile(latencies, 50),
			p99_ms: percentile(latencies, 99),
			max_ms: Math.max(...latencies),
			enqueue_p50_ms: percentile(enqueues, 50),
			enqueue_p99_ms: percentile(enqueues, 99),
		};
	} finally {
		await sys.dropQueue(queue).catch(() => {});
		await sys.close();
	}
}
