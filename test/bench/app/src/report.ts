// The results table of make bench-app: every figure (the median of its runs)
// next to its reference measured in the same run, its ratio, its target and
// whether it is met; written as markdown and JSON (with the raw runs).

import { writeFile } from 'node:fs/promises';
import type { Config } from './config.js';
import { fmt, fmtInt, median } from './stats.js';

export interface RawRun {
	figure: string;
	system: string;
	run: number;
	result?: Record<string, unknown>;
	error?: string;
}

export interface Meta {
	mode: 'quick' | 'full';
	started: string;
	wall_seconds: number;
	commit: string;
	postgresql: string;
	redis: string;
	node: string;
	bullmq: string;
	cpus: number;
	systems: Record<string, string>;   // system -> 'measured' or why not
	config: Config;
}

type Met = 'yes' | 'MISS' | '-';

interface Row {
	figure: string;
	value: number | string | null;
	unit: string;
	reference: string | null;
	reference_value: number | null;
	ratio: number | null;
	target: string | null;
	met: Met;
	note?: string;
}

class Results {
	constructor(private readonly raw: RawRun[]) {}

	runs(figure: string, system: string): RawRun[] {
		return this.raw.filter((r) => r.figure === figure && r.system === system);
	}

	// median of a numeric key over the runs that measured it
	med(figure: string, system: string, key: string): number | null {
		const v = this.runs(figure, system)
			.map((r) => r.result?.[key])
			.filter((x): x is number => typeof x === 'number' && Number.isFinite(x));
		return v.length === 0 ? null : median(v);
	}

	single(figure: string, system: string): Record<string, unknown> | undefined {
		return this.runs(figure, system).find((r) => r.result)?.result;
	}

	// why a figure has no value
	why(figure: string, system: string): string {
		const e = this.runs(figure, system).find((r) => r.error)?.error;
		return e ? `failed: ${e}` : 'not measured';
	}
}

function ratioOf(v: number | null, ref: number | null): number | null {
	return v === null || ref === null || ref === 0 ? null : v / ref;
}

export function buildRows(raw: RawRun[], cfg: Config): Row[] {
	const res = new Results(raw);
	const rows: Row[] = [];
	const R = res.med('R', 'pgbench', 'tps');
	const label = { immich_jobs: 'immich_jobs', sqlq: 'SQL queue', bullmq: 'BullMQ' } as Record<string, string>;

	// value vs reference, target "ratio >= factor" (factor null: no target)
	const versus = (figure: string, value: number | null, unit: string, refName: string, ref: number | null,
		refUnit: string, factor: number | null, why: string): void => {
		const ratio = ratioOf(value, ref);
		rows.push({
			figure, value, unit,
			reference: `${refName} = ${ref === null ? 'n/a' : fmtInt(ref)} ${refUnit}`,
			reference_value: ref, ratio,
			target: factor === null ? null : `>= ${factor} x ${refName}`,
			met: factor === null || ratio === null ? '-' : ratio >= factor ? 'yes' : 'MISS',
			note: value === null ? why : undefined,
		});
	};
	// value vs a limit, target "value <= limit" (or just the limit as a reference)
	const atMost = (figure: string, value: number | null, unit: string, limit: number, limitText: string,
		isTarget: boolean, why: string): void => {
		rows.push({
			figure, value, unit, reference: limitText, reference_value: limit,
			ratio: ratioOf(value, limit),
			target: isTarget ? `<= ${limitText}` : null,
			met: !isTarget || value === null ? '-' : value <= limit ? 'yes' : 'MISS',
			note: value === null ? why : undefined,
		});
	};
	const plain = (figure: string, value: number | string | null, unit: string, why = ''): void => {
		rows.push({ figure, value, unit, reference: null, reference_value: null, ratio: null, target: null,
			met: '-', note: value === null ? why : undefined });
	};

	plain(`R: pgbench -c 1, one-row UPDATE (one connection's commit rate)`, R, 'commits/s', res.why('R', 'pgbench'));

	// A1
	const a1 = (s: string) => res.med('A1', s, 'rate');
	const a1n = fmtInt(cfg.a1Jobs);
	versus(`A1 drain ${a1n} no-op jobs, concurrency ${cfg.concurrency}: immich_jobs`, a1('immich_jobs'), 'jobs/s',
		'BullMQ', a1('bullmq'), 'jobs/s', 1.5, res.why('A1', 'immich_jobs'));
	versus('A1 immich_jobs against the SQL queue', a1('immich_jobs'), 'jobs/s',
		'SQL queue', a1('sqlq'), 'jobs/s', 5, res.why('A1', 'immich_jobs'));
	versus('A1 BullMQ', a1('bullmq'), 'jobs/s', 'R', R, 'commits/s', null, res.why('A1', 'bullmq'));
	versus('A1 SQL queue', a1('sqlq'), 'jobs/s', 'R', R, 'commits/s', null, res.why('A1', 'sqlq'));

	// A2
	const a2 = (s: string) => res.med('A2', s, 'rate');
	versus(`A2 bulk enqueue ${cfg.a2Calls} x ${fmtInt(cfg.a2Batch)} jobs: immich_jobs enqueueMany`, a2('immich_jobs'),
		'jobs/s', 'BullMQ addBulk', a2('bullmq'), 'jobs/s', 2, res.why('A2', 'immich_jobs'));
	versus('A2 immich_jobs against the SQL queue (INSERT ... jsonb_to_recordset)', a2('immich_jobs'), 'jobs/s',
		'SQL queue', a2('sqlq'), 'jobs/s', null, res.why('A2', 'immich_jobs'));
	if (a2('immich_jobs') === null) {
		versus('A2 BullMQ addBulk', a2('bullmq'), 'jobs/s', 'SQL queue', a2('sqlq'), 'jobs/s', null, res.why('A2', 'bullmq'));
	}

	// A3
	const a3 = (s: string) => res.med('A3', s, 'rate');
	versus(`A3 single enqueue, ${cfg.a3Producers} producers: immich_jobs enqueue`, a3('immich_jobs'), 'jobs/s',
		`SQL queue INSERT (pool of ${cfg.sqlqPoolMax})`, a3('sqlq'), 'jobs/s', 2, res.why('A3', 'immich_jobs'));
	versus('A3 immich_jobs against BullMQ add', a3('immich_jobs'), 'jobs/s', 'BullMQ', a3('bullmq'), 'jobs/s', null,
		res.why('A3', 'immich_jobs'));
	versus('A3 SQL queue INSERTs', a3('sqlq'), 'jobs/s', 'R', R, 'commits/s', null, res.why('A3', 'sqlq'));
	if (a3('immich_jobs') === null) {
		versus('A3 BullMQ add', a3('bullmq'), 'jobs/s', 'R', R, 'commits/s', null, res.why('A3', 'bullmq'));
	}

	// A4
	for (const s of ['immich_jobs', 'bullmq', 'sqlq']) {
		const extra = s === 'sqlq' ? ' (polls every 100 ms)' : '';
		plain(`A4 pickup latency p50: ${label[s]}${extra}`, res.med('A4', s, 'p50_ms'), 'ms', res.why('A4', s));
		atMost(`A4 pickup latency p99: ${label[s]}${extra}`, res.med('A4', s, 'p99_ms'), 'ms', 5, '5 ms',
			s === 'immich_jobs', res.why('A4', s));
	}

	// A5
	const bound5 = (cfg.a5Limit * 1000) / cfg.a5SleepMs;
	for (const s of ['immich_jobs', 'bullmq', 'sqlq']) {
		const how = { immich_jobs: 'queue concurrency', bullmq: 'global concurrency', sqlq: 'queue row' }[s];
		const isTarget = s === 'immich_jobs';
		const rate = res.med('A5', s, 'rate');
		const ratio = ratioOf(rate, bound5);
		rows.push({
			figure: `A5 limit ${cfg.a5Limit} (${how}), ${cfg.a5SleepMs} ms handlers, ${cfg.concurrency} slots offered: ${label[s]}`,
			value: rate, unit: 'jobs/s',
			reference: `${cfg.a5Limit} slots / ${cfg.a5SleepMs} ms = ${fmtInt(bound5)} jobs/s`, reference_value: bound5,
			ratio, target: isTarget ? `>= 0.9 x ${fmtInt(bound5)}` : null,
			met: !isTarget || ratio === null ? '-' : ratio >= 0.9 ? 'yes' : 'MISS',
			note: rate === null ? res.why('A5', s) : undefined,
		});
		// the most at once over the runs, not the median
		const maxes = res.runs('A5', s).map((r) => r.result?.max_running).filter((x): x is number => typeof x === 'number');
		atMost(`A5 ${label[s]}: most handlers running at once`, maxes.length ? Math.max(...maxes) : null, '',
			cfg.a5Limit, `limit = ${cfg.a5Limit}`, isTarget, res.why('A5', s));
		if (isTarget) rows[rows.length - 1]!.target = `<= ${cfg.a5Limit}`;
	}

	// A6
	for (const s of ['immich_jobs', 'sqlq', 'bullmq']) {
		const rate = res.med('A6', s, 'rate');
		const bound = res.med('A6', s, 'bound');
		const isTarget = s === 'immich_jobs';
		const ratio = ratioOf(rate, bound);
		const dry = res.runs('A6', s).filter((r) => typeof r.result?.queues_run_dry === 'number' &&
			(r.result.queues_run_dry as number) > 0).length;
		rows.push({
			figure: `A6 Immich's mix, 18 queues, 2-50 ms handlers: ${label[s]} jobs completed`,
			value: rate, unit: 'jobs/s',
			reference: `the slots' bound = ${bound === null ? 'n/a' : fmtInt(bound)} jobs/s`, reference_value: bound,
			ratio, target: isTarget ? '>= 0.9 x bound' : null,
			met: !isTarget || ratio === null ? '-' : ratio >= 0.9 ? 'yes' : 'MISS',
			note: rate === null ? res.why('A6', s) :
				dry > 0 ? `in ${dry} run(s) a queue ran out of jobs before the window ended` : undefined,
		});
		if (s !== 'bullmq') {
			const peaks = res.runs('A6', s).map((r) => r.result?.peak_connections).filter((x): x is number => typeof x === 'number');
			const limitText = isTarget ? '5' : `pool max ${cfg.sqlqPoolMax}`;
			atMost(`A6 ${label[s]}: connections at the peak${isTarget ? ' (LISTEN included)' : ''}`,
				peaks.length ? Math.max(...peaks) : null, '', isTarget ? 5 : cfg.sqlqPoolMax, limitText, isTarget,
				res.why('A6', s));
		}
	}

	// A7
	const a7 = res.single('A7', 'immich_jobs');
	const a7why = res.why('A7', 'immich_jobs');
	const n7 = fmtInt(cfg.a7Jobs);
	if (!a7) {
		plain(`A7 pg_ctl restart -m immediate mid-drain (${n7} jobs): immich_jobs`, null, '', a7why);
	} else {
		const num = (k: string): number | null => (typeof a7[k] === 'number' ? a7[k] as number : null);
		const survived = a7.survived === true;
		rows.push({ figure: `A7 pg_ctl restart -m immediate mid-drain (${n7} jobs): worker process survived`,
			value: survived ? 'yes' : `no (${String(a7.exit)})`, unit: '', reference: null, reference_value: null,
			ratio: null, target: 'survives', met: survived ? 'yes' : 'MISS' });
		atMost('A7 draining again: restart returned -> first job started after it completed',
			num('drain_again_seconds'), 's', 3, '3 s', true, 'no job completed after the restart');
		rows.push({ figure: 'A7 jobs run twice', value: num('ran_twice'), unit: 'jobs',
			reference: `of ${n7}`, reference_value: cfg.a7Jobs, ratio: null, target: null, met: '-',
			note: survived ? undefined : 'the worker died' });
		const lost = num('never_ran');
		rows.push({ figure: 'A7 jobs lost (enqueued, never run)', value: lost, unit: 'jobs',
			reference: `of ${n7}`, reference_value: cfg.a7Jobs, ratio: null, target: '= 0',
			met: lost === null ? '-' : lost === 0 ? 'yes' : 'MISS', note: survived ? undefined : 'the worker died' });
		const leftover = (num('left_in_queue') ?? 0) + (num('failed') ?? 0);
		rows.push({ figure: 'A7 queue counts at the end (waiting + active + delayed + failed)', value: leftover,
			unit: 'jobs', reference: `waited up to lease_timeout ${cfg.a7LeaseTimeoutMs / 1000} s + reaper 1 s + 5 s`,
			reference_value: null, ratio: null, target: '= 0', met: leftover === 0 ? 'yes' : 'MISS' });
		plain('A7 total time (worker start to drained)', num('total_seconds'), 's');
	}

	// memory
	const nm = fmtInt(cfg.memoryJobs);
	atMost(`memory: worker process RSS growth draining ${nm} jobs: immich_jobs`,
		res.med('memory', 'immich_jobs', 'growth_mb'), 'MB', 20, '20 MB', true, res.why('memory', 'immich_jobs'));
	const heapTotal = res.med('memory', 'immich_jobs', 'heap_total_mb');
	atMost(`memory: immich_jobs worker's heap in use after a full GC at the end`,
		res.med('memory', 'immich_jobs', 'heap_used_after_gc_mb'), 'MB', heapTotal ?? 0,
		`heap V8 had grown to = ${heapTotal === null ? 'n/a' : heapTotal.toFixed(1)} MB`, false,
		res.why('memory', 'immich_jobs'));
	if (cfg.memoryBullmq) {
		atMost(`memory: the same for BullMQ`, res.med('memory', 'bullmq', 'growth_mb'), 'MB', 20, '20 MB', false,
			res.why('memory', 'bullmq'));
	}
	return rows;
}

function cell(v: number | string | null, unit: string): string {
	if (v === null) return 'not measured';
	if (typeof v === 'string') return v;
	const d = unit === 'ms' ? 2 : unit === 's' ? 2 : unit === 'MB' ? 1 : unit === '' || unit === 'jobs' ? 0 : undefined;
	return `${fmt(v, d)}${unit ? ` ${unit}` : ''}`;
}

export function markdown(rows: Row[], meta: Meta): string {
	const c = meta.config;
	const lines = [
		'# make bench-app',
		'',
		'| figure | value | limit/reference | ratio | target | met? |',
		'|---|---|---|---|---|---|',
		...rows.map((r) => `| ${r.figure} | ${cell(r.value, r.unit)} | ${r.reference ?? ''} | ` +
			`${r.ratio === null ? '' : fmt(r.ratio, 2)} | ${r.target ?? ''} | ${r.met} |`),
		'',
		`- Mode: **${meta.mode}**. Commit ${meta.commit}, PostgreSQL ${meta.postgresql}, Redis ${meta.redis}, ` +
		`Node ${meta.node}, BullMQ ${meta.bullmq}, ${meta.cpus} CPUs; shared_buffers = 1GB, fsync and ` +
		`synchronous_commit on. Wall time of \`make bench-app\`: ${meta.wall_seconds} s (started ${meta.started}).`,
		`- Systems: ${Object.entries(meta.systems).map(([s, w]) => `${s} ${w}`).join('; ')}.`,
		`- Sizes used: ${c.runs === 1 ? 'one run of each figure' : `each figure the median of ${c.runs} runs`} ` +
		`(A7 and memory: one run); R: pgbench -T ${c.pgbenchSeconds}; A1 ${fmtInt(c.a1Jobs)} jobs; ` +
		`A2 ${c.a2Calls} calls of ${fmtInt(c.a2Batch)}; A3 ${fmtInt(c.a3Jobs)} jobs or ${c.a3Seconds} s; ` +
		`A4 ${c.a4Jobs} jobs ${c.a4IntervalMs} ms apart; A5 ${fmtInt(c.a5Jobs)} jobs; ` +
		`A6 ${c.a6WindowSeconds} s measured after ${c.a6WarmupSeconds} s of warm-up; ` +
		`A7 ${fmtInt(c.a7Jobs)} jobs, lease_timeout ${c.a7LeaseTimeoutMs / 1000} s; memory ${fmtInt(c.memoryJobs)} jobs.`,
		`- One Node.js process per system, worker concurrency ${c.concurrency} per queue unless said, the same handlers ` +
		`for every system. immich_jobs: the project's Node client (pg driver, pool of ${c.immichPoolMax} + one LISTEN ` +
		`connection). SQL queue: node-postgres Pool of ${c.sqlqPoolMax}, UPDATE ... FOR UPDATE SKIP LOCKED claims of the free ` +
		'slots, one DELETE per finished job, polling every 100 ms when empty, a queue row locked FOR UPDATE for a limit. ' +
		'BullMQ: Queue + Worker, attempts 3, removeOnComplete, removeOnFail false, on its own redis-server (default configuration).',
		'- Before each measured step: VACUUM (ANALYZE) of the job tables and CHECKPOINT. Drains (A1, A5) run from the ' +
		"worker's start until every handler ended and the queue is empty. A4: start of the enqueue call to start of the " +
		'handler. A6: handler ends in the window; bound = sum over queues of concurrency / mean duration of the jobs that ' +
		'ended in the window. A7: restart when a third of the jobs ran; the worker is a child process. memory: RSS of the ' +
		'worker child (/proc, every 100 ms), peak minus the value after the first ' +
		`${fmtInt(c.memoryBaselineJobs)} jobs. Raw runs: app-latest.json.`,
	];
	const notes = rows.filter((r) => r.note).map((r) => `- ${r.figure}: ${r.note}`);
	if (notes.length) lines.push('', 'Notes (figures not measured, warnings):', '', ...notes);
	return lines.join('\n') + '\n';
}

export async function writeReport(dir: string, rows: Row[], meta: Meta, raw: RawRun[]): Promise<string> {
	const md = markdown(rows, meta);
	await writeFile(`${dir}/app-latest.md`, md);
	await writeFile(`${dir}/app-latest.json`, JSON.stringify({ meta, figures: rows, raw }, null, 2) + '\n');
	return md;
}
