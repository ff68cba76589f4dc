// memory: a worker child process drains jobs enqueued beforehand (with
// enqueueMany); its RSS is read from /proc every 100 ms. Growth = peak RSS -
// RSS once the first 50,000 jobs have run.

import { readFileSync } from 'node:fs';
import { ChildWorker } from '../child-worker.js';
import type { SystemName } from '../systems/system.js';
import type { Context } from './common.js';
import { fill, withDeadline } from './common.js';

export interface MemoryResult {
	jobs: number; seconds: number; rate: number; samples: number;
	rss_baseline_mb: number; rss_peak_mb: number; rss_end_mb: number; growth_mb: number;
	/** the heap in use after a full GC at the end, and the heap V8 had grown to */
	heap_used_after_gc_mb: number; heap_total_mb: number;
}

function rssKb(pid: number): number | undefined {
	try {
		const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
		return m ? Number(m[1]) : undefined;
	} catch {
		return undefined;
	}
}

export async function memory(ctx: Context, name: SystemName): Promise<MemoryResult> {
	const { cfg } = ctx;
	const n = cfg.memoryJobs;
	const queue = `memory_${name}`;
	const sys = await ctx.open(name);
	await sys.createQueue(queue, { concurrency: cfg.concurrency });
	await fill(sys, queue, n, (i) => ({ i }));
	await ctx.settle();
	const child = new ChildWorker({ system: name, queue, concurrency: cfg.concurrency, total: n,
		milestone: cfg.memoryBaselineJobs, record: false, redisPort: ctx.redisPort, quick: cfg.quick });
	let peak = 0;
	let last = 0;
	let samples = 0;
	let baseline: number | undefined;
	const sample = (): void => {
		const kb = rssKb(child.pid);
		if (kb === undefined) return;
		samples++;
		last = kb;
		if (kb > peak) peak = kb;
	};
	const timer = setInterval(sample, 100);
	try {
		const done = child.next('all-seen');
		done.catch(() => {});
		await child.next('ready');
		const t0 = performance.now();
		await withDeadline(child.next('milestone'), 900_000, () => `${child.ended} of ${n} jobs ran`);
		sample();
		baseline = last;
		const seen = await withDeadline(done, 1_800_000, () => `${child.distinct} of ${n} jobs ran`);
		const s = (performance.now() - t0) / 1000;
		sample();
		clearInterval(timer);
		await child.stop();
		const mb = (kb: number): number => kb / 1024;
		return {
			jobs: n, seconds: s, rate: n / s, samples,
			rss_baseline_mb: mb(baseline), rss_peak_mb: mb(peak), rss_end_mb: mb(last),
			growth_mb: mb(peak - baseline),
			heap_used_after_gc_mb: seen.heapUsedMb, heap_total_mb: seen.heapTotalMb,
		};
	} finally {
		clearInterval(timer);
		child.kill();
		await sys.dropQueue(queue).catch(() => {});
		await sys.close();
	}
}
