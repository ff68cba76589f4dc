// A worker in a process of its own (A7, memory), so that the harness can see
// it die and measure its memory. BENCH_CHILD holds what to run. It drains one
// queue with a no-op handler that notes each job's payload.i, tells the
// parent its progress every 100 ms, "milestone" when `milestone` handlers
// ended and "all-seen" when every i from 0 to total-1 has run at least once;
// on "stop" it closes the worker and sends its report. With `record`, the
// report lists every execution (i, start, end in ms since the epoch);
// without, the child keeps nothing per job (memory).

import { config } from './config.js';
import { serverFromEnv } from './server.js';
import { openSystem } from './systems/open.js';
import type { BenchJob, SystemName } from './systems/system.js';

export interface ChildSpec {
	system: SystemName;
	queue: string;
	concurrency: number;
	total: number;
	milestone: number;
	record: boolean;
	redisPort: number;
	quick: boolean;
}

export type ChildMessage =
	| { type: 'ready' }
	| { type: 'progress'; ended: number; distinct: number; errors: number }
	| { type: 'milestone'; at: number }
	| { type: 'all-seen'; at: number; heapUsedMb: number; heapTotalMb: number }
	| { type: 'report'; ended: number; distinct: number; errorCount: number; errors: string[];
		executions: Array<[number, number, number]> };

const wall = (): number => performance.timeOrigin + performance.now();

async function main(): Promise<void> {
	const spec = JSON.parse(process.env.BENCH_CHILD ?? '') as ChildSpec;
	const send = (m: ChildMessage): void => { process.send?.(m); };
	const sys = await openSystem(spec.system, { server: serverFromEnv(), cfg: config(spec.quick), redisPort: spec.redisPort });
	const seen = new Uint8Array(spec.total);
	const executions: Array<[number, number, number]> = [];
	let ended = 0;
	let distinct = 0;
	const handler = async (job: BenchJob): Promise<void> => {
		const start = wall();
		const i = job.payload.i as number;
		if (seen[i] === 0) distinct++;
		if (seen[i]! < 255) seen[i]!++;
		ended++;
		if (spec.record) executions.push([i, start, wall()]);
		if (ended === spec.milestone) send({ type: 'milestone', at: wall() });
		if (distinct === spec.total && seen[i] === 1) {
			// the heap in use once garbage is collected (the child runs with
			// --expose-gc), against what V8 has grown its heap to
			const at = wall();
			const heapTotalMb = process.memoryUsage().heapTotal / 1048576;
			(globalThis as { gc?: () => void }).gc?.();
			send({ type: 'all-seen', at, heapUsedMb: process.memoryUsage().heapUsed / 1048576, heapTotalMb });
		}
	};
	const worker = sys.work(spec.queue, handler, spec.concurrency);
	const progress = setInterval(() => send({ type: 'progress', ended, distinct, errors: sys.errors.length }), 100);
	process.on('message', (m: { type: string }) => {
		if (m.type !== 'stop') return;
		clearInterval(progress);
		void worker.close().then(async () => {
			// a large report is written asynchronously: disconnect only once it is out
			await new Promise<void>((resolve, reject) => process.send!({ type: 'report', ended, distinct,
				errorCount: sys.errors.length, errors: sys.errors.slice(0, 10), executions } satisfies ChildMessage,
				undefined, {}, (err) => (err ? reject(err) : resolve())));
			await sys.close();
			process.disconnect();
		});
	});
	send({ type: 'ready' });
}

await main();
