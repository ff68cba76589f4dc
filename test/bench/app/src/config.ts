// What one run of make bench-app measures, and how long: the full run, or
// the QUICK one (QUICK=1: one run of each figure, fewer jobs, shorter windows).

export interface Config {
	quick: boolean;
	runs: number;              // each figure is the median of this many runs
	pgbenchSeconds: number;    // the reference: pgbench -c 1 -T this
	concurrency: number;       // the worker's concurrency per queue
	a1Jobs: number;            // A1 drain
	a2Calls: number;           // A2 bulk enqueue: calls of a2Batch jobs each
	a2Batch: number;
	a3Producers: number;       // A3 single enqueues
	a3Jobs: number;
	a3Seconds: number;
	a4Jobs: number;            // A4 pickup latency
	a4IntervalMs: number;
	a5Jobs: number;            // A5 queue limited to a5Limit, handlers sleep a5SleepMs
	a5Limit: number;
	a5SleepMs: number;
	a6WarmupSeconds: number;   // A6 Immich's mix
	a6WindowSeconds: number;
	a7Jobs: number;            // A7 restart in the middle of a drain
	a7LeaseTimeoutMs: number;
	memoryJobs: number;        // memory: a worker child drains this many jobs
	memoryBaselineJobs: number;
	memoryBullmq: boolean;     // the same for BullMQ, as a reference
	sqlqPoolMax: number;       // the SQL queue's pg Pool
	immichPoolMax: number;     // immich_jobs' pool (plus its LISTEN connection)
}

export function config(quick: boolean): Config {
	const common = {
		quick,
		pgbenchSeconds: 5,
		concurrency: 16,
		a2Batch: 1000,
		a3Producers: 8,
		a4IntervalMs: 20,
		a5Limit: 4,
		a5SleepMs: 5,
		a7LeaseTimeoutMs: 10_000,
		memoryBaselineJobs: 50_000,
		sqlqPoolMax: 8,
		immichPoolMax: 4,
	};
	if (quick)
		return {
			...common,
			runs: 1,
			a1Jobs: 10_000,
			a2Calls: 100,
			a3Jobs: 20_000,
			a3Seconds: 2,
			a4Jobs: 200,
			a5Jobs: 2_000,
			a6WarmupSeconds: 1,
			a6WindowSeconds: 5,
			a7Jobs: 30_000,
			memoryJobs: 200_000,
			memoryBullmq: false,
		};
	return {
		...common,
		runs: 3,
		a1Jobs: 20_000,
		a2Calls: 100,
		a3Jobs: 20_000,
		a3Seconds: 5,
		a4Jobs: 500,
		a5Jobs: 4_000,
		a6WarmupSeconds: 2,
		a6WindowSeconds: 15,
		a7Jobs: 60_000,
		memoryJobs: 1_000_000,
		memoryBullmq: true,
	};
}

// Immich's queues and their default concurrency (A6)
export const immichQueues: ReadonlyArray<readonly [string, number]> = [
	['thumbnailGeneration', 3],
	['metadataExtraction', 5],
	['videoConversion', 1],
	['faceDetection', 2],
	['facialRecognition', 1],
	['smartSearch', 2],
	['duplicateDetection', 1],
	['ocr', 1],
	['backgroundTask', 5],
	['search', 5],
	['sidecar', 5],
	['library', 5],
	['migration', 5],
	['storageTemplateMigration', 1],
	['notifications', 5],
	['backupDatabase', 1],
	['workflow', 5],
	['editor', 2],
];
