// A5: a queue limited to 4 active jobs (by the system, over every worker),
// handlers that sleep 5 ms, a worker offering 16 slots: jobs/s, and the most
// handlers that ran at once (counted in the handler wrapper).

import type { SystemName } from '../systems/system.js';
import { sleep, Tracker } from '../tracker.js';
import type { Context } from './common.js';
import { fill, seconds, untilEmpty, withDeadline } from './common.js';

export interface A5Result {
	jobs: number; seconds: number; rate: number; max_running: number;
	// how long the handlers really took (setTimeout's 5 ms is more), for the raw results
	mean_handler_ms: number;
}

export async function a5(ctx: Context, name: SystemName, run: number): Promise<A5Result> {
	const { cfg } = ctx;
	const n = cfg.a5Jobs;
	const sys = await ctx.open(name);
	const queue = `a5_${run}`;
	try {
		await sys.createQueue(queue, { concurrency: cfg.a5Limit, limit: cfg.a5Limit });
		await fill(sys, queue, n);
		await ctx.settle();
		const tracker = new Tracker();
		const t0 = performance.now();
		const worker = sys.work(queue, tracker.wrap(() => sleep(cfg.a5SleepMs)), cfg.concurrency);
		await withDeadline(tracker.endedAtLeast(n), 600_000, () => `${tracker.ended} of ${n} jobs ran`);
		await untilEmpty(sys, queue);
		const s = seconds(t0);
		await worker.close();
		return { jobs: n, seconds: s, rate: n / s, max_running: tracker.maxRunning,
			mean_handler_ms: tracker.busyMs / tracker.ended };
	} finally {
		await sys.dropQueue(queue).catch(() => {});
		await sys.close();
	}
}
