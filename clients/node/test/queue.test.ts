/**
 * The queue handle, with each driver, against a real server: every method,
 * its errors, and the coalescing of concurrent enqueue() calls.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import {
  ClosedError, InvalidArgumentError, JobsClient, NotFoundError, QueueExistsError, QueueInUseError,
} from '../src/index.js';
import { DRIVERS, serverForThisFile } from './cluster.js';

const server = serverForThisFile();

for (const kind of DRIVERS) {
  describe(`queue handle (${kind})`, () => {
    let client: JobsClient;
    const name = (suffix: string): string => `${kind}.${suffix}`;

    before(() => {
      client = new JobsClient({ driver: server.cluster.driver(kind), listen: false });
    });

    after(async () => {
      await client.close();
    });

    it('creates, alters, pauses, resumes and drops a queue', async () => {
      const q = client.queue(name('admin'));
      await q.create({ concurrency: 3, leaseTimeout: 60_000, maxAttempts: 5, retryBackoff: 1_000 });
      const [row] = await server.cluster.sql<{ c: number; l: string; m: number; r: string }>(
        `SELECT concurrency AS c, lease_timeout::text AS l, max_attempts AS m, retry_backoff::text AS r
           FROM immich_jobs.queue WHERE queue_name = $1`, [q.name]);
      assert.deepEqual(row, { c: 3, l: '00:01:00', m: 5, r: '00:00:01' });
      await assert.rejects(q.create(), QueueExistsError);
      await q.create({ ifNotExists: true, concurrency: 9 });
      assert.equal((await q.counts()).concurrency, 3, 'ifNotExists leaves the queue as it is');

      await q.alter({ leaseTimeout: 120_000 });
      await q.setConcurrency(7);
      const [altered] = await server.cluster.sql<{ c: number; l: string }>(
        'SELECT concurrency AS c, lease_timeout::text AS l FROM immich_jobs.queue WHERE queue_name = $1',
        [q.name]);
      assert.deepEqual(altered, { c: 7, l: '00:02:00' });

      await q.pause();
      assert.equal((await q.counts()).paused, true);
      await q.resume();
      assert.equal((await q.counts()).paused, false);

      await q.enqueue('x');
      const [claimed] = await server.cluster.sql(`SELECT * FROM immich_jobs.claim($1, 'w')`, [q.name]);
      assert.ok(claimed);
      await assert.rejects(q.drop(), QueueInUseError);
      await q.drop({ force: true });
      await assert.rejects(q.counts(), NotFoundError);
    });

    it('throws typed errors with their SQLSTATE', async () => {
      const missing = client.queue(name('missing'));
      await assert.rejects(missing.enqueue('x'), (err: unknown) => {
        assert.ok(err instanceof NotFoundError);
        assert.equal(err.code, '42704');
        assert.match(err.message, /does not exist/);
        return true;
      });
      await assert.rejects(client.queue('bad name').create(), (err: unknown) => {
        assert.ok(err instanceof InvalidArgumentError);
        assert.equal(err.code, '22023');
        return true;
      });
      await assert.rejects(client.queue(name('c0')).create({ concurrency: 0 }), InvalidArgumentError);
    });

    it('enqueues with every option, and checks a job before sending it', async () => {
      const q = client.queue(name('enqueue'));
      await q.create();
      const runAt = new Date(Date.now() + 3_600_000);
      const id = await q.enqueue('thumb', { assetId: 'a1', n: [1, 2] },
        { priority: 5, runAt, dedupKey: 'k1', maxAttempts: 7 });
      assert.match(id, /^[0-9]+$/);
      const [job] = await q.jobs();
      assert.ok(job);
      assert.equal(job.id, id);
      assert.equal(job.name, 'thumb');
      assert.deepEqual(job.payload, { assetId: 'a1', n: [1, 2] });
      assert.equal(job.state, 'delayed');
      assert.equal(job.priority, 5);
      assert.equal(job.maxAttempts, 7);
      assert.equal(job.dedupKey, 'k1');
      assert.equal(job.runAt.getTime(), runAt.getTime());
      assert.equal(job.startedAt, null);
      // the same dedup key: that job's id, nothing added
      assert.equal(await q.enqueue('thumb', {}, { dedupKey: 'k1' }), id);
      assert.equal((await q.counts()).delayed, 1);

      for (const bad of [
        () => q.enqueue(''),
        () => q.enqueue('x'.repeat(256)),
        () => q.enqueue('x', {}, { priority: 1.5 }),
        () => q.enqueue('x', {}, { maxAttempts: 0 }),
        () => q.enqueue('x', {}, { runAt: new Date(Number.NaN) }),
        () => q.enqueue('x', {}, { dedupKey: '' }),
        () => q.enqueue('x', { n: 1n }),
      ]) {
        await assert.rejects(bad(), InvalidArgumentError);
      }
      assert.equal((await q.counts()).delayed, 1, 'nothing was added');
    });

    it('coalesces concurrent enqueues into few transactions, each caller getting its id', async () => {
      const q = client.queue(name('coalesce'));
      await q.create();
      const ids = await Promise.all(Array.from({ length: 300 }, (_, i) => q.enqueue('j', { i })));
      assert.equal(new Set(ids).size, 300, 'every caller has its own id');
      const rows = await server.cluster.sql<{ id: string; i: number }>(
        `SELECT job_id::text AS id, (payload->>'i')::int AS i
           FROM immich_jobs.job WHERE job_id = ANY ($1::bigint[])`, [ids]);
      assert.equal(rows.length, 300);
      for (const row of rows) {
        assert.equal(ids[row.i], row.id, `job ${row.i} has the id its caller got`);
      }
      // each transaction that added jobs is a distinct xmin
      const [{ xacts }] = await server.cluster.sql<{ xacts: string }>(
        `SELECT count(DISTINCT xmin::text) AS xacts FROM immich_jobs.job
          WHERE job_id = ANY ($1::bigint[])`, [ids]) as [{ xacts: string }];
      assert.ok(Number(xacts) <= 5, `300 enqueues in ${xacts} transactions`);

      // within one batch: a dedup key given twice gives one job, both callers its id
      const [a, b] = await Promise.all([
        q.enqueue('d', {}, { dedupKey: 'same' }), q.enqueue('d', {}, { dedupKey: 'same' })]);
      assert.equal(a, b);
    });

    it('fails only the caller whose job the database refuses in a coalesced batch', async () => {
      const q = client.queue(name('badbatch'));
      await q.create();
      const results = await Promise.allSettled([
        q.enqueue('good1'), q.enqueue('bad\u0000name'), q.enqueue('good2')]);
      assert.equal(results[0]!.status, 'fulfilled');
      assert.equal(results[1]!.status, 'rejected');
      assert.equal(results[2]!.status, 'fulfilled');
      assert.equal((await q.counts()).waiting, 2);
    });

    it('enqueues many jobs all or nothing, across several statements', async () => {
      const q = client.queue(name('many'));
      await q.create();
      const jobs = Array.from({ length: 2_500 }, (_, i) => ({ name: 'n', payload: { i } }));
      assert.equal(await q.enqueueMany(jobs, { chunkSize: 1_000 }), 2_500);
      assert.equal((await q.counts()).waiting, 2_500);
      assert.equal(await q.enqueueMany([]), 0);
      // a job the database refuses in the third statement: nothing is added
      const bad = [...jobs, { name: 'bad\u0000' }];
      await assert.rejects(q.enqueueMany(bad, { chunkSize: 1_000 }));
      assert.equal((await q.counts()).waiting, 2_500);
      // checked before anything is sent
      await assert.rejects(q.enqueueMany([{ name: 'ok' }, { name: '' }]), InvalidArgumentError);
      // dedup keys: jobs whose key is taken are not added
      assert.equal(await q.enqueueMany([{ name: 'd', dedupKey: 'x' }, { name: 'd', dedupKey: 'x' }]), 1);
    });

    it('lists jobs by state, retries failed ones, clears and cancels', async () => {
      const q = client.queue(name('admin2'));
      await q.create({ maxAttempts: 1 });
      const [a, b] = await Promise.all([q.enqueue('a'), q.enqueue('b')]);
      await q.enqueue('later', {}, { runAt: new Date(Date.now() + 3_600_000) });
      const [claimed] = await server.cluster.sql<{ job_id: string; lease_token: string }>(
        `SELECT job_id::text, lease_token::text FROM immich_jobs.claim($1, 'w')`, [q.name]);
      assert.equal(claimed!.job_id, a);
      await server.cluster.sql('SELECT immich_jobs.fail($1, $2, $3)', [a, claimed!.lease_token, 'boom']);
      const failed = await q.jobs({ states: ['failed'] });
      assert.deepEqual(failed.map((j) => [j.id, j.lastError, j.workerId]), [[a, 'boom', 'w']]);
      assert.ok(failed[0]!.finishedAt instanceof Date);
      assert.equal((await q.jobs({ limit: 2 })).length, 2);
      assert.equal(await q.retryFailed(), 1);
      assert.equal((await q.counts()).waiting, 2);
      assert.equal(await q.cancel(b), true);
      assert.equal(await q.cancel(b), false);
      assert.equal(await q.clear('cancelled'), 1);
      assert.equal(await q.clear('delayed'), 1);
      assert.equal(await q.clear(), 1);
      assert.deepEqual(await q.jobs(), []);
      await assert.rejects(q.cancel('999999999'), NotFoundError);
    });

    it('refuses calls once closed', async () => {
      const other = new JobsClient({ driver: server.cluster.driver(kind), listen: false });
      const q = other.queue(name('closed'));
      await q.create();
      await other.close();
      await assert.rejects(q.enqueue('x'), ClosedError);
      assert.throws(() => other.queue('x'), ClosedError);
    });
  });
}
