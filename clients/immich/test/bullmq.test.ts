/**
 * BullMQ's semantics, as Immich relies on them, side by side with what the
 * repository does on immich_jobs.  Each BULLMQ_* table below is what
 * BullMQ 5 does, from its documentation (no Redis here); each test builds
 * the same table from what immich_jobs did, and compares.
 *
 *   https://docs.bullmq.io/guide/jobs/prioritized      priority
 *   https://docs.bullmq.io/guide/jobs/job-ids          jobId
 *   https://docs.bullmq.io/guide/queues/removing-jobs  drain, clean, remove
 *   https://docs.bullmq.io/guide/jobs/stalled          a worker that died
 *   https://docs.bullmq.io/guide/workers/concurrency   concurrency
 *   https://api.docs.bullmq.io (Queue.getJobCounts, Job.remove, Worker lockDuration)
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';

import {
  JobName, type JobItem, type JobOptions, type QueueName, jobOptions as immichJobOptions,
} from '../src/index.js';
import { type Database, deferred, serverForThisFile, waitFor, withDatabase } from './cluster.js';

const server = serverForThisFile();

function test(name: string, fn: (db: Database) => Promise<void>): void {
  it(name, () => withDatabase(server.cluster, fn));
}

/**
 * Immich's job options, and for the tests any job may also carry BullMQ
 * options in its data (`bullmq: { priority, jobId, delay }`).
 */
function jobOptions(item: JobItem): JobOptions | null {
  const given = (item.data as { bullmq?: JobOptions } | undefined)?.bullmq;
  return given ?? immichJobOptions(item);
}

/** The jobs with a jobId (dedup key) that are still there (not cancelled). */
async function keptWithId(db: Database, queue: QueueName, id: string): Promise<string[]> {
  return (await db.jobs(queue)).filter((j) => j.key === id && j.state !== 'cancelled').map((j) => j.state);
}

describe('BullMQ semantics', () => {
  /**
   * BullMQ: "priorities go from 1 to 2 097 152, where a lower number is
   * always a higher priority"; "jobs without a priority assigned will get
   * the highest priority, being processed before jobs with priorities";
   * "several jobs with the same priority ... FIFO".  immich_jobs runs higher
   * priorities first, default 0: the repository sends -p.
   */
  test('priority: no priority first (FIFO), then 1, 2, ... (FIFO within one)', async (db) => {
    const order: string[] = [];
    const repo = db.repo({ jobOptions, onJob: async (_q, item) => { order.push(item.data.label); } });
    await repo.setup();
    const job = (label: string, priority?: number): JobItem => ({
      name: JobName.AssetGenerateThumbnails,
      data: { label, ...(priority !== undefined ? { bullmq: { priority } } : {}) },
    });
    // queued in this order, before any worker runs
    await repo.queue(job('pink', 10));
    await repo.queue(job('first'));
    await repo.queue(job('brown', 5));
    await repo.queue({ name: JobName.PersonGenerateThumbnail, data: { label: 'person' } }); // Immich: priority 1
    await repo.queue(job('blue', 7));
    await repo.queueAll([job('second'), job('brown2', 5), job('third', 0)]);
    const BULLMQ_ORDER = ['first', 'second', 'third', 'person', 'brown', 'brown2', 'blue', 'pink'];
    await repo.startWorkers({ thumbnailGeneration: 1 });
    await waitFor(() => order.length === BULLMQ_ORDER.length, 'every job to run');
    assert.deepEqual(order, BULLMQ_ORDER);
  });

  /**
   * BullMQ: "if you add a job with an existing id then that job will just be
   * ignored"; "jobs that are removed from the queue (either manually, or
   * when using settings such as removeOnComplete/removeOnFailed) will not be
   * considered as duplicates".  Immich keeps failed jobs (removeOnFail:
   * false) and removes completed ones (removeOnComplete: true).
   */
  test('jobId: a new job is ignored while one is waiting, delayed, active or failed', async (db) => {
    const BULLMQ_JOBID = {
      'waiting': 'ignored',
      'delayed': 'ignored',
      'active': 'ignored',
      'failed (removeOnFail: false)': 'ignored',
      'removed (removeJob)': 'added',
      'completed (removeOnComplete: true)': 'added',
    };
    const observed: Record<string, string> = {};
    const outcome = (before: string[], after: string[]): string => (after.length > before.length ? 'added' : 'ignored');
    const gate = deferred();
    const runs: string[] = [];
    const repo = db.repo({
      maxAttempts: 1, leaseTimeoutMs: 1_000,
      onJob: async (queue, item) => {
        runs.push(item.name);
        if (queue === 'facialRecognition') {
          await gate.promise;
        }
      },
    });
    await repo.setup();
    const single = (id: string): JobItem => ({ name: JobName.StorageTemplateMigrationSingle, data: { id } });

    // failed: a worker leased it and died, its one attempt is spent
    await repo.queue(single('f'));
    await db.query("SELECT * FROM immich_jobs.claim('storageTemplateMigration', 'dead')");
    await waitFor(async () => (await keptWithId(db, 'storageTemplateMigration', 'f'))[0] === 'failed', 'it to fail');
    let before = await keptWithId(db, 'storageTemplateMigration', 'f');
    await repo.queue(single('f'));
    observed['failed (removeOnFail: false)'] = outcome(before, await keptWithId(db, 'storageTemplateMigration', 'f'));
    // removed
    assert.deepEqual(await repo.removeJob(JobName.StorageTemplateMigrationSingle, 'f'), { id: 'f' });
    before = await keptWithId(db, 'storageTemplateMigration', 'f');
    await repo.queue(single('f'));
    observed['removed (removeJob)'] = outcome(before, await keptWithId(db, 'storageTemplateMigration', 'f'));
    // waiting
    before = await keptWithId(db, 'storageTemplateMigration', 'f');
    await repo.queue(single('f'));
    observed['waiting'] = outcome(before, await keptWithId(db, 'storageTemplateMigration', 'f'));
    // delayed (Immich's album-update mail: jobId album/recipient, a delay)
    const mail = { name: JobName.NotifyAlbumUpdate, data: { id: 'al', recipientId: 'u', delay: 60_000 } };
    await repo.queue(mail);
    before = await keptWithId(db, 'notifications', 'al/u');
    assert.deepEqual(before, ['delayed']);
    await repo.queue(mail);
    observed['delayed'] = outcome(before, await keptWithId(db, 'notifications', 'al/u'));
    // active (Immich's FacialRecognitionQueueAll: jobId = its name)
    await repo.startWorkers();
    const queueAll = { name: JobName.FacialRecognitionQueueAll, data: { force: false } };
    await repo.queue(queueAll);
    await waitFor(async () => (await keptWithId(db, 'facialRecognition', 'FacialRecognitionQueueAll'))[0] === 'active',
      'it to run');
    before = await keptWithId(db, 'facialRecognition', 'FacialRecognitionQueueAll');
    await repo.queue(queueAll);
    observed['active'] = outcome(before, await keptWithId(db, 'facialRecognition', 'FacialRecognitionQueueAll'));
    // completed: removed on completion, so not a duplicate
    gate.resolve();
    await waitFor(async () => (await repo.getJobCounts('facialRecognition')).completed === 1, 'it to complete');
    before = await keptWithId(db, 'facialRecognition', 'FacialRecognitionQueueAll');
    await repo.queue(queueAll);
    await waitFor(async () => (await repo.getJobCounts('facialRecognition')).completed === 2, 'the new one to run');
    observed['completed (removeOnComplete: true)'] = runs.filter((n) => n === queueAll.name).length === 2 ? 'added' : 'ignored';
    assert.deepEqual(observed, BULLMQ_JOBID);
  });

  /**
   * BullMQ: drain() "removes all jobs that are waiting or delayed, but not
   * active, completed or failed"; delayed ones only with drain(true).  It is
   * Immich's "empty" (drain() without argument).
   */
  test('empty (drain): waiting and prioritized jobs go, delayed, active and failed stay', async (db) => {
    const BULLMQ_DRAIN = { waiting: 'removed', prioritized: 'removed', delayed: 'kept', active: 'kept', failed: 'kept' };
    const gate = deferred();
    const repo = db.repo({ jobOptions, maxAttempts: 1, leaseTimeoutMs: 1_000, onJob: () => gate.promise });
    await repo.setup();
    const thumb = (label: string, bullmq?: JobOptions): JobItem =>
      ({ name: JobName.AssetGenerateThumbnails, data: { label, ...(bullmq ? { bullmq } : {}) } });
    await repo.queue(thumb('failed'));
    await db.query("SELECT * FROM immich_jobs.claim('thumbnailGeneration', 'dead')");
    await waitFor(async () => (await repo.getJobCounts('thumbnailGeneration')).failed === 1, 'a job to fail');
    await repo.startWorkers({ thumbnailGeneration: 1 });
    await repo.queue(thumb('active'));
    await waitFor(async () => (await repo.getJobCounts('thumbnailGeneration')).active === 1, 'a job to run');
    await repo.queueAll([thumb('waiting'), thumb('prioritized', { priority: 3 }), thumb('delayed', { delay: 60_000 })]);
    const labels = async (): Promise<Map<string, string>> => new Map((await db.jobs('thumbnailGeneration'))
      .map((j) => [(j.payload as { label: string }).label, j.state]));
    assert.deepEqual(Object.fromEntries(await labels()),
      { failed: 'failed', active: 'active', waiting: 'waiting', prioritized: 'waiting', delayed: 'delayed' });
    assert.equal(await repo.empty('thumbnailGeneration'), 2);
    const after = await labels();
    const observed = Object.fromEntries(Object.keys(BULLMQ_DRAIN).map((l) => [l, after.has(l) ? 'kept' : 'removed']));
    assert.deepEqual(observed, BULLMQ_DRAIN);
    gate.resolve();
  });

  /**
   * BullMQ: clean(grace, limit, 'failed') removes failed jobs older than
   * grace (Immich: 0, so all, up to limit 1000) and resolves to their ids;
   * jobs in other states stay.
   */
  test('clear (clean failed): failed jobs go and their ids come back, the rest stays', async (db) => {
    const repo = db.repo({ maxAttempts: 1, leaseTimeoutMs: 1_000 });
    await repo.setup();
    await repo.queueAll([1, 2].map((i) => ({ name: JobName.LibrarySyncFiles, data: { i } })));
    await db.query("SELECT * FROM immich_jobs.claim('library', 'dead', 2)");
    await waitFor(async () => (await repo.getJobCounts('library')).failed === 2, 'two jobs to fail');
    await repo.queue({ name: JobName.LibrarySyncFiles, data: { i: 3 } });
    const failedIds = (await db.jobs('library')).filter((j) => j.state === 'failed').map((j) => j.id);
    assert.deepEqual(await repo.clear('library', 'failed'), failedIds);
    assert.deepEqual((await db.jobs('library')).map((j) => j.state), ['waiting']);
  });

  /**
   * BullMQ: getJobCounts('active', 'completed', 'failed', 'delayed',
   * 'waiting', 'paused'): the waiting jobs of a paused queue are in its
   * paused list, so they count as paused and waiting is 0.
   */
  test('getJobCounts: a paused queue shows its waiting jobs as paused', async (db) => {
    const repo = db.repo();
    await repo.setup();
    await repo.queueAll([1, 2, 3].map((id) => ({ name: JobName.AssetExtractMetadata, data: { id } })));
    await repo.pause('metadataExtraction');
    assert.deepEqual(await repo.getJobCounts('metadataExtraction'),
      { active: 0, completed: 0, failed: 0, delayed: 0, waiting: 0, paused: 3 });
    await repo.resume('metadataExtraction');
    assert.deepEqual(await repo.getJobCounts('metadataExtraction'),
      { active: 0, completed: 0, failed: 0, delayed: 0, waiting: 3, paused: 0 });
  });

  /**
   * BullMQ: getJob(jobId) then job.remove() (Immich's removeJob): removes a
   * waiting, delayed or failed job and Immich returns its data; the jobId
   * is free again.  A job that is being processed is locked: remove()
   * refuses ("could not be removed because it is locked by another
   * worker"; Immich's removeJob then throws).  Here removeJob resolves to
   * undefined and the job goes on.
   */
  test('removeJob: waiting, delayed and failed jobs go (data returned), an active one stays', async (db) => {
    const BULLMQ_REMOVE = { waiting: 'removed', delayed: 'removed', failed: 'removed', active: 'kept' };
    const gate = deferred();
    const repo = db.repo({
      jobOptions, maxAttempts: 1, leaseTimeoutMs: 1_000,
      onJob: async (queue) => { if (queue === 'library') { await gate.promise; } },
    });
    await repo.setup();
    const withId = (jobId: string, extra: JobOptions = {}): JobItem =>
      ({ name: JobName.LibrarySyncAssets, data: { jobId, bullmq: { jobId, ...extra } } });
    await repo.queue(withId('failed'));
    await db.query("SELECT * FROM immich_jobs.claim('library', 'dead')");
    await waitFor(async () => (await repo.getJobCounts('library')).failed === 1, 'the job to fail');
    await repo.startWorkers({ library: 1 });
    await repo.queue(withId('active'));
    await waitFor(async () => (await repo.getJobCounts('library')).active === 1, 'the job to run');
    await repo.queueAll([withId('waiting'), withId('delayed', { delay: 60_000 })]);
    const observed: Record<string, string> = {};
    for (const state of Object.keys(BULLMQ_REMOVE)) {
      const data = await repo.removeJob(JobName.LibrarySyncAssets, state);
      const left = await keptWithId(db, 'library', state);
      observed[state] = left.length === 0 ? 'removed' : 'kept';
      if (observed[state] === 'removed') {
        assert.deepEqual(data, withId(state, state === 'delayed' ? { delay: 60_000 } : {}).data, 'its data');
        // the jobId is free again
        await repo.queue(withId(state, { delay: 60_000 }));
        assert.deepEqual(await keptWithId(db, 'library', state), ['delayed']);
      } else {
        assert.equal(data, undefined);
      }
    }
    assert.deepEqual(observed, BULLMQ_REMOVE);
    gate.resolve();
  });

  /** Immich's queue service refuses to pause backgroundTask. */
  test('backgroundTask cannot be paused', async (db) => {
    let ran = 0;
    const repo = db.repo({ onJob: async () => { ran++; } });
    await repo.setup();
    await repo.pause('backgroundTask');
    assert.equal(await repo.isPaused('backgroundTask'), false);
    await repo.startWorkers();
    await repo.queue({ name: JobName.AssetDelete, data: { id: 'a' } });
    await waitFor(() => ran === 1, 'the job to run');
    assert.ok(repo.log.of('warn').includes('The backgroundTask queue cannot be paused'));
  });

  /**
   * Immich: the processor (JobService.onJobStart) catches the handler's
   * error and emits JobFailed; BullMQ never sees an error, so the job is
   * completed (removeOnComplete), never retried, never failed.  attempts: 3
   * only matters for a stalled job.
   */
  test("a handler's error or 'failed' status completes the job: not retried, not failed", async (db) => {
    const BULLMQ_IMMICH = { completed: 4, failed: 0, runs: 4 };
    let runs = 0;
    const repo = db.repo({
      handlers: {
        [JobName.SmartSearch]: async (data: { how: string }) => {
          runs++;
          if (data.how === 'throw') {
            throw new Error('CLIP model unavailable');
          }
          return data.how === 'failed' ? 'failed' : 'success';
        },
      },
    });
    await repo.setup();
    await repo.startWorkers();
    await repo.queueAll(['throw', 'failed', 'success', 'throw'].map((how) => ({ name: JobName.SmartSearch, data: { how } })));
    await waitFor(async () => (await repo.getJobCounts('smartSearch')).completed === 4, 'the jobs to complete');
    const counts = await repo.getJobCounts('smartSearch');
    assert.deepEqual({ completed: counts.completed, failed: counts.failed, runs }, BULLMQ_IMMICH);
    assert.equal(repo.log.of('error').filter((m) => m.includes('CLIP model unavailable')).length, 2);
    assert.equal(repo.log.of('warn').filter((m) => m.includes('failed')).length, 1);
    assert.equal((await db.jobs('smartSearch')).length, 0, 'nothing kept');
  });

  describe('a worker that dies in the middle of a job', () => {
    const crashWorker = join(dirname(fileURLToPath(import.meta.url)), 'crash-worker.js');

    /** Start a process that takes a job and dies of SIGKILL; resolve when it is dead. */
    async function crash(db: Database): Promise<string> {
      const child = spawn(process.execPath, [crashWorker], {
        env: {
          ...process.env,
          CRASH_OPTIONS: JSON.stringify({ ...db.options(), onnotice: undefined }),
          CRASH_LEASE_MS: '1000',
        },
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      let out = '';
      child.stdout.on('data', (chunk: Buffer) => { out += chunk.toString(); });
      const signal = await new Promise<NodeJS.Signals | null>((resolve) => child.on('exit', (_code, s) => resolve(s)));
      assert.equal(signal, 'SIGKILL', `the worker died in its job (it said: ${out})`);
      return out;
    }

    /**
     * BullMQ: a job whose lock is not renewed (its worker died) "is moved
     * back to the waiting list, or to the failed set"; after maxStalledCount
     * stalls (default 1) it fails ("job stalled more than allowable
     * limit").  Here: the lease expires, the reaper puts the job back to
     * waiting, and it fails after maxAttempts leases (default 3; 2 is
     * BullMQ's default maxStalledCount of 1).
     */
    test('its job is run again by another worker', async (db) => {
      const repo = db.repo({ leaseTimeoutMs: 1_000 });
      await repo.setup();
      await repo.queue({ name: JobName.AssetEncodeVideo, data: { id: 'v1' } });
      assert.equal(await crash(db), 'running AssetEncodeVideo of videoConversion\n');
      const [dead] = await db.jobs('videoConversion');
      assert.equal(dead?.attempt, 1);
      assert.match(dead?.worker ?? '', /^crash-[0-9]+:videoConversion$/);
      const ran: unknown[] = [];
      const healthy = db.repo({
        leaseTimeoutMs: 1_000,
        onJob: async (_q, item, job) => { ran.push([item.data, job.id, job.attempt]); },
      });
      await healthy.startWorkers();
      await waitFor(() => ran.length === 1, 'the job to run again, once the lease expired', 20_000);
      assert.deepEqual(ran, [[{ id: 'v1' }, dead?.id, 2]], 'the same job, its second attempt');
      await waitFor(async () => (await healthy.getJobCounts('videoConversion')).completed === 1, 'it to complete');
    });

    test('a job that kills its worker every time fails after maxAttempts (3)', async (db) => {
      const repo = db.repo({ leaseTimeoutMs: 1_000, maxAttempts: 3 });
      await repo.setup();
      await repo.queue({ name: JobName.AssetEncodeVideo, data: { id: 'poison' } });
      for (let attempt = 1; attempt <= 3; attempt++) {
        await waitFor(async () => (await db.jobs('videoConversion'))[0]?.state === 'waiting',
          `the job to be waiting for attempt ${attempt}`, 20_000);
        await crash(db);
        const [job] = await db.jobs('videoConversion');
        assert.equal(job?.attempt, attempt);
      }
      await waitFor(async () => (await db.jobs('videoConversion'))[0]?.state === 'failed', 'the job to fail', 20_000);
      const [job] = await db.jobs('videoConversion');
      assert.equal(job?.error, 'lease expired');
      assert.deepEqual(await repo.getJobCounts('videoConversion'),
        { active: 0, completed: 0, failed: 1, delayed: 0, waiting: 0, paused: 0 });
    });
  });

  /**
   * BullMQ: the worker renews the job's lock (lockDuration, 30 s) while the
   * processor runs, so a long job never stalls.  Here the worker
   * heartbeats the lease at half its length: a job that runs 3.5 lease
   * timeouts, with another process's workers waiting for work, runs once.
   */
  test('heartbeats: a job longer than its lease keeps it, and runs once', async (db) => {
    let runs = 0;
    const onJob = async (): Promise<void> => {
      runs++;
      await new Promise((resolve) => setTimeout(resolve, 3_500));
    };
    const one = db.repo({ leaseTimeoutMs: 1_000, onJob });
    const two = db.repo({ leaseTimeoutMs: 1_000, onJob });
    await one.setup();
    await one.startWorkers();
    await two.startWorkers();
    await one.queue({ name: JobName.DatabaseBackup });
    await waitFor(async () => (await one.getJobCounts('backupDatabase')).completed === 1, 'the backup to complete', 20_000);
    assert.equal(runs, 1);
    assert.deepEqual([...one.log.of('warn'), ...two.log.of('warn')], [], 'no lease was lost');
  });

  /**
   * BullMQ: concurrency is per worker (per process): two processes of
   * concurrency 2 run 4 jobs at once.  Here the limit is the queue's, over
   * every process: 2 at once, and setConcurrency in one process changes it
   * for all.
   */
  test('concurrency is global: two processes of 2 run 2 at once, not 4', async (db) => {
    const BULLMQ_MOST_AT_ONCE = 4;
    let running = 0;
    let most = 0;
    let gate = deferred();
    const onJob = async (): Promise<void> => {
      running++;
      most = Math.max(most, running);
      await gate.promise;
      running--;
    };
    const one = db.repo({ onJob });
    const two = db.repo({ onJob });
    await one.setup();
    await one.startWorkers({ faceDetection: 2 });
    await two.startWorkers({ faceDetection: 2 });
    await one.queueAll(Array.from({ length: 12 }, (_, i) => ({ name: JobName.AssetDetectFaces, data: { i } })));
    await waitFor(() => running === 2, 'two jobs to run');
    assert.deepEqual(await one.getJobCounts('faceDetection'),
      { active: 2, completed: 0, failed: 0, delayed: 0, waiting: 10, paused: 0 });
    assert.ok(most < BULLMQ_MOST_AT_ONCE, `${most} at once, where BullMQ runs ${BULLMQ_MOST_AT_ONCE}`);
    // one process raises it: for every process
    await one.setConcurrency('faceDetection', 3);
    await waitFor(() => running === 3, 'three jobs to run');
    gate.resolve();
    await waitFor(async () => (await one.getJobCounts('faceDetection')).completed === 12, 'the queue to drain');
    assert.equal(most, 3);
    // and back down to 1: one at a time from now on
    gate = deferred();
    most = 0;
    await two.setConcurrency('faceDetection', 1);
    await one.queueAll(Array.from({ length: 4 }, (_, i) => ({ name: JobName.AssetDetectFaces, data: { i } })));
    await waitFor(() => running === 1, 'a job to run');
    assert.deepEqual(await one.getJobCounts('faceDetection'),
      { active: 1, completed: 12, failed: 0, delayed: 0, waiting: 3, paused: 0 });
    gate.resolve();
    await waitFor(async () => (await one.getJobCounts('faceDetection')).completed === 16, 'the queue to drain');
    assert.equal(most, 1);
  });
});
