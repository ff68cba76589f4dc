// One place that makes a system by name, for the harness and for the worker
// child processes (A7, memory). The immich_jobs adapter is loaded on demand,
// by a name the compiler does not follow, so that the rest of the benchmark
// builds (tsconfig.noclient.json) and runs while clients/node is missing.

import type { Config } from '../config.js';
import type { Server } from '../server.js';
import { BullMq } from './bullmq.js';
import { SqlQueue } from './sqlq.js';
import type { System, SystemName } from './system.js';

interface ImmichModule {
	ImmichJobs: new (server: Server, applicationName: string, poolMax: number) => System;
}

const immichAdapter = './immich.js';

export async function loadImmich(): Promise<ImmichModule> {
	return await import(immichAdapter) as ImmichModule;
}

// the application_name of every connection a system opens (A6 counts them)
export const applicationName = 'bench-app';

export interface Where { server: Server; cfg: Config; redisPort: number }

export async function openSystem(name: SystemName, where: Where): Promise<System> {
	switch (name) {
		case 'sqlq':
			return new SqlQueue(where.server, applicationName, where.cfg.sqlqPoolMax);
		case 'bullmq':
			return new BullMq(where.redisPort);
		case 'immich_jobs': {
			const { ImmichJobs } = await loadImmich();
			return new ImmichJobs(where.server, applicationName, where.cfg.immichPoolMax);
		}
	}
}
