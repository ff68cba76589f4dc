/**
 * A worker process of the demo: what Immich's microservices process is, as
 * far as the queues go.  It has Immich's own postgres.js pool (max 10), an
 * ImmichJobRepository on it (clients/immich), one worker per queue at
 * Immich's default concurrency, and handlers that take simulated time and
 * queue the next jobs of the chain when they succeed, as Immich's onDone
 * does.  Each handler run is recorded (records.ts) before and after.
 *
 * It never handles a database error itself beyond what Immich would: the
 * repository's client retries on its own, and its 'error' events are only
 * counted.  If anything escaped (an uncaught exception, an unhandled
 * rejection) the process would die, and the driver would say so.
 */
import { spawn } from 'node:child_process';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

import postgres from 'postgres';
import { ImmichJobRepository, type JobItem, jobOptions as immichJobOptions } from 'immich-jobs-immich';

import {
  DURATION_MS, LIBRARY_ID, Library, assetId, assetPath, indexOfAsset, indexOfPath, keyOf, personId,
  settingsFromEnv,
} from './model.js';
import { RecordWriter, endLine, lostLine, nowUs, startLine } from './records.js';

/** What the repository passes about a job (its third argument of onJob, when it has one). */
interface JobContext {
  id: string;
  attempt: number;
  signal?: AbortSignal;
}

interface Item {
  name: string;
  data?: Record<string, unknown>;
}

const settings = settingsFromEnv();
const index = process.env['DEMO_WORKER_INDEX'] ?? '0';
const library = new Library(settings.assets);
const records = new RecordWriter(join(settings.runDir, 'records', `worker-${index}-${process.pid}.records`));

/*
 * fetch_types: false on every postgres.js instance.  With the default (true)
 * each new connection first queries pg_type, and postgres.js drops that
 * query's promise: a connection terminated (or a server that crashes) at
 * that moment kills the process with an unhandled rejection
 * (porsager/postgres#1192, #1223).  The demo met it; Immich's pool needs
 * the same setting.
 */
const sql = postgres({
  // Immich's pool: postgres.js, at most 10 connections per process
  host: settings.host,
  database: settings.database,
  max: 10,
  connect_timeout: 10,
  fetch_types: false,
  // postgres.js waits up to 20 s between reconnects after failures in a row
  // (clients/node's README): reconnect at once, as the queue's client does
  backoff: () => 0,
  connection: { application_name: `immich-w${index}` },
  onnotice: () => undefined,
});

let errors = 0;
let lastError = '';
/** Does the repository pass each job's id and attempt to onJob?  Known once the first job runs. */
let jobInfo: boolean | undefined;

/**
 * Immich's options of a job.  When the repository does not pass job ids,
 * the records name jobs by the uid the demo puts in their data; an enqueue
 * retried after its connection broke could then add one uid twice, so each
 * job gets its uid as jobId too (dedup: the retry adds nothing).
 */
function jobOptions(item: JobItem): ReturnType<typeof immichJobOptions> {
  const options = immichJobOptions(item);
  const uid = (item.data as Record<string, unknown> | undefined)?.['uid'];
  if (jobInfo !== false || options?.jobId !== undefined || typeof uid !== 'string') {
    return options;
  }
  return { ...options, jobId: `uid:${uid}` };
}

const repo = new ImmichJobRepository({
  sql,
  workerConnection: {
    options: {
      host: settings.host,
      database: settings.database,
      fetch_types: false,
      connection: { application_name: `immich_jobs-w${index}` },
    },
  },
  leaseTimeoutMs: settings.leaseMs,
  jobOptions,
  onJob: (queueName: string, item: Item, job?: JobContext) => runJob(queueName, item, job),
});
repo.on('error', (err: Error) => {
  // the client retries on its own; the demo counts these and keeps them in logs/worker-N.log
  errors++;
  lastError = err.message;
  process.stderr.write(`${new Date().toISOString()} queue client: ${err.name}: ${err.message}\n`);
});

/** Did the connection fail (rather than the statement)? */
function connectionFailure(err: unknown): boolean {
  const code = String((err as { code?: unknown })?.code ?? '');
  // SQLSTATE 08xxx (connection), 57P01-57P03 (terminated, shutting down, starting up);
  // postgres.js's own codes (CONNECTION_CLOSED, CONNECT_TIMEOUT...) and the system's (ECONNREFUSED...)
  return /^08|^57P0[123]$/.test(code) || !/^[0-9A-Z]{5}$/.test(code);
}

/** A query of the application's own (not the queue's), retried while the server is away. */
async function appQuery<T>(run: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + 60_000;
  let delay = 100;
  for (;;) {
    try {
      return await run();
    } catch (err) {
      if (!connectionFailure(err) || Date.now() + delay > deadline) {
        throw err;
      }
      await sleep(delay);
      delay = Math.min(2_000, delay * 2);
    }
  }
}

// DURATION_SCALE (default 1) multiplies the simulated durations: a knob for tuning
const scale = Number(process.env['DURATION_SCALE'] || '1');

function pause(name: string): Promise<void> {
  const ms = (DURATION_MS[name] ?? 5) * scale;
  return ms > 0 ? sleep(ms) : Promise.resolve();
}

/** What Immich would do for each job; returns the jobs to queue next (onDone). */
async function handle(item: Item): Promise<Item[]> {
  const data = item.data ?? {};
  const id = data['id'] as string;
  switch (item.name) {
    case 'LibraryScanQueueAll':
      await pause(item.name);
      return [{ name: 'LibraryQueueSyncFiles', data: { id: LIBRARY_ID } }];

    case 'LibraryQueueSyncFiles': {
      await pause(item.name);
      const paths = library.paths();
      const jobs: Item[] = [];
      for (let first = 0; first < paths.length; first += settings.batch) {
        jobs.push({
          name: 'LibrarySyncFiles',
          data: { libraryId: LIBRARY_ID, paths: paths.slice(first, first + settings.batch) },
        });
      }
      return jobs;
    }

    case 'LibrarySyncFiles': {
      const paths = (data['paths'] ?? []) as string[];
      const rows = paths.map((path) => {
        const i = indexOfPath(path);
        return { id: assetId(i), path, type: library.isVideo(i) ? 'VIDEO' : 'IMAGE' };
      });
      await appQuery(() => sql`
        INSERT INTO asset (id, "originalPath", type, "libraryId")
        SELECT x.id, x.path, x.type, ${LIBRARY_ID}::uuid
          FROM json_to_recordset(${JSON.stringify(rows)}::text::json) AS x(id uuid, path text, type text)
        ON CONFLICT DO NOTHING`);
      await pause(item.name);
      return rows.map((row) => ({ name: 'SidecarCheck', data: { id: row.id, source: 'upload' } }));
    }

    case 'SidecarCheck':
      await pause(item.name);
      return [{ name: 'AssetExtractMetadata', data: { id, source: 'upload' } }];

    case 'AssetExtractMetadata':
      await pause(item.name);
      if (library.isPoison(indexOfAsset(id))) {
        throw new Error(`exiftool: ${assetPath(indexOfAsset(id))}: file format error`);
      }
      return [{ name: 'AssetGenerateThumbnails', data: { id, source: 'upload' } }];

    case 'AssetGenerateThumbnails': {
      await pause(item.name);
      const next: Item[] = [
        { name: 'SmartSearch', data: { id } },
        { name: 'AssetDetectFaces', data: { id } },
        { name: 'Ocr', data: { id } },
      ];
      if (library.isVideo(indexOfAsset(id))) {
        next.push({ name: 'AssetEncodeVideo', data: { id } });
      }
      return next;
    }

    case 'SmartSearch':
      await pause(item.name);
      return [{ name: 'AssetDetectDuplicates', data: { id } }];

    case 'AssetDetectFaces': {
      await pause(item.name);
      const i = indexOfAsset(id);
      const next: Item[] = [];
      for (const k of library.newPersons(i)) {
        next.push({ name: 'PersonGenerateThumbnail', data: { id: personId(i, k) } });
      }
      if (library.faces(i) > 0) {
        next.push({ name: 'FacialRecognitionQueueAll', data: { force: false, nightly: false } });
      }
      return next;
    }

    case 'DatabaseBackup':
      await backup();
      return [];

    default:
      await pause(item.name);
      return [];
  }
}

/** Immich's DatabaseBackup: pg_dumpall into a file (minutes on a real library, one snapshot throughout). */
function backup(): Promise<void> {
  const file = join(settings.runDir, 'backups', `immich-db-backup-${Date.now()}.sql`);
  return new Promise((resolve, reject) => {
    const child = spawn(join(settings.bindir, 'pg_dumpall'), ['-h', settings.host, '-l', settings.database,
      '-f', file], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      if (code === 0) {
        const size = statSync(file).size;
        process.send?.({ type: 'backup', file, size });
        resolve();
      } else {
        reject(new Error(`pg_dumpall exited with ${code ?? signal}: ${stderr.trim().split('\n').pop() ?? ''}`));
      }
    });
  });
}

let uids = 0;

/**
 * A job, as Immich's JobService runs it: the handler, then onDone; a
 * handler error is logged, not thrown (the job is completed anyway).
 *
 * The records name a job by the queue's job id and attempt when the
 * repository passes them (a third argument of onJob); else by a uid that
 * the demo puts in every job's data when it queues it.
 */
async function runJob(queueName: string, item: Item, job?: JobContext): Promise<void> {
  const data = item.data ?? {};
  jobInfo ??= job !== undefined;
  const jobId = job?.id ?? `u:${String(data['uid'] ?? '?')}`;
  const attempt = job?.attempt ?? 0;
  const start = nowUs();
  records.write(startLine(jobId, queueName, item.name, attempt, start));
  const signal = job?.signal;
  const lost = (): void => records.write(lostLine(jobId, queueName, item.name, attempt, start, nowUs()));
  if (signal?.aborted) {
    lost();
  } else {
    signal?.addEventListener('abort', lost, { once: true });
  }
  let outcome = 'ok';
  try {
    const next = await handle(item);
    if (next.length > 0) {
      await repo.queueAll(next.map((n) => ({ name: n.name, data: { ...n.data, uid: `${index}.${++uids}` } })));
    }
  } catch (err) {
    outcome = 'error';
    lastError = `${item.name}: ${(err as Error).message}`;
    // Immich logs it and goes on; so does the demo, in logs/worker-N.log
    process.stderr.write(`${new Date().toISOString()} ${item.name} (job ${jobId}) failed: ` +
      `${(err as Error).name}: ${(err as Error).message}\n`);
  }
  signal?.removeEventListener('abort', lost);
  records.write(endLine(jobId, queueName, item.name, attempt, start, nowUs(), outcome, keyOf(item.name, data)));
}

async function main(): Promise<void> {
  // a process started while the server restarts waits for it, as Immich's would be restarted
  await appQuery(() => repo.setup());
  repo.startWorkers();
  process.send?.({ type: 'ready' });
  const timer = setInterval(() => {
    process.send?.({ type: 'stats', errors, lastError });
  }, 1_000);
  process.on('message', (message: { type?: string }) => {
    if (message?.type === 'stop') {
      clearInterval(timer);
      void (async () => {
        await repo.close();
        await sql.end({ timeout: 2 });
        process.send?.({ type: 'stats', errors, lastError });
        process.disconnect?.();
        process.exit(0);
      })();
    }
  });
}

void main();
