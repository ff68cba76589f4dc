/**
 * immich-jobs: the Node.js client of immich_jobs, the PostgreSQL extension
 * that runs job queues inside the database.
 *
 *   import { JobsClient } from 'immich-jobs';
 *   import { pgDriver } from 'immich-jobs/pg';        // or postgresDriver from 'immich-jobs/postgres'
 *
 *   const client = new JobsClient({ driver: pgDriver({ connectionString }) });
 *   await client.queue('thumbnails').enqueue('generate', { assetId });
 *   client.worker('thumbnails', async (job) => { ... }, { concurrency: 4 });
 */
export { JobsClient, type JobsClientOptions } from './client.js';
export {
  Queue, type QueueSettings, type QueueCounts, type JobCounts, type JobInfo, type JobState,
} from './queue.js';
export type { DedupMode, EnqueueOptions, JobInput } from './enqueue.js';
export {
  Worker, LeaseLostError, type Job, type Handler, type WorkerOptions, type FailOutcome,
} from './worker.js';
export type { Driver, Queryable, ListenCallbacks, ListenConnection, Row, SqlValue } from './driver.js';
export type { BackoffOptions } from './backoff.js';
export {
  JobsError, DatabaseError, NotFoundError, InvalidArgumentError, QueueExistsError,
  QueueInUseError, ConnectionError, ClosedError,
} from './errors.js';
