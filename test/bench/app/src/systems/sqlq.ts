// The hand-written SQL queue, the way a team would write one with
// node-postgres: a table in its own schema, a worker that claims its free
// slots with UPDATE ... WHERE id IN (SELECT ... FOR UPDATE SKIP LOCKED),
// deletes each job as its handler ends (one statement per job), and polls
// every 100 ms when the queue is empty (no LISTEN). A queue with a limit
// (A5) is admitted the textbook way: the claim transaction locks the queue's
// row FOR UPDATE and counts the active jobs.

import pg from 'pg';
import type { Server } from '../server.js';
import { clientConfig } from '../server.js';
import type { BenchJob, Handler, NewJob, QueueOptions, Remaining, System, WorkerHandle } from './system.js';

export const schema = `
CREATE SCHEMA IF NOT EXISTS sqlq;
CREATE TABLE IF NOT EXISTS sqlq.queue (
	name text PRIMARY KEY,
	concurrency integer            -- NULL: no limit
);
CREATE TABLE IF NOT EXISTS sqlq.job (
	id bigserial PRIMARY KEY,
	queue text NOT NULL,
	name text NOT NULL,
	payload jsonb NOT NULL DEFAULT '{}',
	state text NOT NULL DEFAULT 'waiting',
	attempts integer NOT NULL DEFAULT 0,
	created_at timestamptz NOT NULL DEFAULT now(),
	locked_at timestamptz,
	last_error text
);
CREATE INDEX IF NOT EXISTS job_waiting ON sqlq.job (queue, id) WHERE state = 'waiting';
CREATE INDEX IF NOT EXISTS job_active ON sqlq.job (queue) WHERE state = 'active';
`;

const POLL_MS = 100;
const MAX_ATTEMPTS = 3;

const claimSql = `
UPDATE sqlq.job SET state = 'active', locked_at = now(), attempts = attempts + 1
WHERE id IN (SELECT id FROM sqlq.job WHERE state = 'waiting' AND queue = $1
             ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED)
RETURNING id, name, payload`;

interface Claimed { jobs: BenchJob[]; empty: boolean }

class SqlWorker implements WorkerHandle {
	private running = 0;
	private claiming = false;
	private again = false;
	private sawEmpty = false;
	private closing = false;
	private timer: NodeJS.Timeout | undefined;
	private idle: (() => void) | undefined;
	private limit: Promise<number | null>;

	constructor(
		private readonly pool: pg.Pool,
		private readonly queue: string,
		private readonly handler: Handler,
		private readonly concurrency: number,
		private readonly errors: string[]) {
		this.limit = pool.query<{ concurrency: number | null }>(
			'SELECT concurrency FROM sqlq.queue WHERE name = $1', [queue])
			.then((r) => r.rows[0]?.concurrency ?? null);
		this.pump();
	}

	// claim as many jobs as there are free slots, unless one claim is already
	// on its way or the queue was empty at the last look (then the poll timer)
	private pump(): void {
		if (this.closing) return;
		if (this.claiming) { this.again = true; return; }
		if (this.sawEmpty) return;
		const free = this.concurrency - this.running;
		if (free <= 0) return;
		this.claiming = true;
		this.again = false;
		this.claim(free).then(({ jobs, empty }) => {
			this.claiming = false;
			for (const job of jobs) this.run(job);
			if (empty) {
				this.sawEmpty = true;
				this.arm();
			} else if (jobs.length > 0 || this.again) {
				this.pump();
			} else {
				this.arm();     // held back by the queue's limit: a job's end or the timer
			}
			this.checkIdle();
		}, (err: Error) => {
			this.claiming = false;
			this.errors.push(`claim: ${err.message}`);
			this.arm();
			this.checkIdle();
		});
	}

	private arm(): void {
		if (this.timer || this.closing) return;
		this.timer = setTimeout(() => {
			this.timer = undefined;
			this.sawEmpty = false;
			this.pump();
		}, POLL_MS);
	}

	private async claim(free: number): Promise<Claimed> {
		const limit = await this.limit;
		if (limit === null) {
			const r = await this.pool.query(claimSql, [this.queue, free]);
			return { jobs: r.rows.map(toJob), empty: r.rows.length < free };
		}
		const c = await this.pool.connect();
		try {
			await c.query('BEGIN');
			const q = await c.query<{ concurrency: number }>(
				'SELECT concurrency FROM sqlq.queue WHERE name = $1 FOR UPDATE', [this.queue]);
			const a = await c.query<{ n: string }>(
				"SELECT count(*) AS n FROM sqlq.job WHERE queue = $1 AND state = 'active'", [this.queue]);
			const n = Math.min(free, q.rows[0]!.concurrency - Number(a.rows[0]!.n));
			const r = n > 0 ? await c.query(claimSql, [this.queue, n]) : { rows: [] };
			await c.query('COMMIT');
			return { jobs: r.rows.map(toJob), empty: n > 0 && r.rows.length < n };
		} catch (err) {
			await c.query('ROLLBACK').catch(() => {});
			throw err;
		} finally {
			c.release();
		}
	}

	private run(job: BenchJob): void {
		this.running++;
		this.handler(job).then(
			() => this.pool.query('DELETE FROM sqlq.job WHERE id = $1', [job.id]),
			(err: Error) => this.pool.query(
				`UPDATE sqlq.job SET state = CASE WHEN attempts >= $3 THEN 'failed' ELSE 'waiting' END,
				        locked_at = NULL, last_error = $2 WHERE id = $1`, [job.id, String(err), MAX_ATTEMPTS]),
		).catch((err: Error) => {
			this.errors.push(`finish: ${err.message}`);
		}).finally(() => {
			this.running--;
			this.pump();
			this.checkIdle();
		});
	}

	private checkIdle(): void {
		if (this.closing && this.running === 0 && !this.claiming) this.idle?.();
	}

	// stop claiming, wait for the running handlers and their DELETEs
	close(): Promise<void> {
		this.closing = true;
		clearTimeout(this.timer);
		this.timer = undefined;
		return new Promise((resolve) => {
			this.idle = resolve;
			this.checkIdle();
		});
	}
}

function toJob(row: { id: string; name: string; payload: Record<string, unknown> }): BenchJob {
	return { id: String(row.id), name: row.name, payload: row.payload };
}

export class SqlQueue implements System {
	readonly name = 'sqlq' as const;
	readonly errors: string[] = [];
	private readonly pool: pg.Pool;

	constructor(server: Server, applicationName: string, poolMax: number) {
		this.pool = new pg.Pool({ ...clientConfig(server, applicationName), max: poolMax });
		this.pool.on('error', (err) => this.errors.push(`pool: ${err.message}`));
	}

	async install(): Promise<void> {
		await this.pool.query(schema);
	}

	async createQueue(queue: string, options: QueueOptions): Promise<void> {
		await this.pool.query('INSERT INTO sqlq.queue (name, concurrency) VALUES ($1, $2)',
			[queue, options.limit ?? null]);
	}

	async enqueue(queue: string, job: NewJob): Promise<string> {
		const r = await this.pool.query<{ id: string }>(
			'INSERT INTO sqlq.job (queue, name, payload) VALUES ($1, $2, $3) RETURNING id',
			[queue, job.name, JSON.stringify(job.payload)]);
		return r.rows[0]!.id;
	}

	async enqueueMany(queue: string, jobs: NewJob[]): Promise<number> {
		const r = await this.pool.query(
			`INSERT INTO sqlq.job (queue, name, payload)
			 SELECT $1, name, payload FROM jsonb_to_recordset($2::jsonb) AS x(name text, payload jsonb)`,
			[queue, JSON.stringify(jobs)]);
		return r.rowCount ?? 0;
	}

	work(queue: string, handler: Handler, concurrency: number): WorkerHandle {
		return new SqlWorker(this.pool, queue, handler, concurrency, this.errors);
	}

	async remaining(queue: string): Promise<Remaining> {
		const r = await this.pool.query<{ waiting: string; active: string; failed: string }>(
			`SELECT count(*) FILTER (WHERE state = 'waiting') AS waiting,
			        count(*) FILTER (WHERE state = 'active') AS active,
			        count(*) FILTER (WHERE state = 'failed') AS failed
			 FROM sqlq.job WHERE queue = $1`, [queue]);
		const row = r.rows[0]!;
		return { waiting: Number(row.waiting), active: Number(row.active), delayed: 0, failed: Number(row.failed) };
	}

	async dropQueue(queue: string): Promise<void> {
		await this.pool.query('DELETE FROM sqlq.job WHERE queue = $1', [queue]);
		await this.pool.query('DELETE FROM sqlq.queue WHERE name = $1', [queue]);
	}

	async close(): Promise<void> {
		await this.pool.end();
	}
}
