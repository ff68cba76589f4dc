// immich_jobs through the project's Node client (clients/node), with the
// node-postgres driver: one JobsClient per process (a pool plus one LISTEN
// connection), one worker per queue.

import { JobsClient } from 'immich-jobs';
import { pgDriver } from 'immich-jobs/pg';
import type { Server } from '../server.js';
import { connectionString } from '../server.js';
import type { Handler, NewJob, QueueOptions, Remaining, System, WorkerHandle } from './system.js';

export class ImmichJobs implements System {
	readonly name = 'immich_jobs' as const;
	readonly errors: string[] = [];
	private readonly client: JobsClient;

	constructor(server: Server, applicationName: string, poolMax: number) {
		this.client = new JobsClient({
			driver: pgDriver({ connectionString: connectionString(server), max: poolMax,
				application_name: applicationName }),
		});
		this.client.on('error', (err) => this.errors.push(`client: ${err.message}`));
	}

	async createQueue(queue: string, options: QueueOptions): Promise<void> {
		await this.client.queue(queue).create({
			concurrency: options.limit ?? options.concurrency,
			...(options.leaseTimeoutMs === undefined ? {} : { leaseTimeout: options.leaseTimeoutMs }),
		});
	}

	async enqueue(queue: string, job: NewJob): Promise<string> {
		return await this.client.queue(queue).enqueue(job.name, job.payload);
	}

	async enqueueMany(queue: string, jobs: NewJob[]): Promise<number> {
		return await this.client.queue(queue).enqueueMany(jobs);
	}

	work(queue: string, handler: Handler, concurrency: number): WorkerHandle {
		const w = this.client.worker(queue, async (job) => {
			await handler({ id: job.id, name: job.name, payload: job.payload as Record<string, unknown> });
		}, { concurrency });
		w.on('error', (err: Error) => this.errors.push(`worker ${queue}: ${err.message}`));
		return { close: () => w.close({ timeout: 10_000 }) };
	}

	async remaining(queue: string): Promise<Remaining> {
		const c = await this.client.queue(queue).counts();
		return { waiting: c.waiting, active: c.active, delayed: c.delayed, failed: c.failed };
	}

	async dropQueue(queue: string): Promise<void> {
		await this.client.queue(queue).drop({ force: true });
	}

	async close(): Promise<void> {
		await this.client.close();
	}
}
