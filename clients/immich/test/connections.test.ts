/**
 * Connections: the workers of all 18 queues share one client of at most
 * 4 pooled connections and one LISTEN connection, however busy; enqueues
 * and admin calls go through Immich's own instance.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { DEFAULT_CONCURRENCY, QUEUE_NAMES, type QueueName } from '../src/index.js';
import { type Database, deferred, serverForThisFile, waitFor, withDatabase } from './cluster.js';

const server = serverForThisFile();

function test(name: string, fn: (db: Database) => Promise<void>): void {
  it(name, () => withDatabase(server.cluster, fn));
}

/** Sample a count every 20 ms; stop() resolves to the samples taken. */
function sampler(count: () => Promise<number>): { most(): number; samples(): number; stop(): Promise<void> } {
  let most = 0;
  let samples = 0;
  let running = true;
  const loop = (async () => {
    while (running) {
      most = Math.max(most, await count());
      samples++;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  })();
  return {
    most: () => most,
    samples: () => samples,
    stop: async () => { running = false; await loop; },
  };
}

describe('connections', () => {
  test('all 18 queues busy at once on at most 5 connections (a pool of 4 and LISTEN)', async (db) => {
    const app = 'immich_jobs_budget';
    const perQueue = 20;
    const gate = deferred();
    const running = new Map<string, number>();
    let done = 0;
    const repo = db.repo({
      // asked for a pool of 10: the budget stays at 4
      workerConnection: { options: { max: 10, connection: { application_name: app } } },
      queueOf: (name) => name.split(':')[0] as QueueName,
      onJob: async (queue) => {
        running.set(queue, (running.get(queue) ?? 0) + 1);
        await gate.promise;
        await new Promise((resolve) => setTimeout(resolve, 2));
        running.set(queue, (running.get(queue) ?? 0) - 1);
        done++;
      },
    });
    assert.equal(repo.maxConnections, 5);
    await repo.setup();
    await repo.startWorkers();
    const workers = sampler(() => db.sessions(app));
    const immich = sampler(() => db.sessions('immich'));
    await repo.queueAll(QUEUE_NAMES.flatMap((q) =>
      Array.from({ length: perQueue }, (_, i) => ({ name: `${q}:job`, data: { i } }))));
    const busy = (): number => [...running.values()].filter((n) => n > 0).length;
    await waitFor(() => busy() === 18, 'every queue to have running jobs');
    // every queue runs as many jobs as its limit allows, at once (and no more)
    await waitFor(() => QUEUE_NAMES.every((q) => running.get(q) === DEFAULT_CONCURRENCY[q]),
      'every queue to run as many jobs as its limit');
    const seen = workers.samples();
    await waitFor(() => workers.samples() >= seen + 5, 'a few samples while all are busy');
    for (const q of QUEUE_NAMES) {
      assert.equal(running.get(q), DEFAULT_CONCURRENCY[q], q);
    }
    gate.resolve();
    await waitFor(() => done === 18 * perQueue, 'every job to run', 30_000);
    await workers.stop();
    await immich.stop();
    assert.ok(workers.most() <= repo.maxConnections, `${workers.most()} worker connections at the most`);
    assert.ok(workers.most() >= 2, `the sampling saw the workers' connections (${workers.most()})`);
    assert.ok(immich.most() <= 10, "Immich's pool, for the enqueues");
    await repo.close();
    await waitFor(async () => (await db.sessions(app)) === 0, 'the workers\' connections to close');
    assert.ok(await db.sessions('immich') >= 1, "Immich's connections stay");
  });

  test('the workers connect with a URL of their own when given one', async (db) => {
    const app = 'immich_jobs_url';
    let ran = 0;
    // the URL says who and which database; the socket directory (no TCP here) is an option
    const url = `postgres://postgres@localhost:${db.cluster.port}/${db.name}`;
    const repo = db.repo({
      workerConnection: { url, options: { host: db.cluster.socket, connection: { application_name: app } } },
      onJob: async () => { ran++; },
    });
    await repo.setup();
    await repo.startWorkers();
    await repo.queue({ name: 'SidecarCheck', data: { id: 'a' } });
    await waitFor(() => ran === 1, 'the job to run');
    assert.ok(await db.sessions(app) >= 1);
  });

  test("by default the workers connect as Immich's sql does, as application immich_jobs", async (db) => {
    let ran = 0;
    const repo = db.repo({ onJob: async () => { ran++; } });
    await repo.setup();
    await repo.startWorkers();
    await repo.queue({ name: 'SidecarCheck', data: { id: 'a' } });
    await waitFor(() => ran === 1, 'the job to run');
    const sessions = await db.query(`SELECT datname, usename FROM pg_stat_activity
                                     WHERE application_name = 'immich_jobs'`);
    assert.ok(sessions.length >= 1 && sessions.length <= 5);
    assert.ok(sessions.every((s) => s['datname'] === db.name && s['usename'] === 'postgres'));
  });
});
