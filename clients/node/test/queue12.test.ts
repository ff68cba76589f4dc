/**
 * What the client adds for immich_jobs 1.2, with each driver, against a
 * real server: dedupMode 'kept', drain, cancelByKey and jobCounts; and that
 * a client that does not ask for 'kept' still works against a 1.1 server.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import pg from 'pg';

import {
  DatabaseError, InvalidArgumentError, JobsClient, NotFoundError, type Queue,
} from '../src/index.js';
import { pgDriver } from '../src/pg.js';
import { postgresDriver } from '../src/postgres.js';
import type { Driver } from '../src/driver.js';
import { type Cluster, DRIVERS, type DriverKind, recording, serverForThisFile } from './cluster.js';

const server = serverForThisFile();

/** Lease a job of the queue as a worker would; resolves to its id and token. */
async function claim(queue: string): Promise<{ id: string; token: string }> {
  const [row] = await server.cluster.sql<{ id: string; token: string }>(
    `SELECT job_id::text AS id, lease_token::text AS token FROM immich_jobs.claim($1, 'w')`, [queue]);
  assert.ok(row, `a job of ${queue} to claim`);
  return row;
}

async function jobsWithKey(queue: string, key: string): Promise<{ id: string; state: string }[]> {
  return server.cluster.sql<{ id: string; state: string }>(
    `SELECT job_id::text AS id, state FROM immich_jobs.jobs
      WHERE queue_name = $1 AND dedup_key = $2 ORDER BY job_id`, [queue, key]);
}

/** A driver of the given kind on another database of the server. */
function driverOn(cluster: Cluster, kind: DriverKind, database: string): Driver {
  if (kind === 'pg') {
    return pgDriver({ ...cluster.pgConfig, database, max: 2, application_name: 'immich_jobs_test' });
  }
  return postgresDriver({
    options: {
      host: cluster.socket, port: cluster.port, user: 'postgres', database, max: 2,
      connect_timeout: 2, onnotice: () => undefined,
    },
  });
}

for (const kind of DRIVERS) {
  describe(`1.2 queue methods (${kind})`, () => {
    let client: JobsClient;
    const name = (suffix: string): string => `${kind}.v12.${suffix}`;
    const create = async (suffix: string, settings: Parameters<Queue['create']>[0] = {}): Promise<Queue> => {
      const q = client.queue(name(suffix));
      await q.create(settings);
      return q;
    };

    before(() => {
      client = new JobsClient({ driver: server.cluster.driver(kind), listen: false });
    });

    after(async () => {
      await client.close();
    });

    it("dedupMode 'kept' blocks the key while a job is waiting, delayed, active or failed", async () => {
      const q = await create('kept', { maxAttempts: 1 });
      const kept = { dedupKey: 'k', dedupMode: 'kept' } as const;
      // waiting
      const first = await q.enqueue('a', { n: 1 }, kept);
      assert.equal(await q.enqueue('a', { n: 2 }, kept), first, 'blocked while waiting');
      // active: 'unstarted' would let a new job in now, 'kept' does not
      const leased = await claim(q.name);
      assert.equal(leased.id, first);
      assert.equal(await q.enqueue('a', { n: 3 }, kept), first, 'blocked while active');
      // failed (its last attempt)
      const [failed] = await server.cluster.sql<{ outcome: string }>(
        'SELECT immich_jobs.fail($1, $2, $3) AS outcome', [leased.id, leased.token, 'boom']);
      assert.equal(failed?.outcome, 'failed');
      assert.equal(await q.enqueue('a', { n: 4 }, kept), first, 'blocked while failed');
      assert.deepEqual(await jobsWithKey(q.name, 'k'), [{ id: first, state: 'failed' }]);
      // removed: free again
      assert.equal(await q.clear('failed'), 1);
      const second = await q.enqueue('a', { n: 5 }, kept);
      assert.notEqual(second, first);
      // completed: free again
      const again = await claim(q.name);
      await server.cluster.sql('SELECT immich_jobs.complete($1, $2)', [again.id, again.token]);
      const third = await q.enqueue('a', { n: 6 }, { ...kept, runAt: new Date(Date.now() + 3_600_000) });
      assert.ok(third !== first && third !== second);
      // delayed
      assert.equal(await q.enqueue('a', { n: 7 }, kept), third, 'blocked while delayed');
      assert.deepEqual(await jobsWithKey(q.name, 'k'), [{ id: third, state: 'delayed' }]);
    });

    it("sends the 8-argument enqueue only for a batch with a 'kept' job", async () => {
      const driver = recording(server.cluster.driver(kind));
      const other = new JobsClient({ driver, listen: false });
      const q = other.queue(name('statements'));
      await q.create();
      await q.enqueue('plain', {}, { dedupKey: 'p', dedupMode: 'unstarted' });
      await q.enqueue('no-key', {}, { dedupMode: 'kept' });
      const plain = driver.statements.filter((s) => s.text.includes('immich_jobs.enqueue('));
      assert.equal(plain.length, 2);
      assert.ok(plain.every((s) => !s.text.includes('dedup_mode') && !String(s.values[1]).includes('dedup_mode')),
        'no dedup mode is sent: 1.1 understands these');
      // a coalesced batch with one 'kept' job among others
      const [x, y, z] = await Promise.all([
        q.enqueue('x'), q.enqueue('y', {}, { dedupKey: 'y', dedupMode: 'kept' }), q.enqueue('z')]);
      const batch = driver.statements.filter((s) => s.text.includes('dedup_mode'));
      assert.equal(batch.length, 1, 'one statement for the three');
      assert.equal(new Set([x, y, z]).size, 3);
      assert.equal((await jobsWithKey(q.name, 'y'))[0]?.id, y);
      await other.close();
    });

    it("enqueueMany with dedupMode 'kept', all or nothing", async () => {
      const q = await create('many');
      const kept = { dedupKey: 'm', dedupMode: 'kept' } as const;
      assert.equal(await q.enqueueMany([{ name: 'a', ...kept }, { name: 'a', ...kept }, { name: 'b' }]), 2);
      await claim(q.name);
      assert.equal(await q.enqueueMany([{ name: 'a', ...kept }]), 0, 'blocked while active');
      await assert.rejects(q.enqueueMany([{ name: 'a', dedupKey: 'x', dedupMode: 'other' as 'kept' }]),
        InvalidArgumentError);
      await assert.rejects(q.enqueue('a', {}, { dedupKey: 'x', dedupMode: 'KEPT' as 'kept' }),
        InvalidArgumentError);
    });

    it('drains waiting jobs, and delayed ones only when asked', async () => {
      const q = await create('drain', { concurrency: 5, maxAttempts: 1 });
      await q.enqueueMany([{ name: 'f' }, { name: 'a' }]);
      const failing = await claim(q.name);
      await server.cluster.sql('SELECT immich_jobs.fail($1, $2)', [failing.id, failing.token]);
      await claim(q.name);
      await q.enqueueMany([{ name: 'w1' }, { name: 'w2', priority: 3 }, { name: 'w3' }]);
      await q.enqueue('later', {}, { runAt: new Date(Date.now() + 3_600_000) });
      assert.equal(await q.drain(), 3);
      assert.deepEqual(await q.jobCounts(),
        { active: 1, completed: 0, failed: 1, delayed: 1, waiting: 0, paused: 0 });
      assert.equal(await q.drain(), 0);
      await q.enqueue('w4');
      assert.equal(await q.drain({ delayed: true }), 2);
      assert.deepEqual(await q.jobCounts(),
        { active: 1, completed: 0, failed: 1, delayed: 0, waiting: 0, paused: 0 });
      await assert.rejects(client.queue(name('nope')).drain(), NotFoundError);
    });

    it('cancels by key: the newest payload, failed jobs too, never an active one', async () => {
      const q = await create('bykey', { concurrency: 5, maxAttempts: 1 });
      // a failed job with the key, then a waiting one (mode 'unstarted' lets both in)
      await q.enqueue('n', { v: 'old' }, { dedupKey: 'album/user' });
      const old = await claim(q.name);
      await server.cluster.sql('SELECT immich_jobs.fail($1, $2)', [old.id, old.token]);
      await q.enqueue('n', { v: 'new' }, { dedupKey: 'album/user', runAt: new Date(Date.now() + 60_000) });
      assert.deepEqual(await q.cancelByKey('album/user'), { v: 'new' });
      assert.deepEqual((await jobsWithKey(q.name, 'album/user')).map((j) => j.state),
        ['cancelled', 'cancelled']);
      assert.equal(await q.cancelByKey('album/user'), undefined, 'nothing left to cancel');
      assert.equal(await q.cancelByKey('never'), undefined);
      // an active job goes on
      await q.enqueue('n', { v: 'running' }, { dedupKey: 'busy', dedupMode: 'kept' });
      const running = await claim(q.name);
      assert.equal(await q.cancelByKey('busy'), undefined);
      assert.deepEqual(await jobsWithKey(q.name, 'busy'), [{ id: running.id, state: 'active' }]);
      // a payload that is not an object comes back as it was
      await q.enqueue('n', [1, 'two'], { dedupKey: 'array' });
      assert.deepEqual(await q.cancelByKey('array'), [1, 'two']);
      await assert.rejects(client.queue(name('nope')).cancelByKey('k'), NotFoundError);
    });

    it("counts as BullMQ's getJobCounts: a paused queue's waiting jobs are 'paused'", async () => {
      const q = await create('counts', { concurrency: 3 });
      await q.enqueueMany([{ name: 'a' }, { name: 'b' }, { name: 'c' }]);
      await q.enqueue('later', {}, { runAt: new Date(Date.now() + 3_600_000) });
      const done = await claim(q.name);
      await server.cluster.sql('SELECT immich_jobs.complete($1, $2)', [done.id, done.token]);
      await claim(q.name);
      assert.deepEqual(await q.jobCounts(),
        { active: 1, completed: 1, failed: 0, delayed: 1, waiting: 1, paused: 0 });
      await q.pause();
      assert.deepEqual(await q.jobCounts(),
        { active: 1, completed: 1, failed: 0, delayed: 1, waiting: 0, paused: 1 });
      await q.resume();
      assert.equal((await q.jobCounts()).waiting, 1);
      await assert.rejects(client.queue(name('nope')).jobCounts(), NotFoundError);
    });
  });
}

describe('against a 1.1 server', () => {
  const database = 'v11';

  before(async () => {
    await server.cluster.sql(`CREATE DATABASE ${database}`);
    const admin = new pg.Client({ ...server.cluster.pgConfig, database });
    await admin.connect();
    try {
      await admin.query("CREATE EXTENSION immich_jobs VERSION '1.1'");
    } finally {
      await admin.end();
    }
  });

  for (const kind of DRIVERS) {
    it(`enqueues as before, and refuses only 'kept' (${kind})`, async () => {
      const client = new JobsClient({ driver: driverOn(server.cluster, kind, database), listen: false });
      const q = client.queue(`old.${kind}`);
      await q.create();
      const id = await q.enqueue('a', {}, { dedupKey: 'k' });
      assert.equal(await q.enqueue('a', {}, { dedupKey: 'k', dedupMode: 'unstarted' }), id);
      const ids = await Promise.all([q.enqueue('b'), q.enqueue('c', {}, { priority: 2 })]);
      assert.equal(new Set(ids).size, 2);
      assert.equal(await q.enqueueMany([{ name: 'd', dedupKey: 'k2', dedupMode: 'unstarted' }, { name: 'e' }]), 2);
      assert.equal((await q.counts()).waiting, 5);
      await assert.rejects(q.enqueue('f', {}, { dedupKey: 'k3', dedupMode: 'kept' }), DatabaseError);
      await assert.rejects(q.enqueueMany([{ name: 'f', dedupKey: 'k3', dedupMode: 'kept' }]), DatabaseError);
      assert.equal((await q.counts()).waiting, 5, 'nothing more was added');
      await client.close();
    });
  }
});
