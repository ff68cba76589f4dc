// A2: bulk enqueue through each client: the same input for every system,
// calls of 1,000 jobs ({"assetId": "<uuid>"}), each awaited before the next.

import type { NewJob, SystemName } from '../systems/system.js';
import type { Context } from './common.js';
import { assetJob, seconds } from './common.js';

export interface A2Result { jobs: number; seconds: number; rate: number }

export function a2Input(calls: number, batch: number): NewJob[][] {
	return Array.from({ length: calls }, () => Array.from({ length: batch }, () => assetJob()));
}

export async function a2(ctx: Context, name: SystemName, run: number, input: NewJob[][]): Promise<A2Result> {
	const sys = await ctx.open(name);
	const queue = `a2_${run}`;
	try {
		await sys.createQueue(queue, { concurrency: ctx.cfg.concurrency });
		await ctx.settle();
		let n = 0;
		const t0 = performance.now();
		for (const batch of input) n += await sys.enqueueMany(queue, batch);
		const s = seconds(t0);
		const expected = input.reduce((a, b) => a + b.length, 0);
		if (n !== expected) throw new Error(`${n} of ${expected} jobs added`);
		return { jobs: n, seconds: s, rate: n / s };
	} finally {
		await sys.dropQueue(queue).catch(() => {});
		await sys.close();
	}
}
