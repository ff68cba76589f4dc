// A7 (immich_jobs): pg_ctl restart -m immediate in the middle of a drain.
// The worker runs in a child process, so that its death is visible; the
// server restarts when a third of the jobs have run. Then we wait until every
// job has run and the queue is empty, at most lease_timeout + the reaper's
// interval (+ 5 s) after the restart, for leases the crash orphaned.

import { ChildWorker } from '../child-worker.js';
import { log } from '../log.js';
import { restartImmediate } from '../server.js';
import { left } from '../systems/system.js';
import type { Remaining, SystemName } from '../systems/system.js';
import { sleep } from '../tracker.js';
import type { Context } from './common.js';
import { fill, withDeadline } from './common.js';

export interface A7Result {
	jobs: number;
	survived: boolean;
	restart_seconds: number;             // how long pg_ctl restart took
	drain_again_seconds: number | null;  // restart returned -> first job that started after it ended
	ran_twice: number | null;            // jobs whose handler ran more than once
	never_ran: number | null;            // enqueued jobs whose handler never ran
	left_in_queue: number;               // waiting + active + delayed at the end
	failed: number;
	total_seconds: number;
	worker_errors: number;
	exit: string | null;
}

const REAPER_INTERVAL_MS = 1000;   // immich_jobs.reaper_interval, the default
const wall = (): number => performance.timeOrigin + performance.now();

export async function a7(ctx: Context, name: SystemName = 'immich_jobs'): Promise<A7Result> {
	const { cfg } = ctx;
	const n = cfg.a7Jobs;
	const queue = 'a7';
	const sys = await ctx.open(name);
	await sys.createQueue(queue, { concurrency: cfg.concurrency, leaseTimeoutMs: cfg.a7LeaseTimeoutMs });
	await fill(sys, queue, n, (i) => ({ i }));
	await ctx.settle();
	const t0 = wall();
	const child = new ChildWorker({ system: name, queue, concurrency: cfg.concurrency, total: n,
		milestone: Math.floor(n / 3), record: true, redisPort: ctx.redisPort, quick: cfg.quick });
	try {
		const allSeen = child.next('all-seen');
		allSeen.catch(() => {});
		await withDeadline(child.next('milestone'), 600_000, () => `${child.ended} of ${n} jobs ran`);
		const r0 = wall();
		await restartImmediate(ctx.server);
		const restarted = wall();
		log(`A7: restarted the server at ${child.ended} jobs (pg_ctl took ${((restarted - r0) / 1000).toFixed(2)} s)`);

		const deadline = restarted + cfg.a7LeaseTimeoutMs + REAPER_INTERVAL_MS + 5000;
		let timer: NodeJS.Timeout | undefined;
		const expired = new Promise<void>((resolve) => { timer = setTimeout(resolve, deadline - wall()); });
		await Promise.race([allSeen, child.exit, expired]).catch(() => {});
		clearTimeout(timer);
		let rem: Remaining | undefined;
		for (;;) {
			rem = await sys.remaining(queue).catch(() => undefined);
			if ((rem && left(rem) === 0) || wall() > deadline) break;
			await sleep(20);
		}
		const end = wall();
		rem ??= await sys.remaining(queue);
		const survived = child.exited === undefined;
		const base = {
			jobs: n, survived, restart_seconds: (restarted - r0) / 1000,
			left_in_queue: left(rem), failed: rem.failed, total_seconds: (end - t0) / 1000,
		};
		if (!survived) {
			const e = child.exited!;
			return { ...base, drain_again_seconds: null, ran_twice: null, never_ran: null, worker_errors: 0,
				exit: `code ${e.code}, signal ${e.signal}` };
		}
		const report = await child.stop();
		const runs = new Uint32Array(n);
		let firstAfter = Infinity;
		for (const [i, start, stop] of report.executions) {
			runs[i]!++;
			if (start >= restarted && stop < firstAfter) firstAfter = stop;
		}
		let twice = 0;
		let never = 0;
		for (const r of runs) (r === 0 ? never++ : r > 1 ? twice++ : 0);
		log(`A7: the worker reported ${report.errorCount} errors; the first: ${report.errors.join(' | ')}`);
		return {
			...base,
			drain_again_seconds: Number.isFinite(firstAfter) ? (firstAfter - restarted) / 1000 : null,
			ran_twice: twice,
			never_ran: never,
			worker_errors: report.errorCount,
			exit: null,
		};
	} finally {
		child.kill();
		await sys.dropQueue(queue).catch(() => {});
		await sys.close();
	}
}
