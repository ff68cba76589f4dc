/**
 * The verdict: from the records the handlers wrote (records.ts), the chaos
 * the driver caused, and what the database says at the end.  The queue is
 * not trusted: what it says is compared with the records, never the other
 * way round.
 */
import type { Library } from './model.js';
import type { JobRecord, Run } from './records.js';
import { type QueueRow, clock, fmt, green, red, tty } from './view.js';

export interface Kill { index: number; pid: number; t: number }
export interface Restart { t0: number; t1: number }
export interface Termination { t: number; sessions: number }
export interface Exit { index: number; pid: number; code: number | null; signal: string | null; log: string }

export interface Facts {
  assets: number;
  batch: number;
  workers: number;
  chaos: boolean;
  leaseMs: number;
  library: Library;
  jobs: Map<string, JobRecord>;
  kills: Kill[];
  restarts: Restart[];
  terminations: Termination[];
  /** worker processes that ended otherwise than by the chaos loop's SIGKILL or a clean stop */
  unexpectedExits: Exit[];
  /** worker processes in which a handler did not end for a long while */
  stalls: { index: number; pid: number; t: number; activity: string }[];
  started: number;
  drainedAt: number | undefined;
  finalRows: QueueRow[] | undefined;
  failedJobs: { id: string; queue: string; attempt: number; maxAttempts: number; lastError: string }[];
  assetRows: number | undefined;
  reaperReclaimed: number;
  peak: { total: number; pool: number; queue: number };
  backups: { size: number }[];
  limits: Map<string, number>;
}

export interface Check {
  ok: boolean;
  title: string;
  figure: string;
  details: string[];
}

/** How long before a crash a lease operation may be lost (3 wal_writer_delay, and margin), µs. */
const CRASH_WINDOW = 3_000_000;
/** How long after its handler ended a killed worker may not have sent the completion yet, µs. */
const SEND_WINDOW = 3_000_000;

const seconds = (us: number): string => `${(us / 1e6).toFixed(us < 10_000_000 ? 3 : 1)} s`;

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? 0;
}

/**
 * A SIGKILL takes a moment to land: a process may still write a line in the
 * few ms after the chaos loop noted the kill, µs.
 */
const KILL_SLACK = 1_000_000;

/** The kill of the run's process that cut it, if any. */
function killOf(run: Run, facts: Facts): Kill | undefined {
  return facts.kills.find((k) => k.pid === run.pid && k.t >= run.start - KILL_SLACK);
}

/**
 * Why a run that did not count happened, or undefined.  'termination': its
 * completion was in flight, or still to send, when every session of its
 * process was terminated (the connection-level crash Immich's workers died
 * of): the transaction that carried it was rolled back, and the client's
 * resend did not land before the lease ran out, or the process was killed
 * while it waited to.
 */
function explain(run: Run, facts: Facts): 'kill' | 'restart' | 'termination' | undefined {
  if (run.end === undefined) {
    if (killOf(run, facts) !== undefined) {
      return 'kill';
    }
    return undefined;
  }
  if (facts.kills.some((k) => k.pid === run.pid && k.t >= run.end! - KILL_SLACK && k.t - run.end! <= SEND_WINDOW)) {
    return 'kill';
  }
  // in progress when the server crashed, or ended in the last moments before
  // (its claim or completion lost), or its lease ran out while the server
  // was down
  if (facts.restarts.some((r) => run.start <= r.t1 && run.end! >= r.t0 - CRASH_WINDOW)) {
    return 'restart';
  }
  if (facts.terminations.some((x) => run.end! >= x.t - SEND_WINDOW && run.end! <= x.t + SEND_WINDOW)) {
    return 'termination';
  }
  return undefined;
}

/**
 * When a run stopped holding its slot, as far as the records can tell: when
 * its handler ended, or its process was killed, or its job was leased again
 * (a job has one valid lease at a time: the lease of this run had run out,
 * its slot was free again, while the handler went on: Immich's handlers do
 * not watch for a lost lease).
 */
function endOf(run: Run, job: JobRecord, facts: Facts): { end: number | undefined; outlived: boolean } {
  let end = run.end;
  if (end === undefined) {
    const kill = killOf(run, facts);
    end = kill === undefined ? undefined : Math.max(kill.t, run.start);
  }
  let outlived = false;
  if (run.lost !== undefined && (end === undefined || run.lost < end)) {
    end = run.lost;
    outlived = true;
  }
  const next = job.runs.filter((r) => r.start > run.start).reduce(
    (a: number | undefined, r) => (a === undefined || r.start < a ? r.start : a), undefined);
  if (next !== undefined && (end === undefined || next < end)) {
    end = next;
    outlived = true;
  }
  // never before the start: ends sort before starts at the same time
  return { end: end === undefined ? undefined : Math.max(end, run.start + 1), outlived };
}

export function verdict(facts: Facts): Check[] {
  const checks: Check[] = [];
  const failedIds = new Map(facts.failedJobs.map((f) => [f.id, f]));

  // 1. the queues drained
  {
    const rows = facts.finalRows ?? [];
    const left = rows.reduce((a, r) => a + r.active + r.waiting + r.delayed, 0);
    const paused = rows.filter((r) => r.paused).map((r) => r.queue);
    const ok = facts.drainedAt !== undefined && facts.finalRows !== undefined && left === 0 && paused.length === 0;
    checks.push({
      ok,
      title: 'the queues drained, none left paused',
      figure: facts.drainedAt !== undefined
        ? `in ${clock((facts.drainedAt - facts.started) / 1000)}; ${left} jobs left active, waiting or delayed, ` +
          `${paused.length} queues paused`
        : `not drained: ${left} jobs left active, waiting or delayed`,
      details: paused.map((q) => `${q} is paused`),
    });
  }

  // 2. every job ran to its end once, or failed after its last attempt
  const perQueue = new Map<string, { completed: number; failed: number }>();
  const cutByKill: { run: Run; job: JobRecord; kill: Kill }[] = [];
  {
    let ranTwice = 0;
    let byKill = 0;
    let byRestart = 0;
    let byTermination = 0;
    let failedForGood = 0;
    const problems: string[] = [];
    for (const job of facts.jobs.values()) {
      const q = perQueue.get(job.queue) ?? { completed: 0, failed: 0 };
      perQueue.set(job.queue, q);
      const runs = [...job.runs].sort((a, b) => a.start - b.start);
      for (const run of runs) {
        if (run.end === undefined) {
          const kill = killOf(run, facts);
          if (kill !== undefined) {
            cutByKill.push({ run, job, kill });
          }
        }
      }
      // the last run decides: ended, the job was completed; cut, the job
      // must have failed after its last attempt (its lease expired each time)
      let counted: Run | undefined;
      const last = runs[runs.length - 1];
      if (last !== undefined && last.end !== undefined) {
        counted = last;
        q.completed++;
      } else {
        const failed = failedIds.get(job.id);
        if (failed !== undefined && runs.length >= 1 && runs.every((r) => explain(r, facts) !== undefined)) {
          failedForGood++;
          q.failed++;
        } else {
          problems.push(`job ${job.id} (${job.name}) never ran to its end` +
            `${failed !== undefined ? ` and failed after attempt ${failed.attempt}` : ''}`);
        }
      }
      if (runs.length > 1) {
        ranTwice++;
        for (const run of runs) {
          if (run === counted) {
            continue;
          }
          const why = explain(run, facts);
          if (why === 'kill') {
            byKill++;
          } else if (why === 'restart') {
            byRestart++;
          } else if (why === 'termination') {
            byTermination++;
          } else {
            const t = (us: number | undefined): string => (us === undefined ? '-' : seconds(us - facts.started));
            const kill = killOf(run, facts);
            problems.push(`job ${job.id} (${job.name}) ran ${runs.length} times: its run of attempt ${run.attempt} ` +
              `in pid ${run.pid} is explained by no kill and no restart (runs: ` +
              runs.map((r) => `attempt ${r.attempt} pid ${r.pid} ${t(r.start)}..${t(r.end)}` +
                `${r.lost !== undefined ? ` lost ${t(r.lost)}` : ''}`).join(', ') +
              `; pid ${run.pid} ${kill !== undefined ? `killed at ${t(kill.t)}` : 'not killed'}; terminations at ` +
              `${facts.terminations.map((x) => t(x.t)).join(', ') || '-'})`);
          }
        }
      }
    }
    const total = facts.jobs.size;
    checks.push({
      ok: problems.length === 0 && total > 0,
      title: 'every job ran to its end exactly once, or failed after its last attempt',
      figure: `${fmt(total)} jobs; ${fmt(ranTwice)} ran more than once, each extra run explained: ` +
        `${fmt(byKill)} cut by a SIGKILL, ${fmt(byRestart)} lost in the server crash, ` +
        `${fmt(byTermination)} lost with their terminated session; ` +
        `${fmt(failedForGood)} failed after ${failedForGood === 1 ? 'its' : 'their'} last attempt`,
      details: problems,
    });
  }

  // 3. the chain: every asset went through every stage it should
  {
    const ended = new Map<string, { ok: number; error: number }>();
    for (const job of facts.jobs.values()) {
      if (job.key === undefined) {
        continue;
      }
      const e = ended.get(job.key) ?? { ok: 0, error: 0 };
      for (const run of job.runs) {
        if (run.outcome === 'ok') {
          e.ok++;
        } else if (run.outcome !== undefined) {
          e.error++;
        }
      }
      ended.set(job.key, e);
    }
    const problems: string[] = [];
    let stages = 0;
    let poisonStopped = 0;
    const expectKey = (key: string, outcome: 'ok' | 'error'): void => {
      stages++;
      const e = ended.get(key);
      if (e === undefined) {
        problems.push(`${key} never ran to its end`);
      } else if (outcome === 'ok' && e.ok === 0) {
        problems.push(`${key} failed (its handler threw: logs/worker-N.log says why)`);
      } else if (outcome === 'error' && e.error === 0) {
        problems.push(`${key} (a poison file) did not fail`);
      }
    };
    for (const key of facts.library.scanKeys(facts.batch)) {
      expectKey(key, 'ok');
    }
    for (let i = 0; i < facts.assets; i++) {
      const poison = facts.library.isPoison(i);
      for (const key of facts.library.stagesOf(i)) {
        expectKey(key, poison && key.startsWith('AssetExtractMetadata:') ? 'error' : 'ok');
      }
      if (poison) {
        poisonStopped++;
      }
    }
    // jobs of one key queued twice: by a job that ran twice (its onDone ran twice)
    const keyJobs = new Map<string, number>();
    for (const job of facts.jobs.values()) {
      if (job.key !== undefined) {
        keyJobs.set(job.key, (keyJobs.get(job.key) ?? 0) + 1);
      }
    }
    const requeued = [...keyJobs.entries()].filter(([key, n]) =>
      n > 1 && !key.startsWith('FacialRecognitionQueueAll:') && !key.startsWith('DatabaseBackup:')).length;
    const assetsOk = facts.assetRows === facts.assets;
    if (!assetsOk) {
      problems.unshift(`the asset table has ${facts.assetRows ?? '?'} rows, not ${facts.assets}`);
    }
    checks.push({
      ok: problems.length === 0,
      title: 'the library scan went all the way: every asset through every stage of the chain',
      figure: `${fmt(facts.assetRows ?? 0)} assets created, ${fmt(stages)} stage jobs ran, ` +
        `${problems.length} missing; ${poisonStopped} poison files failed in AssetExtractMetadata ` +
        `(not retried) and stopped there` +
        (requeued > 0 ? `; ${requeued} stage jobs queued twice by a job that ran twice` : ''),
      details: problems,
    });
  }

  // 4. no queue above its limit, from the records' intervals
  {
    type Event = [number, number, JobRecord, Run];
    const events = new Map<string, Event[]>();
    let open = 0;
    let outlived = 0;
    for (const job of facts.jobs.values()) {
      const list = events.get(job.queue) ?? [];
      events.set(job.queue, list);
      for (const run of job.runs) {
        const { end, outlived: o } = endOf(run, job, facts);
        if (end === undefined) {
          open++;
        }
        if (o) {
          outlived++;
        }
        list.push([run.start, 1, job, run], [end ?? Number.MAX_SAFE_INTEGER, -1, job, run]);
      }
    }
    const figures: string[] = [];
    const problems: string[] = [];
    for (const [queue, list] of [...events.entries()].sort()) {
      // ends before starts at the same time
      list.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
      const limit = facts.limits.get(queue) ?? Infinity;
      const running = new Set<Event>();
      let most = 0;
      for (const event of list) {
        if (event[1] > 0) {
          running.add(event);
          if (running.size > limit && most <= limit) {
            // the first time only
            const t0 = facts.started;
            problems.push(`${queue}: ${running.size} jobs running at once, limit ${limit}: ` +
              [...running].map(([s, , job, run]) => `job ${job.id} (${job.name}, pid ${run.pid}) ` +
                `${seconds(s - t0)} to ${run.end === undefined ? 'its kill' : seconds(run.end - t0)}`).join('; '));
          }
          most = Math.max(most, running.size);
        } else {
          for (const r of running) {
            if (r[3] === event[3]) {
              running.delete(r);
              break;
            }
          }
        }
      }
      figures.push(`${queue} ${most}/${limit}`);
    }
    if (open > 0) {
      problems.push(`${open} runs never ended and their process was not killed`);
    }
    checks.push({
      ok: problems.length === 0,
      title: 'no queue ever had more jobs running at once than its limit (over all processes)',
      figure: `most at once: ${figures.join(', ')}` +
        (outlived > 0 ? `; ${outlived} handlers outlived their lease (reclaimed while the server was ` +
          `down or their worker could not reach it), each counted until its worker learned of it or the job was leased again` : ''),
      details: problems,
    });
  }

  // 5. the counts agree
  {
    const problems: string[] = [];
    let recordsCompleted = 0;
    let recordsFailed = 0;
    for (const q of perQueue.values()) {
      recordsCompleted += q.completed;
      recordsFailed += q.failed;
    }
    const rows = facts.finalRows ?? [];
    const dbCompleted = rows.reduce((a, r) => a + r.completed, 0);
    const dbFailed = rows.reduce((a, r) => a + r.failed, 0);
    for (const r of rows) {
      const q = perQueue.get(r.queue) ?? { completed: 0, failed: 0 };
      if (q.completed !== r.completed || q.failed !== r.failed) {
        problems.push(`${r.queue}: the queue says ${r.completed} completed and ${r.failed} failed, ` +
          `the records ${q.completed} and ${q.failed}`);
      }
    }
    if (facts.finalRows === undefined) {
      problems.push('the queue counts could not be read');
    }
    checks.push({
      ok: problems.length === 0,
      title: 'the queue\'s counts agree with the records',
      figure: `queue: ${fmt(dbCompleted)} completed, ${fmt(dbFailed)} failed; ` +
        `records: ${fmt(recordsCompleted)} jobs ran to their end, ${fmt(recordsFailed)} failed after their last attempt`,
      details: problems,
    });
  }

  // 6. leases of killed workers reclaimed, and how long after the kill
  {
    const problems: string[] = [];
    const delays: number[] = [];
    for (const { run, job, kill } of cutByKill) {
      const next = job.runs.filter((r) => r.start > run.start).sort((a, b) => a.start - b.start)[0];
      if (next !== undefined) {
        delays.push(next.start - kill.t);
      } else if (!failedIds.has(job.id)) {
        problems.push(`job ${job.id} (${job.name}) was cut by the kill of pid ${kill.pid} and never ran again`);
      }
    }
    const reruns = [...facts.jobs.values()].reduce((a, j) => a + Math.max(0, j.runs.length - 1), 0);
    const figure = !facts.chaos
      ? 'no worker killed (CHAOS=0)'
      : `${facts.kills.length} workers SIGKILLed holding ${cutByKill.length} running jobs: ` +
        `each ran again ${delays.length > 0 ? `${seconds(median(delays))} (median), at most ` +
        `${seconds(Math.max(...delays))} after its worker died` : '-'} (lease ${facts.leaseMs / 1000} s); ` +
        `the reaper reclaimed ${fmt(facts.reaperReclaimed)} leases (server log); ${fmt(reruns)} runs were re-runs`;
    checks.push({
      ok: problems.length === 0 && (!facts.chaos || facts.kills.length > 0),
      title: 'the leases of killed workers were reclaimed by the database, and their jobs ran again',
      figure,
      details: problems,
    });
  }

  // 7. the worker processes survived the session terminations and the restart
  {
    const problems = facts.unexpectedExits.map((e) =>
      `worker ${e.index} (pid ${e.pid}) exited on its own (${e.signal ?? `code ${e.code}`}): ${e.log}`);
    for (const s of facts.stalls) {
      problems.push(`worker ${s.index} (pid ${s.pid}) hung at ${seconds(s.t - facts.started)}: ${s.activity}`);
    }
    let resumed = '';
    for (const r of facts.restarts) {
      let first = Infinity;
      for (const job of facts.jobs.values()) {
        for (const run of job.runs) {
          if (run.start > r.t1 && run.start < first) {
            first = run.start;
          }
        }
      }
      if (first === Infinity) {
        problems.push('no job started after the server restart');
      } else {
        resumed = `; the server was down ${seconds(r.t1 - r.t0)} (from ${seconds(r.t0 - facts.started)}), ` +
          `jobs started again ${seconds(first - r.t1)} after it was back`;
      }
    }
    const sessions = facts.terminations.reduce((a, t) => a + t.sessions, 0);
    checks.push({
      ok: problems.length === 0,
      title: 'no worker process died or hung on a database error (connections terminated, server restarted)',
      figure: !facts.chaos
        ? `${facts.unexpectedExits.length} of ${facts.workers} worker processes died, ${facts.stalls.length} hung (CHAOS=0)`
        : `${facts.unexpectedExits.length} died on their own, ${facts.stalls.length} hung; ` +
          `${facts.terminations.length} terminations of all ` +
          `their sessions (${sessions} sessions), ${facts.restarts.length} immediate restart${resumed}`,
      details: problems,
    });
  }

  // 8. connections
  {
    const ok = facts.peak.pool <= 10 && facts.peak.queue <= 5;
    checks.push({
      ok,
      title: 'connections stayed within a fixed budget per process',
      figure: `peak ${facts.peak.total} connections for ${facts.workers} worker processes; per process at most ` +
        `${facts.peak.pool} in Immich's pool (max 10) and ${facts.peak.queue} for the queue client ` +
        `(max 5: 4 pooled + 1 LISTEN), whatever the 18 queues and their handlers`,
      details: ok ? [] : ['a process used more connections than its budget'],
    });
  }

  // 9. the nightly backup
  {
    const runs: Run[] = [];
    for (const job of facts.jobs.values()) {
      if (job.name === 'DatabaseBackup') {
        runs.push(...job.runs);
      }
    }
    const good = runs.filter((r) => r.outcome === 'ok');
    let during = 0;
    const first = good[0];
    if (first !== undefined) {
      for (const job of facts.jobs.values()) {
        for (const run of job.runs) {
          if (run.end !== undefined && run.end > first.start && run.end < first.end!) {
            during++;
          }
        }
      }
    }
    const size = facts.backups[0]?.size ?? 0;
    // chaos may cut every run of it (a kill, the restart): then each cut must be explained
    const cut = runs.filter((r) => r.outcome !== 'ok');
    const unexplained = cut.filter((r) => explain(r, facts) === undefined);
    checks.push({
      ok: runs.length > 0 && (good.length > 0 || unexplained.length === 0),
      title: 'the nightly backup (DatabaseBackup: pg_dumpall) ran while the queues were busy',
      figure: (first !== undefined
        ? `${(size / 1e6).toFixed(1)} MB in ${seconds(first.end! - first.start)}, while ${fmt(during)} jobs ran`
        : runs.length > 0 ? 'it never finished' : 'it never ran') +
        (cut.length > 0 ? `; ${cut.length} of its runs cut by a SIGKILL or the server restart` : ''),
      details: unexplained.map((r) => `its run of attempt ${r.attempt} in pid ${r.pid} failed, and no kill or restart explains it`),
    });
  }
  return checks;
}

/** Print the checks; TAP lines when stdout is not a terminal. */
export function printChecks(checks: Check[]): void {
  let n = 0;
  for (const check of checks) {
    n++;
    if (tty) {
      const mark = check.ok ? green('✔') : red('✘');
      process.stdout.write(`${mark} ${check.title}\n    ${check.figure}\n`);
    } else {
      process.stdout.write(`${check.ok ? 'ok' : 'not ok'} ${n} - ${check.title}: ${check.figure}\n`);
    }
    for (const detail of check.details.slice(0, 10)) {
      process.stdout.write(`    ${tty ? red(detail) : `# ${detail}`}\n`);
    }
    if (check.details.length > 10) {
      process.stdout.write(`    ${tty ? '' : '# '}... and ${check.details.length - 10} more\n`);
    }
  }
  const passed = checks.filter((c) => c.ok).length;
  if (!tty) {
    process.stdout.write(`1..${checks.length}\n# pass ${passed}\n# fail ${checks.length - passed}\n`);
  }
}
