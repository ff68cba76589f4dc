/**
 * Immich's job types, declared here so that this package does not depend on
 * Immich's code: the values are those of Immich's enums (server/src/enum.ts,
 * v2.x), so Immich's own enum members can be passed where these are asked
 * for, and the other way round.
 */

/** Immich's queues (the values of Immich's `QueueName` enum). */
export const QueueName = {
  ThumbnailGeneration: 'thumbnailGeneration',
  MetadataExtraction: 'metadataExtraction',
  VideoConversion: 'videoConversion',
  FaceDetection: 'faceDetection',
  FacialRecognition: 'facialRecognition',
  SmartSearch: 'smartSearch',
  DuplicateDetection: 'duplicateDetection',
  BackgroundTask: 'backgroundTask',
  StorageTemplateMigration: 'storageTemplateMigration',
  Migration: 'migration',
  Search: 'search',
  Sidecar: 'sidecar',
  Library: 'library',
  Notification: 'notifications',
  BackupDatabase: 'backupDatabase',
  Ocr: 'ocr',
  Workflow: 'workflow',
  Editor: 'editor',
} as const;
export type QueueName = (typeof QueueName)[keyof typeof QueueName];

/** The 18 queues, in Immich's order. */
export const QUEUE_NAMES: readonly QueueName[] = Object.freeze(Object.values(QueueName));

/** Is this the name of one of Immich's queues? */
export function isQueueName(name: string): name is QueueName {
  return (QUEUE_NAMES as readonly string[]).includes(name);
}

/**
 * Immich's job names (the values of Immich's `JobName` enum).  Other
 * names are accepted wherever a job name is: `JobItem.name` is a string.
 */
export const JobName = {
  AssetDelete: 'AssetDelete',
  AssetDeleteCheck: 'AssetDeleteCheck',
  AssetDetectFacesQueueAll: 'AssetDetectFacesQueueAll',
  AssetDetectFaces: 'AssetDetectFaces',
  AssetDetectDuplicatesQueueAll: 'AssetDetectDuplicatesQueueAll',
  AssetDetectDuplicates: 'AssetDetectDuplicates',
  AssetEncodeVideoQueueAll: 'AssetEncodeVideoQueueAll',
  AssetEncodeVideo: 'AssetEncodeVideo',
  AssetEmptyTrash: 'AssetEmptyTrash',
  AssetExtractMetadataQueueAll: 'AssetExtractMetadataQueueAll',
  AssetExtractMetadata: 'AssetExtractMetadata',
  AssetFileMigration: 'AssetFileMigration',
  AssetGenerateThumbnailsQueueAll: 'AssetGenerateThumbnailsQueueAll',
  AssetGenerateThumbnails: 'AssetGenerateThumbnails',
  PartialAssetDelete: 'PartialAssetCleanup',
  PartialAssetDeleteQueueAll: 'PartialAssetCleanupQueueAll',

  AuditLogCleanup: 'AuditLogCleanup',
  AuditTableCleanup: 'AuditTableCleanup',

  DatabaseBackup: 'DatabaseBackup',

  FacialRecognitionQueueAll: 'FacialRecognitionQueueAll',
  FacialRecognition: 'FacialRecognition',

  FileDelete: 'FileDelete',
  FileMigrationQueueAll: 'FileMigrationQueueAll',

  LibraryDeleteCheck: 'LibraryDeleteCheck',
  LibraryDelete: 'LibraryDelete',
  LibraryRemoveAsset: 'LibraryRemoveAsset',
  LibrarySyncAssetsQueueAll: 'LibraryScanAssetsQueueAll',
  LibrarySyncAssets: 'LibrarySyncAssets',
  LibrarySyncFilesQueueAll: 'LibrarySyncFilesQueueAll',
  LibrarySyncFiles: 'LibrarySyncFiles',
  LibraryScanQueueAll: 'LibraryScanQueueAll',
  LibraryQueueSyncFiles: 'LibraryQueueSyncFiles',
  LibraryQueueSyncAssets: 'LibraryQueueSyncAssets',

  MemoryCleanup: 'MemoryCleanup',
  MemoryGenerate: 'MemoryGenerate',

  NotificationsCleanup: 'NotificationsCleanup',

  NotifyUserSignup: 'NotifyUserSignup',
  NotifyAlbumInvite: 'NotifyAlbumInvite',
  NotifyAlbumUpdate: 'NotifyAlbumUpdate',

  UserDelete: 'UserDelete',
  UserDeleteCheck: 'UserDeleteCheck',
  UserSyncUsage: 'UserSyncUsage',

  PersonCleanup: 'PersonCleanup',
  PersonFileMigration: 'PersonFileMigration',
  PersonGenerateThumbnail: 'PersonGenerateThumbnail',

  SessionCleanup: 'SessionCleanup',

  SendMail: 'SendMail',

  SidecarQueueAll: 'SidecarQueueAll',
  SidecarCheck: 'SidecarCheck',
  SidecarWrite: 'SidecarWrite',

  SmartSearchQueueAll: 'SmartSearchQueueAll',
  SmartSearch: 'SmartSearch',

  StorageTemplateMigration: 'StorageTemplateMigration',
  StorageTemplateMigrationSingle: 'StorageTemplateMigrationSingle',

  TagCleanup: 'TagCleanup',

  VersionCheck: 'VersionCheck',

  OcrQueueAll: 'OcrQueueAll',
  Ocr: 'Ocr',

  WorkflowRun: 'WorkflowRun',
} as const;
export type JobName = (typeof JobName)[keyof typeof JobName];

/** What a job handler returns (Immich's `JobStatus`). */
export const JobStatus = {
  Success: 'success',
  Failed: 'failed',
  Skipped: 'skipped',
} as const;
export type JobStatus = (typeof JobStatus)[keyof typeof JobStatus];

/** What `clear` removes (Immich's `QueueCleanType`). */
export const QueueCleanType = {
  Failed: 'failed',
} as const;
export type QueueCleanType = (typeof QueueCleanType)[keyof typeof QueueCleanType];

/** The job states `searchJobs` filters by (BullMQ's job types, Immich's `QueueJobStatus`). */
export const QueueJobStatus = {
  Active: 'active',
  Failed: 'failed',
  Completed: 'completed',
  Delayed: 'delayed',
  Waiting: 'waiting',
  Paused: 'paused',
} as const;
export type QueueJobStatus = (typeof QueueJobStatus)[keyof typeof QueueJobStatus];

/**
 * A job: its name and its data (Immich's `JobItem`, without the typing of
 * each job's data).  The name is any string: unknown names are run as
 * 'skipped' by `run()`.
 */
export interface JobItem<D = any> {
  name: JobName | (string & {});
  data?: D;
}

/**
 * A queue's counts, as BullMQ's `getJobCounts` gives them (Immich's
 * `JobCounts`): the Node client's, which job_counts() fills that way.
 */
export type { JobCounts } from 'immich-jobs';

/** A job as `searchJobs` lists it (Immich's `QueueJobResponseDto`). */
export interface QueueJobResponse {
  /** the BullMQ job id: the job's `jobId` (its dedup key) if it has one, else its immich_jobs id */
  id: string;
  name: JobName | (string & {});
  data: unknown;
  /** when it was queued, in milliseconds since the epoch */
  timestamp: number;
}

/** The options Immich gives BullMQ for a job (the subset it uses). */
export interface JobOptions {
  /** BullMQ's jobId: while a job with it is kept, no other is added */
  jobId?: string;
  /** run no sooner than this many milliseconds from now */
  delay?: number;
  /** BullMQ's priority: 1 runs first, 2^21 last, and a job without one before any with one */
  priority?: number;
}

/**
 * Each queue's default concurrency (Immich's system config defaults; the
 * queues Immich does not let one change are 1).
 */
export const DEFAULT_CONCURRENCY: Readonly<Record<QueueName, number>> = Object.freeze({
  thumbnailGeneration: 3,
  metadataExtraction: 5,
  videoConversion: 1,
  faceDetection: 2,
  facialRecognition: 1,
  smartSearch: 2,
  duplicateDetection: 1,
  ocr: 1,
  backgroundTask: 5,
  search: 5,
  sidecar: 5,
  library: 5,
  migration: 5,
  storageTemplateMigration: 1,
  notifications: 5,
  backupDatabase: 1,
  workflow: 5,
  editor: 2,
});

/**
 * The queue of each job name, as Immich's handlers declare it
 * (`@OnJob({ name, queue })`).  Immich passes what its own handler
 * discovery found as the repository's `queueOf`; this table is the default.
 */
export const JOB_QUEUE: Readonly<Record<JobName, QueueName>> = Object.freeze({
  AssetDelete: 'backgroundTask',
  AssetDeleteCheck: 'backgroundTask',
  AssetDetectFacesQueueAll: 'faceDetection',
  AssetDetectFaces: 'faceDetection',
  AssetDetectDuplicatesQueueAll: 'duplicateDetection',
  AssetDetectDuplicates: 'duplicateDetection',
  AssetEncodeVideoQueueAll: 'videoConversion',
  AssetEncodeVideo: 'videoConversion',
  AssetEmptyTrash: 'backgroundTask',
  AssetExtractMetadataQueueAll: 'metadataExtraction',
  AssetExtractMetadata: 'metadataExtraction',
  AssetFileMigration: 'migration',
  AssetGenerateThumbnailsQueueAll: 'thumbnailGeneration',
  AssetGenerateThumbnails: 'thumbnailGeneration',
  PartialAssetCleanup: 'backgroundTask',
  PartialAssetCleanupQueueAll: 'backgroundTask',

  AuditLogCleanup: 'backgroundTask',
  AuditTableCleanup: 'backgroundTask',

  DatabaseBackup: 'backupDatabase',

  FacialRecognitionQueueAll: 'facialRecognition',
  FacialRecognition: 'facialRecognition',

  FileDelete: 'backgroundTask',
  FileMigrationQueueAll: 'migration',

  LibraryDeleteCheck: 'library',
  LibraryDelete: 'library',
  LibraryRemoveAsset: 'library',
  LibraryScanAssetsQueueAll: 'library',
  LibrarySyncAssets: 'library',
  LibrarySyncFilesQueueAll: 'library',
  LibrarySyncFiles: 'library',
  LibraryScanQueueAll: 'library',
  LibraryQueueSyncFiles: 'library',
  LibraryQueueSyncAssets: 'library',

  MemoryCleanup: 'backgroundTask',
  MemoryGenerate: 'backgroundTask',

  NotificationsCleanup: 'backgroundTask',

  NotifyUserSignup: 'notifications',
  NotifyAlbumInvite: 'notifications',
  NotifyAlbumUpdate: 'notifications',

  UserDelete: 'backgroundTask',
  UserDeleteCheck: 'backgroundTask',
  UserSyncUsage: 'backgroundTask',

  PersonCleanup: 'backgroundTask',
  PersonFileMigration: 'migration',
  PersonGenerateThumbnail: 'thumbnailGeneration',

  SessionCleanup: 'backgroundTask',

  SendMail: 'notifications',

  SidecarQueueAll: 'sidecar',
  SidecarCheck: 'sidecar',
  SidecarWrite: 'sidecar',

  SmartSearchQueueAll: 'smartSearch',
  SmartSearch: 'smartSearch',

  StorageTemplateMigration: 'storageTemplateMigration',
  StorageTemplateMigrationSingle: 'storageTemplateMigration',

  TagCleanup: 'backgroundTask',

  VersionCheck: 'backgroundTask',

  OcrQueueAll: 'ocr',
  Ocr: 'ocr',

  WorkflowRun: 'workflow',
});

/**
 * The queue of a job name by the default table; throws for a name that is
 * not in it.
 */
export function defaultQueueOf(name: string): QueueName {
  const queue = (JOB_QUEUE as Readonly<Record<string, QueueName>>)[name];
  if (queue === undefined) {
    throw new Error(`no queue is known for job "${name}": pass queueOf to the repository`);
  }
  return queue;
}

/**
 * The BullMQ options Immich gives a job (its `getJobOptions`): a jobId for
 * the jobs that must not be queued twice, a delay for album-update mails,
 * priority 1 (after the others) for person thumbnails.  null: none.
 */
export function jobOptions(item: JobItem): JobOptions | null {
  const data = (item.data ?? {}) as Record<string, unknown>;
  switch (item.name) {
    case JobName.NotifyAlbumUpdate: {
      const delay = data['delay'];
      return {
        jobId: `${String(data['id'])}/${String(data['recipientId'])}`,
        ...(typeof delay === 'number' ? { delay } : {}),
      };
    }
    case JobName.StorageTemplateMigrationSingle: {
      return { jobId: String(data['id']) };
    }
    case JobName.PersonGenerateThumbnail: {
      return { priority: 1 };
    }
    case JobName.FacialRecognitionQueueAll: {
      return { jobId: JobName.FacialRecognitionQueueAll };
    }
    default: {
      return null;
    }
  }
}
