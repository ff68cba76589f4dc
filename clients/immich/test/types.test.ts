/**
 * Immich's types as this package declares them, and the mapping of
 * Immich's BullMQ job options to immich_jobs' enqueue options (no server).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import {
  DEFAULT_CONCURRENCY, JOB_QUEUE, JobName, JobStatus, QUEUE_NAMES, QueueCleanType, QueueJobStatus,
  QueueName, defaultQueueOf, enqueueOptions, isQueueName, jobOptions,
} from '../src/index.js';

describe('types', () => {
  it("declares Immich's 18 queues, with their default concurrency", () => {
    assert.deepEqual([...QUEUE_NAMES], [
      'thumbnailGeneration', 'metadataExtraction', 'videoConversion', 'faceDetection',
      'facialRecognition', 'smartSearch', 'duplicateDetection', 'backgroundTask',
      'storageTemplateMigration', 'migration', 'search', 'sidecar', 'library', 'notifications',
      'backupDatabase', 'ocr', 'workflow', 'editor',
    ]);
    assert.equal(QueueName.Notification, 'notifications');
    assert.deepEqual(DEFAULT_CONCURRENCY, {
      thumbnailGeneration: 3, metadataExtraction: 5, videoConversion: 1, faceDetection: 2,
      facialRecognition: 1, smartSearch: 2, duplicateDetection: 1, ocr: 1, backgroundTask: 5,
      search: 5, sidecar: 5, library: 5, migration: 5, storageTemplateMigration: 1,
      notifications: 5, backupDatabase: 1, workflow: 5, editor: 2,
    });
    assert.ok(isQueueName('ocr'));
    assert.ok(!isQueueName('thumbnails'));
    assert.deepEqual(Object.values(JobStatus), ['success', 'failed', 'skipped']);
    assert.deepEqual(Object.values(QueueCleanType), ['failed']);
    assert.deepEqual(Object.values(QueueJobStatus).sort(),
      ['active', 'completed', 'delayed', 'failed', 'paused', 'waiting']);
  });

  it('knows the queue of every job name, those of the Immich flow included', () => {
    for (const name of Object.values(JobName)) {
      assert.ok(isQueueName(defaultQueueOf(name)), `${name} has a queue`);
    }
    assert.equal(Object.keys(JOB_QUEUE).length, Object.values(JobName).length);
    const expected: Record<string, QueueName> = {
      SidecarCheck: 'sidecar', AssetExtractMetadata: 'metadataExtraction',
      AssetGenerateThumbnails: 'thumbnailGeneration', PersonGenerateThumbnail: 'thumbnailGeneration',
      SmartSearch: 'smartSearch', AssetDetectFaces: 'faceDetection',
      FacialRecognition: 'facialRecognition', FacialRecognitionQueueAll: 'facialRecognition',
      Ocr: 'ocr', AssetEncodeVideo: 'videoConversion', AssetDetectDuplicates: 'duplicateDetection',
      LibrarySyncFiles: 'library', LibrarySyncAssets: 'library', LibraryScanQueueAll: 'library',
      LibraryQueueSyncFiles: 'library', StorageTemplateMigrationSingle: 'storageTemplateMigration',
      NotifyAlbumUpdate: 'notifications', DatabaseBackup: 'backupDatabase',
      AssetDelete: 'backgroundTask', FileDelete: 'backgroundTask', PersonCleanup: 'backgroundTask',
    };
    for (const [name, queue] of Object.entries(expected)) {
      assert.equal(defaultQueueOf(name), queue, name);
    }
    assert.throws(() => defaultQueueOf('NoSuchJob'), /no queue is known for job "NoSuchJob"/);
  });

  it("gives each job Immich's BullMQ options (getJobOptions)", () => {
    assert.deepEqual(jobOptions({ name: JobName.NotifyAlbumUpdate, data: { id: 'al', recipientId: 'u', delay: 5_000 } }),
      { jobId: 'al/u', delay: 5_000 });
    assert.deepEqual(jobOptions({ name: JobName.NotifyAlbumUpdate, data: { id: 'al', recipientId: 'u' } }),
      { jobId: 'al/u' });
    assert.deepEqual(jobOptions({ name: JobName.StorageTemplateMigrationSingle, data: { id: 'asset1' } }),
      { jobId: 'asset1' });
    assert.deepEqual(jobOptions({ name: JobName.PersonGenerateThumbnail, data: { id: 'p1' } }), { priority: 1 });
    assert.deepEqual(jobOptions({ name: JobName.FacialRecognitionQueueAll, data: { force: false } }),
      { jobId: 'FacialRecognitionQueueAll' });
    assert.equal(jobOptions({ name: JobName.AssetGenerateThumbnails, data: { id: 'a' } }), null);
    assert.equal(jobOptions({ name: 'Unknown' }), null);
  });

  it("maps BullMQ's options to immich_jobs': jobId kept, delay, priority reversed", () => {
    assert.deepEqual(enqueueOptions(null), {});
    assert.deepEqual(enqueueOptions({ jobId: 'k' }), { dedupKey: 'k', dedupMode: 'kept' });
    // BullMQ: 1 is the highest priority, 2^21 the lowest, none (0) before them all;
    // immich_jobs: higher first, default 0
    assert.deepEqual(enqueueOptions({ priority: 0 }), {});
    assert.deepEqual(enqueueOptions({ priority: 1 }), { priority: -1 });
    assert.deepEqual(enqueueOptions({ priority: 2 ** 21 }), { priority: -(2 ** 21) });
    assert.throws(() => enqueueOptions({ priority: -1 }), RangeError);
    assert.throws(() => enqueueOptions({ priority: 1.5 }), RangeError);
    assert.throws(() => enqueueOptions({ priority: 2 ** 21 + 1 }), RangeError);
    const before = Date.now();
    const delayed = enqueueOptions({ delay: 60_000 });
    assert.ok(delayed.runAt instanceof Date);
    assert.ok(delayed.runAt.getTime() >= before + 60_000 && delayed.runAt.getTime() <= Date.now() + 60_000);
    assert.deepEqual(enqueueOptions({ delay: 0 }), {}, 'no delay: runs now');
  });
});
