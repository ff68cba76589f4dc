/**
 * The records: what the verdict trusts instead of the queue.
 *
 * Each worker process appends to a file of its own (O_APPEND, one write(2)
 * per line, so a line is in the file as soon as the call returns, even if
 * the process is SIGKILLed right after):
 *
 *   S <job id> <queue> <name> <attempt> <pid> <start>                        when a handler starts
 *   E <job id> <queue> <name> <attempt> <pid> <start> <end> <outcome> <key>  when it has ended
 *   L <job id> <queue> <name> <attempt> <pid> <start> <time>                 its lease was lost
 *
 * A lease is lost when the worker learns that it was reclaimed (it ran out
 * while the server was down longer than the lease) or when close() gives
 * the job back; the handler goes on (Immich's handlers do not watch for
 * it), but its slot in the queue is free from then on.
 *
 * <outcome> is ok, or error (the handler threw: Immich completes the job
 * anyway and stops its chain).  Times are microseconds of CLOCK_MONOTONIC
 * (process.hrtime), which every process of the machine shares, so the
 * intervals of different processes can be compared; the driver writes its
 * chaos events (kills, terminations, the restart) on the same clock.
 */
import { closeSync, openSync, readdirSync, readSync, fstatSync, writeSync } from 'node:fs';
import { join } from 'node:path';

/** Now, in microseconds of the monotonic clock shared by the processes. */
export function nowUs(): number {
  return Number(process.hrtime.bigint() / 1000n);
}

export class RecordWriter {
  private readonly fd: number;

  constructor(readonly path: string) {
    this.fd = openSync(path, 'a');
  }

  write(line: string): void {
    writeSync(this.fd, line + '\n');
  }
}

/** One run of a job's handler, as the records tell it. */
export interface Run {
  pid: number;
  attempt: number;
  start: number;
  /** undefined: the run never ended (its process died) */
  end?: number;
  /** when the worker learned that the run's lease was lost */
  lost?: number;
  outcome?: string;
}

/** A job, as the records tell it. */
export interface JobRecord {
  id: string;
  queue: string;
  name: string;
  key?: string;
  runs: Run[];
}

export interface Ended {
  queue: string;
  name: string;
  key: string;
  outcome: string;
  end: number;
}

/**
 * Reads the record files of a directory incrementally: each poll() reads
 * what was appended since the last one.
 */
export class RecordReader {
  readonly jobs = new Map<string, JobRecord>();
  private readonly files = new Map<string, { offset: number; rest: string }>();
  /** ends seen by the last poll (for the live view) */
  fresh: Ended[] = [];
  /** runs of a job after its first (its lease had been reclaimed), per queue */
  readonly retries = new Map<string, number>();
  /** the runs started and not ended, with their job */
  readonly open = new Map<Run, JobRecord>();
  lines = 0;
  malformed = 0;

  constructor(readonly dir: string) {}

  poll(): void {
    this.fresh = [];
    let names: string[];
    try {
      names = readdirSync(this.dir).filter((n) => n.endsWith('.records'));
    } catch {
      return;
    }
    for (const name of names.sort()) {
      const state = this.files.get(name) ?? { offset: 0, rest: '' };
      this.files.set(name, state);
      const fd = openSync(join(this.dir, name), 'r');
      try {
        const size = fstatSync(fd).size;
        if (size <= state.offset) {
          continue;
        }
        const buffer = Buffer.alloc(size - state.offset);
        let got = 0;
        while (got < buffer.length) {
          const n = readSync(fd, buffer, got, buffer.length - got, state.offset + got);
          if (n === 0) {
            break;
          }
          got += n;
        }
        state.offset += got;
        const text = state.rest + buffer.subarray(0, got).toString('utf8');
        const lines = text.split('\n');
        state.rest = lines.pop() ?? '';
        for (const line of lines) {
          this.take(line);
        }
      } finally {
        closeSync(fd);
      }
    }
  }

  private job(id: string, queue: string, name: string): JobRecord {
    let job = this.jobs.get(id);
    if (job === undefined) {
      job = { id, queue, name, runs: [] };
      this.jobs.set(id, job);
    }
    return job;
  }

  private take(line: string): void {
    if (line === '') {
      return;
    }
    this.lines++;
    const f = line.split(' ');
    const [kind, id, queue, name, attempt, pid, start] = f;
    if (id === undefined || queue === undefined || name === undefined || attempt === undefined ||
      pid === undefined || start === undefined) {
      this.malformed++;
      return;
    }
    const job = this.job(id, queue, name);
    const att = Number(attempt);
    const p = Number(pid);
    const s = Number(start);
    let run = job.runs.find((r) => r.pid === p && r.start === s);
    if (kind === 'S') {
      if (run === undefined) {
        run = { pid: p, attempt: att, start: s };
        job.runs.push(run);
        this.open.set(run, job);
        if (job.runs.length > 1) {
          this.retries.set(queue, (this.retries.get(queue) ?? 0) + 1);
        }
      }
    } else if (kind === 'E') {
      const [end, outcome, key] = f.slice(7);
      if (end === undefined || outcome === undefined || key === undefined) {
        this.malformed++;
        return;
      }
      if (run === undefined) {
        run = { pid: p, attempt: att, start: s };
        job.runs.push(run);
      }
      run.end = Number(end);
      run.outcome = outcome;
      this.open.delete(run);
      job.key = key;
      this.fresh.push({ queue, name, key, outcome, end: run.end });
    } else if (kind === 'L') {
      const at = Number(f[7]);
      if (run === undefined) {
        run = { pid: p, attempt: att, start: s };
        job.runs.push(run);
      }
      run.lost = Number.isFinite(at) ? at : undefined;
    } else {
      this.malformed++;
    }
  }
}

export function startLine(id: string, queue: string, name: string, attempt: number, start: number): string {
  return `S ${id} ${queue} ${name} ${attempt} ${process.pid} ${start}`;
}

export function lostLine(id: string, queue: string, name: string, attempt: number, start: number,
  at: number): string {
  return `L ${id} ${queue} ${name} ${attempt} ${process.pid} ${start} ${at}`;
}

export function endLine(id: string, queue: string, name: string, attempt: number, start: number,
  end: number, outcome: string, key: string): string {
  return `E ${id} ${queue} ${name} ${attempt} ${process.pid} ${start} ${end} ${outcome} ${key}`;
}
