// Progress lines on stderr, "[  12s] ...", seconds since the start of
// make bench-app (BENCH_T0, set by ./run), the way test/bench/run logs.

const t0 = Number(process.env.BENCH_T0 ?? Math.floor(Date.now() / 1000));

export function log(message: string): void {
	const s = Math.floor(Date.now() / 1000) - t0;
	process.stderr.write(`[${String(s).padStart(4)}s] ${message}\n`);
}
