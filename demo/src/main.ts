/**
 * The demo's driver (tools/demo starts it on a throwaway server): an Immich
 * library scan through immich_jobs, in worker processes that the chaos loop
 * kills, while every session of theirs is terminated and the server is
 * restarted under them; a live view each second; a verdict at the end, from
 * records that do not trust the queue.  Exits 0 only when every check held.
 */
import { type ChildProcess, fork, spawn } from 'node:child_process';
import { appendFileSync, mkdirSync, openSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';

import postgres from 'postgres';
import { DEFAULT_CONCURRENCY, ImmichJobRepository } from 'immich-jobs-immich';

import { Library, settingsFromEnv } from './model.js';
import { RecordReader, nowUs } from './records.js';
import { type Exit, type Kill, type Restart, type Termination, printChecks, verdict } from './verdict.js';
import { LiveView, type QueueRow, clock, fmt, tty } from './view.js';

const settings = settingsFromEnv();
const library = new Library(settings.assets);
const expectedKeys = library.allKeys(settings.batch);
const here = dirname(fileURLToPath(import.meta.url));
const recordsDir = join(settings.runDir, 'records');
const logsDir = join(settings.runDir, 'logs');
mkdirSync(recordsDir, { recursive: true });
mkdirSync(logsDir, { recursive: true });
mkdirSync(join(settings.runDir, 'backups'), { recursive: true });
const chaosFile = join(settings.runDir, 'chaos.records');
const pgdata = process.env['PGDATA'] ?? join(settings.runDir, 'data');
const serverLog = join(settings.runDir, 'server.log');

// a rough estimate of the run, to scale the chaos to it: about 100 files a second on 2 cores
const estimateMs = (settings.assets / 100) * 1000;
const killEveryMs = Math.min(8_000, Math.max(2_000, estimateMs / 12));
const deadlineMs = Math.max(90_000, estimateMs * 5);

// the driver's own connection: sampling, administration (not counted with the workers)
const sql = postgres({
  host: settings.host,
  database: settings.database,
  max: 2,
  connect_timeout: 3,
  idle_timeout: 0,
  fetch_types: false,   // see worker.ts
  backoff: () => 0.2,
  connection: { application_name: 'demo-driver' },
  onnotice: () => undefined,
} as postgres.Options<Record<string, postgres.PostgresType>>);

// ---------------------------------------------------------------- worker processes

interface Proc {
  index: number;
  child: ChildProcess;
  pid: number;
  ready: boolean;
  killed: boolean;
  stopping: boolean;
  exited: boolean;
  errors: number;
  lastError: string;
  logFile: string;
  readyAt: number;
  /** reported as hung (once) */
  stalled: boolean;
}

const procs = new Map<number, Proc>();
let nextIndex = 1;
const unexpectedExits: Exit[] = [];
/** worker processes with a handler that did not end for STALL_MS */
const stalls: { index: number; pid: number; t: number; activity: string }[] = [];
const STALL_MS = 20_000;
const backups: { size: number }[] = [];
let clientErrors = 0;
const errorsOfDead = { n: 0 };

function tail(file: string): string {
  try {
    const text = readFileSync(file, 'utf8').trim().split('\n');
    return text.slice(-15).join('\n      ').slice(0, 3000);
  } catch {
    return '';
  }
}

function startWorker(): Proc {
  const index = nextIndex++;
  const logFile = join(logsDir, `worker-${index}.log`);
  const fd = openSync(logFile, 'a');
  const child = fork(join(here, 'worker.js'), [], {
    env: { ...process.env, DEMO_WORKER_INDEX: String(index) },
    stdio: ['ignore', fd, fd, 'ipc'],
  });
  const proc: Proc = {
    index, child, pid: child.pid ?? 0, ready: false, killed: false, stopping: false, exited: false,
    errors: 0, lastError: '', logFile, readyAt: 0, stalled: false,
  };
  procs.set(index, proc);
  child.on('message', (m: { type?: string; errors?: number; lastError?: string; size?: number }) => {
    if (m.type === 'ready') {
      proc.ready = true;
      proc.readyAt = Date.now();
    } else if (m.type === 'stats') {
      proc.errors = m.errors ?? 0;
      proc.lastError = m.lastError ?? '';
    } else if (m.type === 'backup') {
      backups.push({ size: m.size ?? 0 });
    }
  });
  child.on('error', () => undefined);
  child.on('exit', (code, signal) => {
    proc.exited = true;
    errorsOfDead.n += proc.errors;
    const expected = (proc.killed && signal === 'SIGKILL') || (proc.stopping && code === 0);
    if (!expected) {
      unexpectedExits.push({ index, pid: proc.pid, code, signal, log: tail(logFile) });
      event(`worker ${index} (pid ${proc.pid}) died on its own: ${signal ?? `exit code ${code}`}`);
    }
  });
  return proc;
}

const live = (): Proc[] => [...procs.values()].filter((p) => !p.exited && !p.killed);

// ---------------------------------------------------------------- chaos

const kills: Kill[] = [];
const restarts: Restart[] = [];
const terminations: Termination[] = [];
const events: string[] = [];
const view = new LiveView();
let started = 0;

function event(text: string): void {
  const line = `${clock(started > 0 ? Date.now() - started : 0)}  ${text}`;
  events.push(line);
  view.note(line);
}

function chaosRecord(line: string): void {
  appendFileSync(chaosFile, line + '\n');
}

function killOne(): void {
  const candidates = live().filter((p) => p.ready);
  const victim = candidates[Math.floor(Math.random() * candidates.length)];
  if (victim === undefined) {
    return;
  }
  victim.killed = true;
  const t = nowUs();
  try {
    process.kill(victim.pid, 'SIGKILL');
  } catch {
    return;
  }
  kills.push({ index: victim.index, pid: victim.pid, t });
  chaosRecord(`K ${victim.index} ${victim.pid} ${t}`);
  const fresh = startWorker();
  event(`SIGKILL worker ${victim.index} (pid ${victim.pid}); worker ${fresh.index} (pid ${fresh.pid}) started`);
}

async function terminateSessions(): Promise<void> {
  const t = nowUs();
  try {
    const rows = await sql<{ n: number }[]>`
      SELECT count(pg_terminate_backend(pid))::int AS n
        FROM pg_stat_activity
       WHERE backend_type = 'client backend'
         AND (application_name LIKE 'immich-w%' OR application_name LIKE 'immich\\_jobs-w%')`;
    const n = rows[0]?.n ?? 0;
    terminations.push({ t, sessions: n });
    chaosRecord(`T ${t} ${n}`);
    event(`pg_terminate_backend: all ${n} sessions of the worker processes at once`);
  } catch (err) {
    event(`pg_terminate_backend failed: ${(err as Error).message}`);
  }
}

function program(name: string, args: string[]): Promise<number> {
  return new Promise((resolve) => {
    const child = spawn(join(settings.bindir, name), args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    child.on('error', () => resolve(-1));
    child.on('exit', (code) => {
      if (code !== 0) {
        event(`${name} failed: ${stderr.trim()}`);
      }
      resolve(code ?? -1);
    });
  });
}

async function restartServer(): Promise<void> {
  event('pg_ctl restart -m immediate: the server crashes and comes back');
  const t0 = nowUs();
  restartsBegun++;
  await program('pg_ctl', ['-D', pgdata, '-l', serverLog, '-m', 'immediate', '-w', '-t', '120', 'restart']);
  const t1 = nowUs();
  restarts.push({ t0, t1 });
  lastRestartEndUs = t1;
  chaosRecord(`R ${t0} ${t1}`);
  event(`server back after ${((t1 - t0) / 1e6).toFixed(1)} s`);
}

let restartsBegun = 0;
let lastRestartEndUs = 0;

/** A worker process ran nothing for STALL_MS while jobs waited: say what its sessions do. */
async function reportStall(p: Proc, what: string): Promise<void> {
  let activity = '';
  try {
    const rows = await sql<{ app: string; state: string; wait: string; secs: number; query: string }[]>`
      SELECT application_name AS app, coalesce(state, '') AS state,
             coalesce(wait_event_type || ':' || wait_event, '') AS wait,
             round(extract(epoch FROM now() - coalesce(state_change, backend_start))::numeric, 1)::float8 AS secs,
             left(regexp_replace(query, '\s+', ' ', 'g'), 80) AS query
        FROM pg_stat_activity
       WHERE application_name IN (${`immich-w${p.index}`}, ${`immich_jobs-w${p.index}`})
       ORDER BY 1, 2`;
    activity = rows.map((r) => `${r.app} ${r.state} ${r.wait} ${r.secs}s ${r.query}`).join('; ');
  } catch (err) {
    activity = `(pg_stat_activity: ${(err as Error).message})`;
  }
  stalls.push({ index: p.index, pid: p.pid, t: nowUs(), activity: `${what}; its sessions: ${activity || 'none'}` });
  appendFileSync(join(logsDir, 'stalls.log'), `${new Date().toISOString()} worker ${p.index} pid ${p.pid}: ` +
    `${what}; its sessions: ${activity || 'none'}\n`);
  event(`worker ${p.index} (pid ${p.pid}) hangs: ${what} (logs/stalls.log)`);
}

let progress = 0;
let chaosDone = !settings.chaos;

async function chaos(stop: AbortSignal): Promise<void> {
  if (!settings.chaos) {
    return;
  }
  const steps: { at: number; done: boolean; run: () => Promise<void> }[] = [
    { at: 0.3, done: false, run: terminateSessions },
    { at: 0.5, done: false, run: restartServer },
    { at: 0.7, done: false, run: terminateSessions },
  ];
  let nextKill = 0;
  while (!stop.aborted) {
    await sleep(100);
    const now = Date.now();
    if (progress >= 0.08 && (kills.length === 0 || (progress < 0.9 && now >= nextKill))) {
      if (now >= nextKill) {
        killOne();
        nextKill = now + killEveryMs * (0.5 + Math.random());
      }
    }
    for (const step of steps) {
      if (!step.done && progress >= step.at) {
        step.done = true;
        await step.run();
      }
    }
    if (kills.length > 0 && steps.every((s) => s.done)) {
      if (progress >= 0.9) {
        chaosDone = true;
        return;
      }
    }
  }
}

// ---------------------------------------------------------------- sampling

interface Sample {
  rows: QueueRow[];
  connections: { total: number; pool: number; queue: number; driver: number; other: number };
}

const peak = { total: 0, pool: 0, queue: 0 };

async function sample(): Promise<Sample | undefined> {
  try {
    const [rows, apps] = await Promise.all([
      sql<QueueRow[]>`
        SELECT queue_name AS queue, paused, concurrency, active::int, waiting::int, delayed::int,
               failed::int, completed::int
          FROM immich_jobs.queue_counts`,
      sql<{ app: string; n: number }[]>`
        SELECT coalesce(application_name, '') AS app, count(*)::int AS n
          FROM pg_stat_activity WHERE backend_type = 'client backend' GROUP BY 1`,
    ]);
    const c = { total: 0, pool: 0, queue: 0, driver: 0, other: 0 };
    for (const { app, n } of apps) {
      if (/^immich-w\d+$/.test(app)) {
        c.pool += n;
        peak.pool = Math.max(peak.pool, n);
      } else if (/^immich_jobs-w\d+$/.test(app)) {
        c.queue += n;
        peak.queue = Math.max(peak.queue, n);
      } else if (app === 'demo-driver') {
        c.driver += n;
      } else {
        c.other += n;
      }
    }
    c.total = c.pool + c.queue;
    peak.total = Math.max(peak.total, c.total);
    return { rows: [...rows], connections: c };
  } catch {
    return undefined;
  }
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T | undefined> {
  return Promise.race([promise, sleep(ms).then(() => undefined)]);
}

// ---------------------------------------------------------------- the run

async function setup(): Promise<ImmichJobRepository> {
  await sql`CREATE EXTENSION IF NOT EXISTS immich_jobs`;
  await sql`
    CREATE TABLE IF NOT EXISTS asset (
      id uuid PRIMARY KEY,
      "originalPath" text NOT NULL UNIQUE,
      type text NOT NULL,
      "libraryId" uuid,
      "createdAt" timestamptz NOT NULL DEFAULT now())`;
  const repo = new ImmichJobRepository({ sql, leaseTimeoutMs: settings.leaseMs });
  repo.on('error', () => undefined);
  await repo.setup();
  return repo;
}

function reaperReclaimed(): number {
  try {
    let n = 0;
    for (const m of readFileSync(serverLog, 'utf8').matchAll(/immich_jobs reclaimed (\d+) expired lease/g)) {
      n += Number(m[1]);
    }
    return n;
  } catch {
    return 0;
  }
}

async function main(): Promise<number> {
  const repo = await setup();
  const title = `immich_jobs demo: an Immich library scan of ${fmt(settings.assets)} files, ` +
    `${settings.workers} worker processes, chaos ${settings.chaos ? 'on' : 'off'}`;
  if (!tty) {
    process.stdout.write(`${title}\n`);
  }
  for (let i = 0; i < settings.workers; i++) {
    startWorker();
  }
  const readyBy = Date.now() + 60_000;
  while (live().some((p) => !p.ready)) {
    if (Date.now() > readyBy || unexpectedExits.length > 0) {
      process.stdout.write(`the worker processes did not start: ${unexpectedExits.map((e) => e.log).join('; ')}\n`);
      return 1;
    }
    await sleep(50);
  }

  started = Date.now();
  const startedUs = nowUs();
  await repo.queue({ name: 'LibraryScanQueueAll', data: { uid: 'd.1' } });
  event(`LibraryScanQueueAll queued: ${fmt(settings.assets)} files, pages of ${fmt(settings.batch)}`);

  const reader = new RecordReader(recordsDir);
  const done = new Set<string>();
  let endedRuns = 0;
  const history: { t: number; runs: number; done: number }[] = [];
  const stopChaos = new AbortController();
  const chaosLoop = chaos(stopChaos.signal);
  let backupQueued = false;
  let drainedAt: number | undefined;
  let emptyTicks = 0;
  let lastSample: Sample | undefined;
  let lastDraw = 0;

  for (;;) {
    await sleep(250);
    reader.poll();
    for (const e of reader.fresh) {
      endedRuns++;
      if (expectedKeys.has(e.key)) {
        done.add(e.key);
      }
    }
    progress = done.size / expectedKeys.size;
    const now = Date.now();
    // after the restart (at 50%): a dump that the crash cuts proves nothing
    if (!backupQueued && progress >= 0.55) {
      backupQueued = true;
      // Immich's nightly job (its cron runs in the API process)
      repo.queue({ name: 'DatabaseBackup', data: { uid: 'd.2' } }).catch((err: Error) => event(`queue DatabaseBackup: ${err.message}`));
      event('DatabaseBackup queued (the nightly pg_dumpall)');
    }
    if (now - lastDraw < 1_000) {
      continue;
    }
    lastDraw = now;
    lastSample = await withTimeout(sample(), 900);
    history.push({ t: now, runs: endedRuns, done: done.size });
    while (history.length > 11) {
      history.shift();
    }
    const first = history[0]!;
    const span = (now - first.t) / 1000;
    const rate = span > 0 ? (endedRuns - first.runs) / span : 0;
    const doneRate = span > 0 ? (done.size - first.done) / span : 0;
    clientErrors = errorsOfDead.n + [...procs.values()].filter((p) => !p.exited).reduce((a, p) => a + p.errors, 0);
    view.draw({
      title,
      elapsedMs: now - started,
      rows: lastSample?.rows,
      reclaimed: reader.retries,
      done: done.size,
      expected: expectedKeys.size,
      endedRuns,
      jobsPerSecond: rate,
      leftMs: doneRate > 0 ? ((expectedKeys.size - done.size) / doneRate) * 1000 : undefined,
      connections: lastSample?.connections,
      peakConnections: peak.total,
      workers: settings.workers,
      clientErrors,
      events,
    });
    // a handler that has not ended for STALL_MS (they take milliseconds), in
    // a live process, not because the server was down: the process hangs
    if (restarts.length === restartsBegun) {
      const nowT = nowUs();
      const since = Math.max(lastRestartEndUs, 0);
      for (const [run, job] of reader.open) {
        const p = [...procs.values()].find((x) => x.pid === run.pid);
        if (p === undefined || p.exited || p.killed || p.stalled) {
          continue;
        }
        if (nowT - Math.max(run.start, since) > STALL_MS * 1000) {
          p.stalled = true;
          void reportStall(p, `${job.name} (job ${job.id}) has run for ${((nowT - run.start) / 1e6).toFixed(0)} s`);
        }
      }
    }
    const empty = lastSample !== undefined &&
      lastSample.rows.every((r) => r.active === 0 && r.waiting === 0 && r.delayed === 0);
    emptyTicks = empty && chaosDone && backupQueued && endedRuns > 0 ? emptyTicks + 1 : 0;
    if (emptyTicks >= 2) {
      drainedAt = now;
      break;
    }
    if (now - started > deadlineMs) {
      event(`not drained after ${clock(deadlineMs)}: giving up`);
      break;
    }
  }
  stopChaos.abort();
  await chaosLoop;

  // stop the workers: each closes its repository (running jobs finish) and exits
  for (const p of live()) {
    p.stopping = true;
    p.child.send({ type: 'stop' }, () => undefined);
  }
  const stopBy = Date.now() + 20_000;
  while (live().some((p) => !p.exited) && Date.now() < stopBy) {
    await sleep(50);
  }
  for (const p of live()) {
    if (!p.exited) {
      p.child.kill('SIGKILL');
    }
  }
  reader.poll();
  for (const e of reader.fresh) {
    endedRuns++;
    if (expectedKeys.has(e.key)) {
      done.add(e.key);
    }
  }

  // what the database says at the end
  const final = await sample();
  let failedJobs: { id: string; queue: string; attempt: number; maxAttempts: number; lastError: string }[] = [];
  let assetRows: number | undefined;
  try {
    failedJobs = [...await sql<{ id: string; queue: string; attempt: number; maxAttempts: number; lastError: string }[]>`
      SELECT job_id::text AS id, 'u:' || coalesce(payload->>'uid', '?') AS uid, queue_name AS queue, attempt,
             max_attempts AS "maxAttempts", coalesce(last_error, '') AS "lastError"
        FROM immich_jobs.jobs WHERE state = 'failed'`];
    // the records name jobs by the queue's id, or by the demo's uid (see worker.ts)
    failedJobs = failedJobs.flatMap((f) => [f, { ...f, id: (f as unknown as { uid: string }).uid }]);
    assetRows = (await sql<{ n: number }[]>`SELECT count(*)::int AS n FROM asset`)[0]?.n;
  } catch (err) {
    event(`reading the final state failed: ${(err as Error).message}`);
  }
  const limits = new Map<string, number>(Object.entries(DEFAULT_CONCURRENCY as Record<string, number>));
  for (const row of final?.rows ?? []) {
    limits.set(row.queue, row.concurrency);
  }
  const elapsed = (drainedAt ?? Date.now()) - started;
  const runs = [...reader.jobs.values()].reduce((a, j) => a + j.runs.length, 0);
  process.stdout.write(`\n${fmt(settings.assets)} files, ${fmt(reader.jobs.size)} jobs (${fmt(runs)} handler runs) ` +
    `in ${clock(elapsed)}: ${fmt(reader.jobs.size / (elapsed / 1000))} jobs/s; ` +
    `${settings.chaos ? `chaos: ${kills.length} SIGKILLs, ${terminations.length} terminations of all ` +
      `sessions, ${restarts.length} server restart` : 'no chaos'}; ` +
    `${fmt(clientErrors)} connection errors absorbed by the clients\n\n`);
  const checks = verdict({
    assets: settings.assets,
    batch: settings.batch,
    workers: settings.workers,
    chaos: settings.chaos,
    leaseMs: settings.leaseMs,
    library,
    jobs: reader.jobs,
    kills,
    restarts,
    terminations,
    unexpectedExits,
    stalls,
    started: startedUs,
    drainedAt: drainedAt === undefined ? undefined : startedUs + (drainedAt - started) * 1000,
    finalRows: final?.rows,
    failedJobs,
    assetRows,
    reaperReclaimed: reaperReclaimed(),
    peak,
    backups,
    limits,
  });
  printChecks(checks);
  if (process.env['KEEP'] === '1') {
    process.stdout.write(`\nrecords: ${recordsDir} (one file per worker process), chaos: ${chaosFile}\n`);
  }
  await repo.close().catch(() => undefined);
  await sql.end({ timeout: 1 }).catch(() => undefined);
  return checks.every((c) => c.ok) ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (err: Error) => {
    process.stderr.write(`demo: ${err.stack ?? err.message}\n`);
    for (const p of procs.values()) {
      if (!p.exited) {
        p.child.kill('SIGKILL');
      }
    }
    process.exit(1);
  },
);
