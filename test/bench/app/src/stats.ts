// Medians, percentiles and the number formats of the results table.

export function median(values: number[]): number {
	if (values.length === 0) return NaN;
	const s = [...values].sort((a, b) => a - b);
	const m = Math.floor(s.length / 2);
	return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

// nearest-rank percentile (p in 0..100)
export function percentile(values: number[], p: number): number {
	if (values.length === 0) return NaN;
	const s = [...values].sort((a, b) => a - b);
	const rank = Math.ceil((p / 100) * s.length);
	return s[Math.min(s.length, Math.max(1, rank)) - 1]!;
}

export function mean(values: number[]): number {
	return values.length === 0 ? NaN : values.reduce((a, b) => a + b, 0) / values.length;
}

// 12,345 for large figures, 0.45 for small ones
export function fmt(value: number, digits?: number): string {
	if (!Number.isFinite(value)) return 'n/a';
	const d = digits ?? (Math.abs(value) >= 100 ? 0 : Math.abs(value) >= 10 ? 1 : 2);
	return value.toLocaleString('en-US', { minimumFractionDigits: d, maximumFractionDigits: d });
}

export function fmtInt(value: number): string {
	return fmt(value, 0);
}
