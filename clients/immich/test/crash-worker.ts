/**
 * A microservices process that dies in the middle of a job: it starts the
 * workers, and the first job it gets kills it (SIGKILL: no release, no
 * completion, no heartbeat ever again), as an out-of-memory kill or a
 * crashing ffmpeg binding would.  Run by bullmq.test.ts:
 *
 *   CRASH_OPTIONS='{"host": ..., "database": ...}' CRASH_LEASE_MS=1000 node crash-worker.js
 */
import postgres from 'postgres';

import { ImmichJobRepository } from '../src/index.js';

const options = JSON.parse(process.env['CRASH_OPTIONS'] ?? '{}') as postgres.Options<Record<string, postgres.PostgresType>>;
const sql = postgres({ ...options, max: 2, onnotice: () => undefined });
const repo = new ImmichJobRepository({
  sql,
  leaseTimeoutMs: Number(process.env['CRASH_LEASE_MS'] ?? 1_000),
  workerId: `crash-${process.pid}`,
  logger: {},
  onJob: async (queue, item) => {
    process.stdout.write(`running ${item.name} of ${queue}\n`);
    process.kill(process.pid, 'SIGKILL');
    await new Promise(() => undefined);
  },
});
repo.on('error', () => undefined);
void repo.startWorkers();
