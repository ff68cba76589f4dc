/**
 * immich-jobs-immich: Immich's JobRepository on immich_jobs, the
 * PostgreSQL job queue extension, in place of BullMQ on Redis.
 *
 *   import { ImmichJobRepository, JobName } from 'immich-jobs-immich';
 *
 *   const repo = new ImmichJobRepository({ sql, onJob: (queue, item) => ... });
 *   await repo.setup();
 *   await repo.startWorkers();
 *   await repo.queue({ name: JobName.SidecarCheck, data: { id: assetId } });
 */
export {
  ImmichJobRepository, enqueueOptions, type ConcurrencySetting, type ImmichJobRepositoryOptions, type JobContext,
  type JobHandler,
  type Logger,
  type PostgresOptions,
} from './repository.js';
export {
  DEFAULT_CONCURRENCY, JOB_QUEUE, JobName, JobStatus, QUEUE_NAMES, QueueCleanType, QueueJobStatus,
  QueueName, defaultQueueOf, isQueueName, jobOptions, type JobCounts, type JobItem, type JobOptions,
  type QueueJobResponse,
} from './types.js';
