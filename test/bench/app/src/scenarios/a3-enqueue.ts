// A3: single enqueues from 8 concurrent producers in one process, each
// awaiting each enqueue, until 20,000 jobs are in or the time is up.

import type { NewJob, SystemName } from '../systems/system.js';
import type { Context } from './common.js';
import { assetJob, seconds } from './common.js';

export interface A3Result { jobs: number; seconds: number; rate: number }

export async function a3(ctx: Context, name: SystemName, run: number): Promise<A3Result> {
	const { cfg } = ctx;
	const sys = await ctx.open(name);
	const queue = `a3_${run}`;
	try {
		await sys.createQueue(queue, { concurrency: cfg.concurrency });
		const jobs: NewJob[] = Array.from({ length: cfg.a3Jobs }, () => assetJob());
		await ctx.settle();
		let next = 0;
		let done = 0;
		const t0 = performance.now();
		const end = t0 + cfg.a3Seconds * 1000;
		const producer = async (): Promise<void> => {
			while (next < jobs.length && performance.now() < end) {
				await sys.enqueue(queue, jobs[next++]!);
				done++;
			}
		};
		await Promise.all(Array.from({ length: cfg.a3Producers }, producer));
		const s = seconds(t0);
		return { jobs: done, seconds: s, rate: done / s };
	} finally {
		await sys.dropQueue(queue).catch(() => {});
		await sys.close();
	}
}
