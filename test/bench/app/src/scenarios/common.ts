// What the scenarios share: the context main.ts hands them, filling a queue
// in batches of 1,000, waiting for a queue to be empty, and deadlines so that
// a stalled system fails its figure instead of hanging the benchmark.

import { randomUUID } from 'node:crypto';
import type { Config } from '../config.js';
import type { Server } from '../server.js';
import type { NewJob, Payload, System, SystemName } from '../systems/system.js';
import { left } from '../systems/system.js';
import { sleep } from '../tracker.js';

export interface Context {
	server: Server;
	cfg: Config;
	redisPort: number;
	// a fresh instance of a system (its own pool), as one process would have
	open(name: SystemName): Promise<System>;
	// VACUUM (ANALYZE) of the job tables and a CHECKPOINT before a measured step
	settle(): Promise<void>;
}

export function assetJob(extra: Payload = {}): NewJob {
	return { name: 'noop', payload: { assetId: randomUUID(), ...extra } };
}

// enqueue n jobs with enqueueMany, 1,000 per call
export async function fill(sys: System, queue: string, n: number,
	payload: (i: number) => Payload = () => ({})): Promise<void> {
	for (let i = 0; i < n; i += 1000) {
		const batch: NewJob[] = [];
		for (let j = i; j < Math.min(n, i + 1000); j++) batch.push(assetJob(payload(j)));
		await sys.enqueueMany(queue, batch);
	}
}

export async function withDeadline<T>(p: Promise<T>, ms: number, what: () => string): Promise<T> {
	let timer: NodeJS.Timeout | undefined;
	const expired = new Promise<never>((_, reject) => {
		timer = setTimeout(() => reject(new Error(`timed out after ${ms / 1000} s: ${what()}`)), ms);
	});
	try {
		return await Promise.race([p, expired]);
	} finally {
		clearTimeout(timer);
	}
}

// after the last handler ended: until the system holds no waiting, delayed
// or active job of the queue (the last completions committed)
export async function untilEmpty(sys: System, queue: string, ms = 30_000): Promise<void> {
	const end = performance.now() + ms;
	for (;;) {
		const r = await sys.remaining(queue);
		if (left(r) === 0) return;
		if (performance.now() > end)
			throw new Error(`queue ${queue} not empty after ${ms / 1000} s: ${JSON.stringify(r)}`);
		await sleep(5);
	}
}

export function seconds(since: number): number {
	return (performance.now() - since) / 1000;
}
