/**
 * Every method of ImmichJobRepository against a real server, each test in a
 * database of its own.  (test/bullmq.test.ts sets the semantics side by side
 * with BullMQ's.)
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { ClosedError, NotFoundError } from 'immich-jobs';

import {
  DEFAULT_CONCURRENCY, JobName, type JobItem, QUEUE_NAMES, type QueueName, defaultQueueOf,
} from '../src/index.js';
import { type Database, deferred, serverForThisFile, waitFor, withDatabase } from './cluster.js';

const server = serverForThisFile();

/** A test with a database of its own. */
function test(name: string, fn: (db: Database) => Promise<void>): void {
  it(name, () => withDatabase(server.cluster, fn));
}

async function settings(db: Database): Promise<Map<string, { concurrency: number; lease: number; attempts: number }>> {
  const rows = await db.query(`SELECT queue_name AS q, concurrency AS c,
      extract(epoch FROM lease_timeout)::float8 AS l, max_attempts AS m FROM immich_jobs.queue`);
  return new Map(rows.map((r) => [String(r['q']),
    { concurrency: Number(r['c']), lease: Number(r['l']), attempts: Number(r['m']) }]));
}

describe('ImmichJobRepository', () => {
  test('setup creates the 18 queues with their default concurrency, and is idempotent', async (db) => {
    const repo = db.repo({ leaseTimeoutMs: 30_000, maxAttempts: 4 });
    await repo.setup();
    let queues = await settings(db);
    assert.deepEqual([...queues.keys()].sort(), [...QUEUE_NAMES].sort());
    for (const q of QUEUE_NAMES) {
      assert.deepEqual(queues.get(q), { concurrency: DEFAULT_CONCURRENCY[q], lease: 30, attempts: 4 }, q);
    }
    // an existing queue keeps its concurrency, and gets the repository's lease settings
    await db.query("SELECT immich_jobs.set_concurrency('ocr', 7)");
    const again = db.repo({ leaseTimeoutMs: 45_000 });
    await again.setup();
    await again.setup();
    queues = await settings(db);
    assert.equal(queues.size, 18);
    assert.deepEqual(queues.get('ocr'), { concurrency: 7, lease: 45, attempts: 3 });
    assert.deepEqual(queues.get('library'), { concurrency: 5, lease: 45, attempts: 3 });
    assert.throws(() => db.repo({ leaseTimeoutMs: 999 }), RangeError);
    assert.throws(() => db.repo({ maxAttempts: 0 }), RangeError);
  });

  test("queues jobs in their name's queue, with their data, on Immich's sql", async (db) => {
    const repo = db.repo();
    await repo.setup();
    await repo.queue({ name: JobName.SidecarCheck, data: { id: 'a1' } });
    await repo.queueAll([
      { name: JobName.AssetGenerateThumbnails, data: { id: 'a1' } },
      { name: JobName.AssetGenerateThumbnails, data: { id: 'a2' } },
      { name: JobName.Ocr, data: { id: 'a1' } },
      { name: JobName.AssetDelete },
    ]);
    await repo.queueAll([]);
    const summary = async (q: QueueName): Promise<unknown[]> =>
      (await db.jobs(q)).map((j) => [j.name, j.state, j.payload]);
    assert.deepEqual(await summary('sidecar'), [['SidecarCheck', 'waiting', { id: 'a1' }]]);
    assert.deepEqual(await summary('thumbnailGeneration'), [
      ['AssetGenerateThumbnails', 'waiting', { id: 'a1' }], ['AssetGenerateThumbnails', 'waiting', { id: 'a2' }]]);
    assert.deepEqual(await summary('ocr'), [['Ocr', 'waiting', { id: 'a1' }]]);
    assert.deepEqual(await summary('backgroundTask'), [['AssetDelete', 'waiting', {}]], 'no data: {}');
    // a queueAll's jobs of one queue are added in one transaction
    const [xacts] = await db.query(`SELECT count(DISTINCT j.xmin::text)::int AS n FROM immich_jobs.job j
      JOIN immich_jobs.queue q USING (queue_id) WHERE q.queue_name = 'thumbnailGeneration'`);
    assert.equal(xacts?.['n'], 1);
    await assert.rejects(repo.queue({ name: 'NoSuchJob' }), /no queue is known for job "NoSuchJob"/);
    assert.equal(await db.sessions('immich_jobs'), 0, 'no connection but Immich\'s without workers');

    const custom = db.repo({ queueOf: (name) => (name.startsWith('Edit') ? 'editor' : defaultQueueOf(name)) });
    await custom.queue({ name: 'EditAsset', data: { id: 'e1' } });
    assert.deepEqual(await summary('editor'), [['EditAsset', 'waiting', { id: 'e1' }]]);
  });

  test('run() calls the handler of the job name', async (db) => {
    const calls: unknown[] = [];
    const repo = db.repo({
      handlers: {
        A: async (data) => { calls.push(data); return 'failed'; },
        B: async () => undefined,
        C: async () => 'skipped',
        D: async () => { throw new Error('boom'); },
      },
    });
    assert.equal(await repo.run({ name: 'A', data: { x: 1 } }), 'failed');
    assert.deepEqual(calls, [{ x: 1 }]);
    assert.equal(await repo.run({ name: 'B' }), 'success', 'a handler that returns nothing succeeded');
    assert.equal(await repo.run({ name: 'C' }), 'skipped');
    assert.equal(await repo.run({ name: 'Unknown' }), 'skipped');
    assert.deepEqual(repo.log.of('warn'), ['Skipping unknown job: "Unknown"']);
    await assert.rejects(repo.run({ name: 'D' }), /boom/, 'run() passes errors on, as Immich\'s does');
  });

  test('startWorkers runs every queue through onJob, with the limits set in the database', async (db) => {
    const seen: [QueueName, JobItem][] = [];
    const repo = db.repo({ onJob: async (queue, item) => { seen.push([queue, item]); } });
    await repo.setup();
    await repo.startWorkers({ thumbnailGeneration: 4, ocr: 2 });
    const limits = await settings(db);
    for (const q of QUEUE_NAMES) {
      const expected = q === 'thumbnailGeneration' ? 4 : q === 'ocr' ? 2 : DEFAULT_CONCURRENCY[q];
      assert.equal(limits.get(q)?.concurrency, expected, q);
    }
    const items: JobItem[] = [
      { name: JobName.SidecarCheck, data: { id: 's' } },
      { name: JobName.AssetExtractMetadata, data: { id: 'm' } },
      { name: JobName.AssetEncodeVideo, data: { id: 'v' } },
      { name: JobName.DatabaseBackup },
      { name: JobName.NotifyAlbumUpdate, data: { id: 'al', recipientId: 'u' } },
      { name: JobName.FacialRecognitionQueueAll, data: { force: false } },
    ];
    await repo.queueAll(items);
    await waitFor(() => seen.length === items.length, 'every job to run');
    for (const item of items) {
      const run = seen.find(([, s]) => s.name === item.name);
      assert.deepEqual(run, [defaultQueueOf(item.name), { name: item.name, data: item.data ?? {} }]);
    }
    await repo.startWorkers();
    assert.deepEqual(repo.log.of('warn'), ['The workers are already started']);
    const other = db.repo();
    await assert.rejects(other.startWorkers({ ocr: 0 }), RangeError);
    assert.match(other.log.of('error')[0] ?? '', /Unable to start the workers/);
  });

  test('the default onJob runs the handler of the job, and the job completes', async (db) => {
    const ran: string[] = [];
    const repo = db.repo({
      handlers: { [JobName.SidecarCheck]: async (data: { id: string }) => { ran.push(data.id); return 'success'; } },
    });
    await repo.setup();
    await repo.startWorkers();
    await repo.queueAll(['a', 'b', 'c'].map((id) => ({ name: JobName.SidecarCheck, data: { id } })));
    await repo.queue({ name: JobName.SidecarWrite, data: { id: 'no handler' } });
    await waitFor(async () => (await repo.getJobCounts('sidecar')).completed === 4, 'the jobs to complete');
    assert.deepEqual(ran.sort(), ['a', 'b', 'c']);
    assert.deepEqual(repo.log.of('warn'), ['Skipping unknown job: "SidecarWrite"']);
  });

  test('setConcurrency changes the limit in the database and the local worker', async (db) => {
    const gate = deferred();
    let running = 0;
    const repo = db.repo({
      workerId: 'w-test',
      onJob: async () => { running++; await gate.promise; running--; },
    });
    await repo.setup();
    await repo.startWorkers({ thumbnailGeneration: 1 });
    await repo.queueAll(Array.from({ length: 6 }, (_, i) => ({ name: JobName.AssetGenerateThumbnails, data: { i } })));
    await waitFor(() => running === 1, 'one job to run');
    assert.deepEqual(await repo.getJobCounts('thumbnailGeneration'),
      { active: 1, completed: 0, failed: 0, delayed: 0, waiting: 5, paused: 0 });
    await repo.setConcurrency('thumbnailGeneration', 3);
    await waitFor(() => running === 3, 'three jobs to run');
    assert.equal((await settings(db)).get('thumbnailGeneration')?.concurrency, 3);
    const active = (await db.jobs('thumbnailGeneration')).filter((j) => j.state === 'active');
    assert.equal(active.length, 3);
    assert.ok(active.every((j) => j.worker === 'w-test:thumbnailGeneration'), 'leased as workerId:queue');
    gate.resolve();
    await waitFor(async () => (await repo.getJobCounts('thumbnailGeneration')).completed === 6, 'the queue to drain');
    await assert.rejects(repo.setConcurrency('thumbnailGeneration', 0), RangeError);
    // Immich does not await setConcurrency: a failure is logged, never an unhandled rejection
    void repo.setConcurrency('nope' as QueueName, 2);
    await waitFor(() => repo.log.of('error').some((m) => m.includes('Unable to set the concurrency of nope')),
      'the failure to be logged');
  });

  test('startWorkers keeps the limits set before it and by other processes; takes Immich\'s { concurrency }', async (db) => {
    const one = db.repo();
    await one.setup();
    await one.setConcurrency('thumbnailGeneration', 8);
    await one.startWorkers();
    assert.equal((await settings(db)).get('thumbnailGeneration')?.concurrency, 8,
      'a limit set before startWorkers stays');
    // another process starts: it sets nothing it was not given, and its
    // workers take the database's limits
    const two = db.repo();
    await two.startWorkers({ ocr: { concurrency: 2 } });
    const limits = await settings(db);
    assert.equal(limits.get('thumbnailGeneration')?.concurrency, 8, 'the other process did not reset it');
    assert.equal(limits.get('ocr')?.concurrency, 2, "Immich's config shape works");
    assert.equal(limits.get('sidecar')?.concurrency, DEFAULT_CONCURRENCY.sidecar);
    await Promise.all([one.close(), two.close()]);
    // a worker started without a limit runs 8 at once, the database's limit
    const gate = deferred();
    let running = 0;
    const three = db.repo({ onJob: async () => { running++; await gate.promise; running--; } });
    await three.startWorkers();
    await three.queueAll(Array.from({ length: 10 }, (_, i) => ({ name: JobName.AssetGenerateThumbnails, data: { i } })));
    await waitFor(() => running === 8, 'eight jobs to run in one process');
    gate.resolve();
    await waitFor(async () => (await three.getJobCounts('thumbnailGeneration')).completed === 10, 'the queue to drain');
    await three.close();
    // after close, setConcurrency is refused in its promise, not synchronously
    await assert.rejects(one.setConcurrency('ocr', 3));
  });

  test('isActive, isPaused, pause and resume', async (db) => {
    const gate = deferred();
    let runs = 0;
    const repo = db.repo({ onJob: async () => { runs++; await gate.promise; } });
    await repo.setup();
    await repo.startWorkers();
    assert.equal(await repo.isActive('sidecar'), false);
    assert.equal(await repo.isPaused('sidecar'), false);
    await repo.queue({ name: JobName.SidecarCheck, data: { id: 1 } });
    await waitFor(() => repo.isActive('sidecar'), 'the job to be active');
    await repo.pause('sidecar');
    assert.equal(await repo.isPaused('sidecar'), true);
    await repo.queue({ name: JobName.SidecarCheck, data: { id: 2 } });
    gate.resolve();
    await waitFor(async () => !(await repo.isActive('sidecar')), 'the running job to end');
    assert.equal(runs, 1, 'a paused queue starts nothing');
    assert.deepEqual(await repo.getJobCounts('sidecar'),
      { active: 0, completed: 1, failed: 0, delayed: 0, waiting: 0, paused: 1 });
    await repo.resume('sidecar');
    assert.equal(await repo.isPaused('sidecar'), false);
    await waitFor(() => runs === 2, 'the second job to run after resume');
    // backgroundTask cannot be paused (Immich refuses it)
    await repo.pause('backgroundTask');
    assert.equal(await repo.isPaused('backgroundTask'), false);
    assert.deepEqual(repo.log.of('warn'), ['The backgroundTask queue cannot be paused']);
    await assert.rejects(repo.isPaused('nope' as QueueName), NotFoundError);
    await assert.rejects(repo.isActive('nope' as QueueName), NotFoundError);
  });

  test('empty removes the waiting jobs and keeps the delayed ones', async (db) => {
    const repo = db.repo();
    await repo.setup();
    await repo.queueAll([1, 2, 3].map((id) => ({ name: JobName.SidecarCheck, data: { id } })));
    await repo.queue({ name: JobName.NotifyAlbumUpdate, data: { id: 'al', recipientId: 'u', delay: 60_000 } });
    await repo.queue({ name: JobName.NotifyUserSignup, data: { id: 'u' } });
    assert.equal(await repo.empty('sidecar'), 3);
    assert.equal(await repo.empty('notifications'), 1);
    assert.deepEqual((await db.jobs('notifications')).map((j) => [j.name, j.state]),
      [['NotifyAlbumUpdate', 'delayed']]);
    assert.equal((await repo.getJobCounts('sidecar')).waiting, 0);
    await assert.rejects(repo.empty('nope' as QueueName), NotFoundError);
  });

  test('clear removes the failed jobs and resolves to their ids', async (db) => {
    const repo = db.repo({ maxAttempts: 1, leaseTimeoutMs: 1_000 });
    await repo.setup();
    await db.query("SELECT immich_jobs.set_concurrency('storageTemplateMigration', 5)");
    await repo.queueAll([
      { name: JobName.StorageTemplateMigrationSingle, data: { id: 'asset-1' } },
      { name: JobName.StorageTemplateMigrationSingle, data: { id: 'asset-2' } },
      { name: JobName.StorageTemplateMigration },
    ]);
    // a worker that leases them and dies: their lease expires, and they fail (1 attempt)
    await db.query("SELECT * FROM immich_jobs.claim('storageTemplateMigration', 'dead', 2)");
    await waitFor(async () => (await repo.getJobCounts('storageTemplateMigration')).failed === 2,
      'the leases to expire');
    assert.deepEqual(await repo.clear('storageTemplateMigration', 'failed'), ['asset-1', 'asset-2'],
      'the jobIds of the jobs removed');
    assert.deepEqual(await repo.getJobCounts('storageTemplateMigration'),
      { active: 0, completed: 0, failed: 0, delayed: 0, waiting: 1, paused: 0 });
    assert.deepEqual(await repo.clear('storageTemplateMigration', 'failed'), []);
    // a job without a jobId is listed by its id
    await db.query("SELECT * FROM immich_jobs.claim('storageTemplateMigration', 'dead')");
    await waitFor(async () => (await repo.getJobCounts('storageTemplateMigration')).failed === 1, 'it to fail');
    const [id] = await repo.clear('storageTemplateMigration', 'failed');
    assert.match(id ?? '', /^[0-9]+$/);
    await assert.rejects(repo.clear('sidecar', 'waiting' as 'failed'), RangeError);
    await assert.rejects(repo.clear('nope' as QueueName, 'failed'), /does not exist/);
  });

  test('getJobCounts counts every state', async (db) => {
    const repo = db.repo({ maxAttempts: 1, leaseTimeoutMs: 1_000 });
    await repo.setup();
    assert.deepEqual(await repo.getJobCounts('library'),
      { active: 0, completed: 0, failed: 0, delayed: 0, waiting: 0, paused: 0 });
    await repo.queueAll(Array.from({ length: 5 }, (_, i) => ({ name: JobName.LibrarySyncFiles, data: { i } })));
    const [done] = await db.query(`SELECT job_id, lease_token FROM immich_jobs.claim('library', 'w')`);
    await db.query('SELECT immich_jobs.complete($1, $2)', [String(done?.['job_id']), String(done?.['lease_token'])]);
    await db.query(`SELECT * FROM immich_jobs.claim('library', 'dead')`);
    await waitFor(async () => (await repo.getJobCounts('library')).failed === 1, 'a job to fail');
    await db.query(`SELECT * FROM immich_jobs.claim('library', 'w')`);
    await db.query(`SELECT immich_jobs.enqueue('library', 'later', run_at => now() + interval '1 hour')`);
    assert.deepEqual(await repo.getJobCounts('library'),
      { active: 1, completed: 1, failed: 1, delayed: 1, waiting: 2, paused: 0 });
    await assert.rejects(repo.getJobCounts('nope' as QueueName), NotFoundError);
  });

  test('waitForQueueCompletion polls isActive until no queue has an active job', async (db) => {
    const gate = deferred();
    const repo = db.repo({ onJob: async () => { await gate.promise; } });
    await repo.setup();
    await repo.startWorkers();
    await repo.waitForQueueCompletion('videoConversion', 'ocr');
    await repo.queue({ name: JobName.AssetEncodeVideo, data: { id: 'v' } });
    await waitFor(() => repo.isActive('videoConversion'), 'the video job to run');
    let polls = 0;
    const isActive = repo.isActive.bind(repo);
    repo.isActive = async (queue) => { polls++; return isActive(queue); };
    let resolved = false;
    const waiting = repo.waitForQueueCompletion('videoConversion', 'ocr').then(() => { resolved = true; });
    await waitFor(() => polls >= 6, 'three rounds of polls');
    assert.equal(resolved, false, 'not while a job is active');
    gate.resolve();
    await waiting;
    assert.equal(resolved, true);
    assert.ok(repo.log.of('verbose').includes('Waiting for videoConversion queue to stop...'));
  });

  test('searchJobs lists jobs by status, newest first, up to 1,000', async (db) => {
    const repo = db.repo();
    await repo.setup();
    const t0 = Date.now() - 1_000;
    await repo.queue({ name: JobName.NotifyAlbumUpdate, data: { id: 'al', recipientId: 'u1', delay: 60_000 } });
    await repo.queue({ name: JobName.NotifyUserSignup, data: { id: 'u2' } });
    await repo.queue({ name: JobName.NotifyAlbumInvite, data: { id: 'al', recipientId: 'u3' } });
    await repo.queue({ name: JobName.SendMail, data: { to: 'x' } });
    const [active] = await db.query(`SELECT job_id::text AS id FROM immich_jobs.claim('notifications', 'w')`);
    assert.ok(active);
    const all = await repo.searchJobs('notifications');
    assert.deepEqual(all.map((j) => [j.name, j.data]), [
      ['SendMail', { to: 'x' }], ['NotifyAlbumInvite', { id: 'al', recipientId: 'u3' }],
      ['NotifyUserSignup', { id: 'u2' }], ['NotifyAlbumUpdate', { id: 'al', recipientId: 'u1', delay: 60_000 }]]);
    assert.equal(all[3]?.id, 'al/u1', 'a job with a jobId has it as its id');
    assert.ok(all.every((j) => j.timestamp >= t0 && j.timestamp <= Date.now()), 'timestamps in ms');
    const names = async (status: Parameters<typeof repo.searchJobs>[1]): Promise<string[]> =>
      (await repo.searchJobs('notifications', status)).map((j) => j.name);
    assert.deepEqual(await names({ status: ['delayed'] }), ['NotifyAlbumUpdate']);
    assert.deepEqual((await repo.searchJobs('notifications', { status: ['active'] })).map((j) => j.id), [active['id']]);
    assert.deepEqual(await names({ status: ['waiting'] }), ['SendMail', 'NotifyAlbumInvite']);
    assert.deepEqual(await names({ status: ['completed'] }), [], 'completed jobs are not kept (removeOnComplete)');
    assert.deepEqual(await names({ status: ['paused'] }), []);
    await repo.pause('notifications');
    assert.deepEqual(await names({ status: ['waiting'] }), []);
    assert.deepEqual(await names({ status: ['paused', 'delayed'] }), ['SendMail', 'NotifyAlbumInvite', 'NotifyAlbumUpdate']);
    await repo.queueAll(Array.from({ length: 1_005 }, (_, i) => ({ name: JobName.SidecarCheck, data: { i } })));
    const listed = await repo.searchJobs('sidecar', { status: ['waiting'] });
    assert.equal(listed.length, 1_000);
    assert.deepEqual(listed[0]?.data, { i: 1_004 });
    assert.deepEqual(await repo.searchJobs('nope' as QueueName), []);
  });

  test('removeJob cancels the job with that jobId and resolves to its data', async (db) => {
    const repo = db.repo();
    await repo.setup();
    const data = { id: 'al', recipientId: 'u', delay: 60_000 };
    await repo.queue({ name: JobName.NotifyAlbumUpdate, data });
    assert.deepEqual(await repo.removeJob(JobName.NotifyAlbumUpdate, 'al/u'), data);
    assert.equal(await repo.removeJob(JobName.NotifyAlbumUpdate, 'al/u'), undefined, 'nothing left');
    assert.equal(await repo.removeJob(JobName.NotifyAlbumUpdate, 'never'), undefined);
    // Immich's onAlbumUpdate: remove the pending mail, queue it again with a fresh delay
    await repo.queue({ name: JobName.NotifyAlbumUpdate, data: { ...data, delay: 30_000 } });
    assert.deepEqual((await db.jobs('notifications')).filter((j) => j.state === 'delayed').map((j) => j.payload),
      [{ ...data, delay: 30_000 }]);
  });

  test("close waits for running handlers, closes the workers' connections, never Immich's sql", async (db) => {
    let finished = false;
    const started = deferred();
    const repo = db.repo({
      onJob: async () => {
        started.resolve();
        await new Promise((resolve) => setTimeout(resolve, 300));
        finished = true;
      },
    });
    await repo.setup();
    await repo.startWorkers();
    await repo.queue({ name: JobName.DatabaseBackup });
    await started.promise;
    assert.ok(await db.sessions('immich_jobs') > 0);
    await repo.close();
    assert.equal(finished, true, 'the running handler finished first');
    assert.equal((await repo.sql`SELECT 1 AS one`)[0]?.['one'], 1, "Immich's sql is still open");
    const [counts] = await db.query(`SELECT completed::int AS n FROM immich_jobs.job_counts('backupDatabase')`);
    assert.equal(counts?.['n'], 1);
    await waitFor(async () => (await db.sessions('immich_jobs')) === 0, 'the workers\' connections to close');
    await assert.rejects(repo.queue({ name: JobName.DatabaseBackup }), ClosedError);
    await repo.close();
  });

  test("forwards the workers' background errors, and goes on", async (db) => {
    const errors: Error[] = [];
    let ran = 0;
    const repo = db.repo({
      workerConnection: { options: { connection: { application_name: 'immich_jobs_errors' } } },
      onJob: async () => { ran++; },
    });
    repo.on('error', (e) => errors.push(e));
    await repo.setup();
    await repo.startWorkers();
    await waitFor(async () => (await db.sessions('immich_jobs_errors')) >= 2, 'the workers to connect');
    await db.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                     WHERE application_name = 'immich_jobs_errors'`);
    await waitFor(() => errors.length > 0, 'an error event');
    await repo.queue({ name: JobName.SidecarCheck, data: { id: 'after' } });
    await waitFor(() => ran === 1, 'the job to run after the connections came back');
  });

  test('without an error listener, background errors go to the logger', async (db) => {
    const repo = db.repo({ workerConnection: { options: { connection: { application_name: 'immich_jobs_quiet' } } } });
    await repo.setup();
    await repo.startWorkers();
    await waitFor(async () => (await db.sessions('immich_jobs_quiet')) >= 2, 'the workers to connect');
    await db.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                     WHERE application_name = 'immich_jobs_quiet'`);
    await waitFor(() => repo.log.of('warn').some((m) => m.startsWith('immich_jobs: ')), 'a warning');
  });

  test("maxConnections is the workers' budget: a pool of at most 4, and LISTEN", async (db) => {
    assert.equal(db.repo().maxConnections, 5);
    assert.equal(db.repo({ workerConnection: { options: { max: 10 } } }).maxConnections, 5);
    assert.equal(db.repo({ workerConnection: { options: { max: 2 } } }).maxConnections, 3);
    assert.equal(db.repo({ listen: false }).maxConnections, 4);
  });
});
