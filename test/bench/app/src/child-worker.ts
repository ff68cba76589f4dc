// The harness's side of a worker child process (child.ts): start it, wait
// for its messages, see it exit, stop it and take its report.

import { fork } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { ChildMessage, ChildSpec } from './child.js';

type Report = Extract<ChildMessage, { type: 'report' }>;

export class ChildWorker {
	readonly process: ChildProcess;
	ended = 0;
	distinct = 0;
	exited: { code: number | null; signal: string | null } | undefined;
	readonly exit: Promise<void>;
	private listeners: Array<(m: ChildMessage) => void> = [];

	constructor(spec: ChildSpec) {
		this.process = fork(fileURLToPath(new URL('./child.js', import.meta.url)), [], {
			env: { ...process.env, BENCH_CHILD: JSON.stringify(spec) },
			stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
			execArgv: [...process.execArgv, '--expose-gc'],
			serialization: 'advanced',
		});
		this.process.on('message', (m: ChildMessage) => {
			if (m.type === 'progress') {
				this.ended = m.ended;
				this.distinct = m.distinct;
			}
			for (const l of [...this.listeners]) l(m);
		});
		this.exit = new Promise((resolve) => {
			this.process.on('exit', (code, signal) => {
				this.exited = { code, signal };
				resolve();
			});
		});
	}

	get pid(): number {
		return this.process.pid!;
	}

	// the next message of a type; rejects if the child exits first
	next<T extends ChildMessage['type']>(type: T): Promise<Extract<ChildMessage, { type: T }>> {
		return new Promise((resolve, reject) => {
			const listener = (m: ChildMessage): void => {
				if (m.type !== type) return;
				this.listeners = this.listeners.filter((l) => l !== listener);
				resolve(m as Extract<ChildMessage, { type: T }>);
			};
			this.listeners.push(listener);
			void this.exit.then(() => reject(new Error(
				`the worker process exited (code ${this.exited?.code}, signal ${this.exited?.signal}) before "${type}"`)));
		});
	}

	async stop(): Promise<Report> {
		const report = this.next('report');
		this.process.send({ type: 'stop' });
		const r = await report;
		await this.exit;
		return r;
	}

	kill(): void {
		if (!this.exited) this.process.kill('SIGKILL');
	}
}
