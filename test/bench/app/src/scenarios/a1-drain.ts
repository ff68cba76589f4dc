// A1: drain of pre-enqueued no-op jobs by one process, concurrency 16: from
// the worker's start until every job's handler ended and the queue is empty.

import type { SystemName } from '../systems/system.js';
import { noop, Tracker } from '../tracker.js';
import type { Context } from './common.js';
import { fill, seconds, untilEmpty, withDeadline } from './common.js';

export interface A1Result { jobs: number; seconds: number; rate: number }

export async function a1(ctx: Context, name: SystemName, run: number): Promise<A1Result> {
	const { cfg } = ctx;
	const n = cfg.a1Jobs;
	const sys = await ctx.open(name);
	const queue = `a1_${run}`;
	try {
		await sys.createQueue(queue, { concurrency: cfg.concurrency });
		await fill(sys, queue, n);
		await ctx.settle();
		const tracker = new Tracker();
		const t0 = performance.now();
		const worker = sys.work(queue, tracker.wrap(noop), cfg.concurrency);
		await withDeadline(tracker.endedAtLeast(n), 600_000, () => `${tracker.ended} of ${n} jobs ran`);
		await untilEmpty(sys, queue);
		const s = seconds(t0);
		await worker.close();
		return { jobs: n, seconds: s, rate: n / s };
	} finally {
		await sys.dropQueue(queue).catch(() => {});
		await sys.close();
	}
}
