// Samples pg_stat_activity every 100 ms on its own connection and keeps the
// peak number of backends with one application_name (A6: the connections a
// worker process uses, its LISTEN connection included), and, as a check, the
// peak of all client backends other than the sampler's own.

import pg from 'pg';
import type { Server } from './server.js';
import { clientConfig } from './server.js';

export interface ConnectionPeak { peak: number; peakAllClients: number; samples: number }

export class ConnectionSampler {
	private client: pg.Client;
	private timer: NodeJS.Timeout | undefined;
	private busy = false;
	private result: ConnectionPeak = { peak: 0, peakAllClients: 0, samples: 0 };
	private failure: Error | undefined;

	constructor(server: Server, private readonly applicationName: string) {
		this.client = new pg.Client(clientConfig(server, 'bench-app-sampler'));
		this.client.on('error', (err) => { this.failure = err; });
	}

	async start(): Promise<void> {
		await this.client.connect();
		await this.sample();
		this.timer = setInterval(() => void this.sample(), 100);
	}

	private async sample(): Promise<void> {
		if (this.busy) return;
		this.busy = true;
		try {
			const r = await this.client.query<{ mine: string; all: string }>(
				`SELECT count(*) FILTER (WHERE application_name = $1) AS mine,
				        count(*) FILTER (WHERE pid <> pg_backend_pid()) AS all
				 FROM pg_stat_activity WHERE backend_type = 'client backend'`, [this.applicationName]);
			const row = r.rows[0]!;
			this.result.peak = Math.max(this.result.peak, Number(row.mine));
			this.result.peakAllClients = Math.max(this.result.peakAllClients, Number(row.all));
			this.result.samples++;
		} catch (err) {
			this.failure = err as Error;
		} finally {
			this.busy = false;
		}
	}

	async stop(): Promise<ConnectionPeak> {
		clearInterval(this.timer);
		await this.sample();
		await this.client.end();
		if (this.failure) throw this.failure;
		return this.result;
	}
}
