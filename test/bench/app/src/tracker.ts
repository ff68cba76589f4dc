// The handler wrapper: counts handlers started and ended, and the most that
// ran at once, and lets a scenario wait for a number of ends (no polling).

import type { BenchJob, Handler } from './systems/system.js';

export class Tracker {
	running = 0;
	maxRunning = 0;
	started = 0;
	ended = 0;
	busyMs = 0;     // handler time summed over the handlers that ended
	private waiters: Array<{ n: number; resolve: () => void }> = [];

	constructor(
		private readonly onStart?: (job: BenchJob, now: number) => void,
		private readonly onEnd?: (job: BenchJob, now: number) => void) {}

	wrap(handler: Handler): Handler {
		return async (job) => {
			this.running++;
			this.started++;
			if (this.running > this.maxRunning) this.maxRunning = this.running;
			const start = performance.now();
			this.onStart?.(job, start);
			try {
				await handler(job);
			} finally {
				const end = performance.now();
				this.running--;
				this.ended++;
				this.busyMs += end - start;
				this.onEnd?.(job, end);
				this.wake();
			}
		};
	}

	// resolves once `n` handlers have ended
	endedAtLeast(n: number): Promise<void> {
		if (this.ended >= n) return Promise.resolve();
		return new Promise((resolve) => this.waiters.push({ n, resolve }));
	}

	private wake(): void {
		if (this.waiters.length === 0) return;
		const still: typeof this.waiters = [];
		for (const w of this.waiters) (this.ended >= w.n ? w.resolve() : still.push(w));
		this.waiters = still;
	}
}

export const noop: Handler = async () => {};

export function sleep(ms: number): Promise<void> {
	return new Promise((resolve) => setTimeout(resolve, ms));
}
