// What every system under test offers the scenarios: queues, enqueue one or
// many, a worker with a concurrency running one handler, counts, and cleanup.
// The scenarios see nothing else, so every system runs the same workload.

export type SystemName = 'immich_jobs' | 'sqlq' | 'bullmq';

export const systemLabel: Record<SystemName, string> = {
	immich_jobs: 'immich_jobs',
	sqlq: 'SQL queue',
	bullmq: 'BullMQ',
};

export type Payload = Record<string, unknown>;

export interface NewJob { name: string; payload: Payload }

export interface BenchJob { id: string; name: string; payload: Payload }

export type Handler = (job: BenchJob) => Promise<void>;

export interface QueueOptions {
	// a limit on the queue's active jobs over every worker, enforced by the
	// system (immich_jobs: the queue's concurrency in the database; BullMQ:
	// global concurrency; SQL queue: its queue row). Without it immich_jobs
	// still gets a concurrency: the worker's, as Immich would configure it.
	limit?: number;
	concurrency: number;
	leaseTimeoutMs?: number;
}

export interface Remaining { waiting: number; active: number; delayed: number; failed: number }

export interface WorkerHandle { close(): Promise<void> }

export interface System {
	readonly name: SystemName;
	createQueue(queue: string, options: QueueOptions): Promise<void>;
	enqueue(queue: string, job: NewJob): Promise<string>;
	enqueueMany(queue: string, jobs: NewJob[]): Promise<number>;
	work(queue: string, handler: Handler, concurrency: number): WorkerHandle;
	remaining(queue: string): Promise<Remaining>;
	dropQueue(queue: string): Promise<void>;
	close(): Promise<void>;
	// errors the system reported on its own (connection problems), for the log
	readonly errors: string[];
}

export function left(r: Remaining): number {
	return r.waiting + r.active + r.delayed;
}
