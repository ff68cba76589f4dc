/**
 * The live view: a table redrawn in place each second when stdout is a
 * terminal, one plain line a second when it is not (a log, a CI run).
 */

/** Immich's 18 queues, in the order of the chain first. */
export const QUEUE_ORDER = [
  'library', 'sidecar', 'metadataExtraction', 'thumbnailGeneration', 'smartSearch', 'duplicateDetection',
  'faceDetection', 'facialRecognition', 'ocr', 'videoConversion', 'backupDatabase', 'backgroundTask',
  'search', 'migration', 'storageTemplateMigration', 'notifications', 'workflow', 'editor',
];

export interface QueueRow {
  queue: string;
  paused: boolean;
  concurrency: number;
  active: number;
  waiting: number;
  delayed: number;
  failed: number;
  completed: number;
}

export interface ViewState {
  title: string;
  elapsedMs: number;
  /** undefined while the server does not answer */
  rows: QueueRow[] | undefined;
  reclaimed: Map<string, number>;
  done: number;
  expected: number;
  endedRuns: number;
  jobsPerSecond: number;
  leftMs: number | undefined;
  connections: { total: number; pool: number; queue: number; driver: number; other: number } | undefined;
  peakConnections: number;
  workers: number;
  clientErrors: number;
  events: string[];
}

export const tty = process.stdout.isTTY === true && process.env['TERM'] !== 'dumb';

export const fmt = (n: number): string => Math.round(n).toLocaleString('en-US');

export function clock(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
}

const bold = (s: string): string => (tty ? `\x1b[1m${s}\x1b[0m` : s);
const dim = (s: string): string => (tty ? `\x1b[2m${s}\x1b[0m` : s);
export const green = (s: string): string => (tty ? `\x1b[32m${s}\x1b[0m` : s);
export const red = (s: string): string => (tty ? `\x1b[31m${s}\x1b[0m` : s);
const yellow = (s: string): string => (tty ? `\x1b[33m${s}\x1b[0m` : s);

function bar(fraction: number, width: number): string {
  const full = Math.max(0, Math.min(width, Math.round(fraction * width)));
  return '█'.repeat(full) + dim('░'.repeat(width - full));
}

export class LiveView {
  private drawn = 0;

  /** Draw the state: in place on a terminal, else one line. */
  draw(state: ViewState): void {
    if (tty) {
      const lines = this.table(state);
      let out = this.drawn > 0 ? `\x1b[${this.drawn}A` : '';
      for (const line of lines) {
        out += `\r\x1b[K${line}\n`;
      }
      out += '\x1b[J';
      process.stdout.write(out);
      this.drawn = lines.length;
    } else {
      process.stdout.write(this.line(state) + '\n');
    }
  }

  /** Print a line of its own (a chaos event): above the table on a terminal. */
  note(text: string): void {
    if (!tty) {
      process.stdout.write(`${text}\n`);
    }
  }

  private progress(state: ViewState): string {
    const fraction = state.expected > 0 ? state.done / state.expected : 0;
    const left = state.leftMs === undefined ? '' : `  ~${clock(state.leftMs)} left`;
    return `${(fraction * 100).toFixed(0).padStart(3)}%  ${fmt(state.endedRuns)} jobs run  ` +
      `${fmt(state.jobsPerSecond)} jobs/s${left}`;
  }

  private line(state: ViewState): string {
    const sum = (f: (r: QueueRow) => number): string =>
      state.rows === undefined ? '-' : fmt(state.rows.reduce((a, r) => a + f(r), 0));
    const reclaimed = [...state.reclaimed.values()].reduce((a, b) => a + b, 0);
    const server = state.rows === undefined ? '  (server not answering)' : '';
    const conns = state.connections === undefined ? '-' : String(state.connections.total);
    return `[${clock(state.elapsedMs)}] ${this.progress(state)} | active ${sum((r) => r.active)} ` +
      `waiting ${sum((r) => r.waiting)} delayed ${sum((r) => r.delayed)} completed ${sum((r) => r.completed)} ` +
      `failed ${sum((r) => r.failed)} reclaimed ${reclaimed} | connections ${conns} (peak ` +
      `${state.peakConnections})${server}`;
  }

  private table(state: ViewState): string[] {
    const lines: string[] = [];
    lines.push(`${bold(state.title)}   ${dim('elapsed')} ${clock(state.elapsedMs)}`);
    lines.push('');
    const head = `${'queue'.padEnd(26)}${'active/limit'.padStart(13)}${'waiting'.padStart(10)}` +
      `${'delayed'.padStart(9)}${'completed'.padStart(11)}${'failed'.padStart(8)}${'reclaimed'.padStart(11)}`;
    lines.push(dim(head));
    const rows = new Map((state.rows ?? []).map((r) => [r.queue, r]));
    for (const queue of QUEUE_ORDER) {
      const r = rows.get(queue);
      const reclaimed = state.reclaimed.get(queue) ?? 0;
      if (r === undefined) {
        lines.push(`${queue.padEnd(26)}${dim('-'.padStart(13))}`);
        continue;
      }
      const busy = r.active > 0 || r.waiting > 0 || r.delayed > 0;
      const name = (r.paused ? `${queue} (paused)` : queue).padEnd(26);
      const activeText = `${r.active}/${r.concurrency}`.padStart(13);
      const text = `${busy ? name : dim(name)}${r.active >= r.concurrency ? yellow(activeText) : activeText}` +
        `${fmt(r.waiting).padStart(10)}${fmt(r.delayed).padStart(9)}${fmt(r.completed).padStart(11)}` +
        `${(r.failed > 0 ? red(fmt(r.failed).padStart(8)) : fmt(r.failed).padStart(8))}` +
        `${(reclaimed > 0 ? yellow(fmt(reclaimed).padStart(11)) : fmt(reclaimed).padStart(11))}`;
      lines.push(text);
    }
    lines.push('');
    const fraction = state.expected > 0 ? state.done / state.expected : 0;
    lines.push(`${bar(fraction, 30)} ${this.progress(state)}`);
    const c = state.connections;
    lines.push(c === undefined
      ? red('server not answering')
      : `connections of the ${state.workers} worker processes: ${c.total} (Immich pools ${c.pool}, ` +
        `queue clients ${c.queue}), peak ${state.peakConnections}` +
        `${state.clientErrors > 0 ? dim(`; errors absorbed: ${fmt(state.clientErrors)}`) : ''}`);
    lines.push('');
    for (const event of state.events.slice(-6)) {
      lines.push(dim(event));
    }
    return lines;
  }
}
