/**
 * Workers, with each driver, against a real server: batching, concurrency
 * (local and the queue's), heartbeats, leases lost and refused, handlers
 * that throw or never return, release on close, wake-ups by LISTEN and by
 * polling, and the connection budget.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { ClosedError, ConnectionError, JobsClient, LeaseLostError, type Job } from '../src/index.js';
import { DRIVERS, recording, serverForThisFile, waitFor } from './cluster.js';

const server = serverForThisFile();

/** A promise and its resolver. */
function deferred<T = void>(): { promise: Promise<T>; resolve: (value: T) => void } {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => { resolve = r; });
  return { promise, resolve };
}

async function jobState(id: string): Promise<{ state: string; attempt: number } | undefined> {
  const [row] = await server.cluster.sql<{ state: string; attempt: number }>(
    'SELECT state, attempt FROM immich_jobs.jobs WHERE job_id = $1', [id]);
  return row;
}

for (const kind of DRIVERS) {
  describe(`worker (${kind})`, () => {
    const name = (suffix: string): string => `${kind}.w.${suffix}`;

    it('runs every job once, completing the jobs that end together in one call', async () => {
      const driver = recording(server.cluster.driver(kind));
      const client = new JobsClient({ driver, listen: false });
      const q = client.queue(name('batch'));
      await q.create({ concurrency: 100 });
      await q.enqueueMany(Array.from({ length: 200 }, (_, i) => ({ name: 'n', payload: { i } })));
      const seen = new Map<number, number>();
      let running = 0;
      let most = 0;
      const worker = client.worker<{ i: number }>(q.name, async (job) => {
        running++;
        most = Math.max(most, running);
        seen.set(job.payload.i, (seen.get(job.payload.i) ?? 0) + 1);
        await new Promise((resolve) => setImmediate(resolve));
        running--;
      }, { concurrency: 8 });
      await waitFor(() => seen.size === 200, 'every job to run');
      await worker.close();
      assert.ok([...seen.values()].every((n) => n === 1), 'each job ran once');
      assert.ok(most <= 8, `at most 8 at once (${most})`);
      assert.deepEqual(await q.counts(), {
        paused: false, concurrency: 100, active: 0, waiting: 0, delayed: 0, failed: 0, completed: 200,
      });
      // completions travel in batches with the next claims, not one call per job
      const calls = driver.statements.filter((s) => s.text.includes('complete_and_claim'));
      const completions = calls.map((s) => (s.values[3] as string).split(',').filter((x) => x !== '{}').length);
      assert.equal(completions.reduce((a, b) => a + b, 0), 200);
      assert.ok(Math.max(...completions) > 1, 'some call completed several jobs');
      assert.ok(calls.length < 100, `${calls.length} calls for 200 jobs`);
      await client.close();
    });

    it('never runs more than the queue\'s concurrency over several workers', async () => {
      const client = new JobsClient({ driver: server.cluster.driver(kind), listen: false });
      const q = client.queue(name('limit'));
      await q.create({ concurrency: 3 });
      await q.enqueueMany(Array.from({ length: 60 }, () => ({ name: 'n' })));
      let running = 0;
      let most = 0;
      let done = 0;
      const handler = async (): Promise<void> => {
        running++;
        most = Math.max(most, running);
        await new Promise((resolve) => setTimeout(resolve, 5));
        running--;
        done++;
      };
      const workers = [1, 2, 3].map(() => client.worker(q.name, handler, { concurrency: 8 }));
      await waitFor(() => done === 60, 'the jobs to run');
      await Promise.all(workers.map((w) => w.close()));
      assert.ok(most <= 3, `at most 3 at once over 3 workers of 8 (${most})`);
      assert.equal(most, 3, 'and 3 did run at once');
      await client.close();
    });

    it('changes its concurrency at run time', async () => {
      const client = new JobsClient({ driver: server.cluster.driver(kind), listen: false });
      const q = client.queue(name('setconc'));
      await q.create({ concurrency: 100 });
      await q.enqueueMany(Array.from({ length: 40 }, () => ({ name: 'n' })));
      let running = 0;
      const gate = deferred();
      const worker = client.worker(q.name, async () => {
        running++;
        await gate.promise;
        running--;
      }, { concurrency: 1 });
      await waitFor(() => running === 1, 'one job to run');
      worker.setConcurrency(5);
      await waitFor(() => running === 5, 'five jobs to run');
      assert.equal(worker.active, 5);
      assert.throws(() => worker.setConcurrency(0), /concurrency/);
      worker.setConcurrency(2);
      gate.resolve();
      await waitFor(async () => (await q.counts()).waiting === 0 && running === 0, 'the queue to drain');
      await worker.close();
      await client.close();
    });

    it('heartbeats long jobs, so the reaper leaves them alone', async () => {
      const client = new JobsClient({ driver: server.cluster.driver(kind), listen: false });
      const q = client.queue(name('heartbeat'));
      await q.create({ leaseTimeout: 1_000 });
      const id = await q.enqueue('long');
      let runs = 0;
      const lost: string[] = [];
      const ended = deferred();
      const worker = client.worker(q.name, async () => {
        runs++;
        // three lease timeouts, with the reaper running every 100 ms
        await new Promise((resolve) => setTimeout(resolve, 3_000));
        ended.resolve();
      });
      worker.on('lost', (job) => lost.push(job.id));
      await ended.promise;
      await waitFor(async () => (await jobState(id)) === undefined, 'the job to complete');
      await worker.close();
      assert.equal(runs, 1);
      assert.deepEqual(lost, []);
      assert.equal((await q.counts()).completed, 1);
      await client.close();
    });

    it('aborts a job whose lease is lost, and reports nothing for it', async () => {
      const driver = recording(server.cluster.driver(kind));
      const client = new JobsClient({ driver, listen: false });
      const q = client.queue(name('lost'));
      await q.create({ leaseTimeout: 1_000 });
      const id = await q.enqueue('cancelled');
      const started = deferred<Job>();
      const worker = client.worker(q.name, async (job) => {
        started.resolve(job);
        await new Promise((resolve) => job.signal.addEventListener('abort', resolve));
      });
      const lost = deferred<Job>();
      worker.on('lost', (job) => lost.resolve(job));
      const job = await started.promise;
      assert.equal(await q.cancel(id), true);
      assert.equal(await lost.promise, job, 'the next heartbeat finds the lease gone');
      assert.ok(job.signal.reason instanceof LeaseLostError);
      await worker.close();
      const sent = driver.statements.filter((s) => s.text.includes('complete_and_claim'))
        .flatMap((s) => (s.values[3] as string).replace(/[{}]/g, '').split(',')).filter(Boolean);
      assert.ok(!sent.includes(id), 'its completion was never sent');
      assert.equal((await jobState(id))?.state, 'cancelled');
      await client.close();
    });

    it('aborts a job that is leased again while its handler still runs', async () => {
      const client = new JobsClient({ driver: server.cluster.driver(kind), listen: false, pollInterval: 50 });
      const q = client.queue(name('again'));
      await q.create({ concurrency: 2, leaseTimeout: 60_000 });
      const id = await q.enqueue('long');
      const started: Job[] = [];
      let running = 0;
      let most = 0;
      const worker = client.worker(q.name, async (job) => {
        started.push(job);
        running++;
        most = Math.max(most, running);
        await new Promise((resolve) => job.signal.addEventListener('abort', resolve));
        running--;
      }, { concurrency: 2 });
      const lost: Job[] = [];
      worker.on('lost', (job) => lost.push(job));
      await waitFor(() => started.length === 1, 'the job to start');
      // its lease expires behind the worker's back (an outage longer than
      // the lease), and the reaper puts it back at the head of the queue
      await server.cluster.sql(`UPDATE immich_jobs.job SET lease_expires_at = now() - interval '1 s'
                                 WHERE job_id = $1`, [id]);
      await server.cluster.sql('SELECT immich_jobs.reap()');
      await waitFor(() => started.length === 2, 'the job to be leased again');
      assert.equal(started[1]!.attempt, 2);
      assert.deepEqual(lost, [started[0]], 'the first run lost its lease');
      assert.ok(started[0]!.signal.reason instanceof LeaseLostError);
      assert.equal(worker.active, 1, 'the first run ended on its abort');
      await q.enqueue('other');
      await waitFor(() => started.length === 3, 'the other job to start');
      assert.ok(most <= 2, `never more than 2 at once (${most})`);
      await worker.close({ timeout: 100 });
      await client.close();
    });

    it('sends recent completions again when a connection fails', async () => {
      const driver = recording(server.cluster.driver(kind));
      const client = new JobsClient({ driver, pollInterval: 50 });
      const q = client.queue(name('resend'));
      await q.create({ concurrency: 10 });
      const ids = await q.enqueueMany([{ name: 'a' }, { name: 'b' }]).then(async () =>
        (await q.jobs()).map((j) => j.id));
      let done = 0;
      const worker = client.worker(q.name, () => { done++; }, { concurrency: 2 });
      const refused: string[] = [];
      worker.on('refused', (jobId) => refused.push(jobId));
      await waitFor(async () => done === 2 && (await q.counts()).completed === 2, 'both jobs');
      const before = driver.statements.length;
      // the LISTEN connection breaks (as in a crash): completions that may
      // not have reached the disk yet are sent again
      await server.cluster.sql(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                                 WHERE query LIKE 'LISTEN%' AND backend_type = 'client backend'`);
      await waitFor(() => driver.statements.slice(before).some((s) =>
        s.text.includes('complete_and_claim') && ids.every((id) => String(s.values[3]).includes(id))),
      'the completions to be sent again');
      await worker.close();
      assert.deepEqual(refused, [], 'their refusal (they were completed) is not reported');
      await client.close();
    });

    it('sends a completion again when its call gets no answer, before the lease runs out', async () => {
      // a driver that never answers the first call carrying a completion,
      // whatever timeout it is given (postgres.js was seen to do so after
      // its sessions were terminated)
      const real = server.cluster.driver(kind);
      let swallowed = 0;
      const driver = recording({
        get maxConnections() { return real.maxConnections; },
        query(text, values, options) {
          if (text.includes('complete_and_claim') && values[3] !== '{}' && swallowed === 0) {
            swallowed++;
            return new Promise(() => undefined);
          }
          return real.query(text, values, options);
        },
        transaction: (fn) => real.transaction(fn),
        listen: (channel, callbacks) => real.listen(channel, callbacks),
        end: () => real.end(),
      });
      const client = new JobsClient({ driver, listen: false, pollInterval: 50, callTimeout: 300 });
      const q = client.queue(name('unanswered'));
      await q.create({ leaseTimeout: 3_000 });
      const id = await q.enqueue('once');
      let runs = 0;
      const worker = client.worker(q.name, () => { runs++; });
      const errors: Error[] = [];
      worker.on('error', (err) => errors.push(err));
      const t0 = Date.now();
      await waitFor(async () => (await jobState(id)) === undefined, 'the job to be completed');
      const took = Date.now() - t0;
      await worker.close();
      assert.equal(swallowed, 1, 'the first completion got no answer');
      assert.equal(runs, 1, 'the job ran once');
      assert.ok(took < 3_000, `completed within its lease (${took} ms)`);
      assert.equal((await q.counts()).completed, 1);
      const timeout = errors.find((e) => (e.cause as { code?: unknown })?.code === 'QUERY_TIMEOUT');
      assert.ok(timeout instanceof ConnectionError && timeout.maybeApplied,
        `reported as a ConnectionError that may have applied (${errors.map((e) => e.message).join('; ')})`);
      await client.close();
    });

    it('gives up waiting for an answer after the timeout of a call', async () => {
      const driver = server.cluster.driver(kind);
      const t0 = Date.now();
      await assert.rejects(driver.query('SELECT pg_sleep(3)', [], { timeout: 200 }),
        (err: { code?: unknown }) => err.code === 'QUERY_TIMEOUT');
      const took = Date.now() - t0;
      assert.ok(took >= 190 && took < 2_000, `after about 200 ms (${took} ms)`);
      await driver.end();
    });

    if (kind === 'postgres') {
      it('does not send a call whose timeout passed while it waited for a connection', async () => {
        const driver = server.cluster.driver(kind, { max: 1 });
        await server.cluster.sql('CREATE TABLE IF NOT EXISTS gate_probe (n int)');
        const busy = driver.query('SELECT pg_catalog.pg_sleep(0.6)', []);
        await assert.rejects(driver.query('INSERT INTO gate_probe VALUES (1)', [], { timeout: 200 }),
          (err: { code?: unknown }) => err.code === 'QUERY_TIMEOUT');
        await busy;
        // the next call runs after the one that timed out would have
        const [row] = await driver.query('SELECT count(*)::int AS n FROM gate_probe', []);
        assert.equal(row?.['n'], 0, 'the INSERT was never sent');
        await driver.end();
      });
    }

    it('works without prepared statements (PgBouncer in transaction mode)', async () => {
      const client = new JobsClient({
        driver: server.cluster.driver(kind, { prepare: false }), listen: false, pollInterval: 50,
      });
      const q = client.queue(name('noprepare'));
      await q.create({ concurrency: 4 });
      await q.enqueueMany(Array.from({ length: 50 }, () => ({ name: 'n' })));
      await Promise.all([q.enqueue('single'), q.enqueue('single')]);
      let done = 0;
      const worker = client.worker(q.name, () => { done++; }, { concurrency: 4 });
      await waitFor(() => done === 52, 'every job to run');
      await worker.close();
      assert.equal((await q.counts()).completed, 52);
      await client.close();
    });

    it('reports a refused completion', async () => {
      const client = new JobsClient({ driver: server.cluster.driver(kind), listen: false });
      const q = client.queue(name('refused'));
      await q.create({ leaseTimeout: 60_000 });
      const id = await q.enqueue('cancelled-while-running');
      const go = deferred();
      const started = deferred();
      const worker = client.worker(q.name, async () => {
        started.resolve();
        await go.promise;
      });
      const refused = deferred<string>();
      worker.on('refused', (jobId) => refused.resolve(jobId));
      await started.promise;
      await q.cancel(id);
      go.resolve();
      assert.equal(await refused.promise, id);
      await worker.close();
      await client.close();
    });

    it('fails a job whose handler throws, with the error\'s message', async () => {
      const client = new JobsClient({ driver: server.cluster.driver(kind), listen: false });
      const q = client.queue(name('throws'));
      await q.create({ maxAttempts: 2, retryBackoff: 0 });
      const id = await q.enqueue('bad');
      const outcomes: string[] = [];
      const worker = client.worker(q.name, (job) => {
        if (job.attempt === 1) {
          throw new Error('synchronous failure');
        }
        return Promise.reject(new Error('ffmpeg exited with 1'));
      });
      worker.on('failed', (_job, _error, outcome) => outcomes.push(outcome));
      await waitFor(() => outcomes.length === 2, 'two failures');
      await worker.close();
      assert.deepEqual(outcomes, ['retrying', 'failed']);
      const [job] = await q.jobs({ states: ['failed'] });
      assert.equal(job?.id, id);
      assert.equal(job?.lastError, 'ffmpeg exited with 1');
      assert.equal(job?.attempt, 2);
      await client.close();
    });

    it('on close, waits for running jobs, then releases those that never return', async () => {
      const client = new JobsClient({ driver: server.cluster.driver(kind), listen: false });
      const q = client.queue(name('close'));
      await q.create({ concurrency: 10 });
      const ids = await Promise.all([q.enqueue('quick'), q.enqueue('never')]);
      const started: Job[] = [];
      const worker = client.worker(q.name, async (job) => {
        started.push(job);
        if (job.name === 'quick') {
          await new Promise((resolve) => setTimeout(resolve, 200));
          return;
        }
        await new Promise(() => undefined); // never settles
      }, { concurrency: 2 });
      await waitFor(() => started.length === 2, 'both jobs to start');
      const t0 = Date.now();
      await worker.close({ timeout: 500 });
      assert.ok(Date.now() - t0 >= 450, 'close waited for the timeout');
      const never = started.find((j) => j.name === 'never')!;
      assert.ok(never.signal.reason instanceof ClosedError);
      assert.equal(await jobState(ids[0]), undefined, 'the quick job completed');
      assert.deepEqual(await jobState(ids[1]), { state: 'waiting', attempt: 0 },
        'the other is waiting again, its attempt given back');
      assert.equal((await q.counts()).active, 0);
      await client.close();
    });

    it('wakes up on NOTIFY, without polling', async () => {
      const driver = recording(server.cluster.driver(kind));
      const client = new JobsClient({ driver, pollInterval: 60_000, listenPollInterval: 60_000 });
      const q = client.queue(name('listen'));
      await q.create();
      const picked: number[] = [];
      const worker = client.worker(q.name, () => { picked.push(Date.now()); });
      // the worker's first claim comes back empty: then it waits
      await waitFor(async () => (await server.cluster.sql(
        `SELECT 1 FROM pg_stat_activity WHERE query LIKE 'LISTEN%'`)).length === 1, 'LISTEN');
      await waitFor(() => driver.answered('complete_and_claim') >= 1, 'the first claim');
      for (let i = 0; i < 3; i++) {
        const t0 = Date.now();
        await q.enqueue('wake');
        await waitFor(() => picked.length === i + 1, 'the job to be picked up', 5_000);
        assert.ok(picked[i]! - t0 < 2_000, `picked up ${picked[i]! - t0} ms after the enqueue`);
      }
      await worker.close();
      await client.close();
    });

    it('polls when LISTEN is off (PgBouncer in transaction mode)', async () => {
      const driver = recording(server.cluster.driver(kind));
      const client = new JobsClient({ driver, listen: false, pollInterval: 100 });
      const q = client.queue(name('poll'));
      await q.create();
      let picked = 0;
      const worker = client.worker(q.name, () => { picked++; });
      await waitFor(() => driver.answered('complete_and_claim') >= 2, 'two empty claims: polling');
      await q.enqueue('polled');
      await waitFor(() => picked === 1, 'the job to be polled', 5_000);
      const listening = await server.cluster.sql(`SELECT 1 FROM pg_stat_activity WHERE query LIKE 'LISTEN%'`);
      assert.equal(listening.length, 0, 'no LISTEN connection');
      await worker.close();
      await client.close();
    });

    it('stays within its connections, whatever the number of queues and workers', async () => {
      const app = `budget_${kind}`;
      const client = new JobsClient({ driver: server.cluster.driver(kind, { applicationName: app }) });
      const queues = [1, 2, 3, 4, 5, 6].map((i) => client.queue(name(`budget${i}`)));
      let done = 0;
      const workers = [];
      for (const q of queues) {
        await q.create({ concurrency: 5 });
        workers.push(client.worker(q.name, async () => {
          await new Promise((resolve) => setTimeout(resolve, 2));
          done++;
        }, { concurrency: 5 }));
      }
      let most = 0;
      const sampling = setInterval(() => {
        server.cluster.sql<{ n: string }>('SELECT count(*) AS n FROM pg_stat_activity WHERE application_name = $1', [app])
          .then(([row]) => { most = Math.max(most, Number(row?.n ?? 0)); }, () => undefined);
      }, 20);
      await Promise.all(queues.map((q) => q.enqueueMany(
        Array.from({ length: 100 }, () => ({ name: 'n' })))));
      await Promise.all(queues.map((q) => Promise.all(
        Array.from({ length: 20 }, () => q.enqueue('single')))));
      await waitFor(() => done === 720, 'every job to run', 30_000);
      clearInterval(sampling);
      assert.ok(client.maxConnections === 5, 'the budget: a pool of 4, and LISTEN');
      assert.ok(most <= 5, `${most} connections at the most`);
      assert.ok(most >= 2, 'the sampling saw the connections');
      await Promise.all(workers.map((w) => w.close()));
      await client.close();
      await waitFor(async () => (await server.cluster.sql(
        'SELECT 1 FROM pg_stat_activity WHERE application_name = $1', [app])).length === 0,
      'the connections to close');
    });
  });
}
