// BullMQ on Redis, as Immich uses it: one Queue and one Worker per queue,
// jobs added with attempts 3, removeOnComplete, removeOnFail false; a limit
// on a queue is BullMQ's global concurrency.

import { createRequire } from 'node:module';
import { Queue, Worker } from 'bullmq';
import type { ConnectionOptions } from 'bullmq';
import type { Handler, NewJob, QueueOptions, Remaining, System, WorkerHandle } from './system.js';

const jobOptions = { attempts: 3, removeOnComplete: true, removeOnFail: false };

export function bullmqVersion(): string {
	const require = createRequire(import.meta.url);
	return (require('bullmq/package.json') as { version: string }).version;
}

export class BullMq implements System {
	readonly name = 'bullmq' as const;
	readonly errors: string[] = [];
	private readonly connection: ConnectionOptions;
	private readonly queues = new Map<string, Queue>();

	constructor(redisPort: number) {
		this.connection = { host: '127.0.0.1', port: redisPort, maxRetriesPerRequest: null };
	}

	private queue(name: string): Queue {
		let q = this.queues.get(name);
		if (!q) {
			q = new Queue(name, { connection: this.connection, defaultJobOptions: jobOptions });
			q.on('error', (err) => this.errors.push(`queue ${name}: ${err.message}`));
			this.queues.set(name, q);
		}
		return q;
	}

	async createQueue(queue: string, options: QueueOptions): Promise<void> {
		const q = this.queue(queue);
		await q.waitUntilReady();
		if (options.limit !== undefined) await q.setGlobalConcurrency(options.limit);
	}

	async enqueue(queue: string, job: NewJob): Promise<string> {
		const j = await this.queue(queue).add(job.name, job.payload);
		return j.id ?? '';
	}

	async enqueueMany(queue: string, jobs: NewJob[]): Promise<number> {
		const added = await this.queue(queue).addBulk(jobs.map((j) => ({ name: j.name, data: j.payload })));
		return added.length;
	}

	work(queue: string, handler: Handler, concurrency: number): WorkerHandle {
		const w = new Worker(queue, async (job) => {
			await handler({ id: job.id ?? '', name: job.name, payload: job.data as Record<string, unknown> });
		}, { connection: this.connection, concurrency });
		w.on('error', (err) => this.errors.push(`worker ${queue}: ${err.message}`));
		return { close: () => w.close() };
	}

	async remaining(queue: string): Promise<Remaining> {
		const c = await this.queue(queue).getJobCounts('waiting', 'prioritized', 'paused', 'active', 'delayed', 'failed');
		return {
			waiting: (c.waiting ?? 0) + (c.prioritized ?? 0) + (c.paused ?? 0),
			active: c.active ?? 0,
			delayed: c.delayed ?? 0,
			failed: c.failed ?? 0,
		};
	}

	async dropQueue(queue: string): Promise<void> {
		const q = this.queue(queue);
		await q.obliterate({ force: true });
		await q.close();
		this.queues.delete(queue);
	}

	async redisVersion(): Promise<string> {
		const q = this.queue('bench-app-version');
		await q.waitUntilReady();
		const version = q.redisVersion;
		await q.close();
		this.queues.delete('bench-app-version');
		return version;
	}

	async close(): Promise<void> {
		await Promise.all([...this.queues.values()].map((q) => q.close()));
		this.queues.clear();
	}
}
