// Hourly means of dust and noise readings (Asia/Shanghai hours), as the alarm rules judge them:
// arithmetic means for particulates, energy (Leq) means for noise.

import { hour } from './format';

export interface Reading {
  ts: string;
  values: Record<string, unknown>;
}

export const NOISE_FIELDS = new Set(['noise_dba']);

export function hourlyMeans(readings: Reading[], field: string): Array<[string, number]> {
  const buckets = new Map<string, number[]>();
  for (const r of readings) {
    const v = r.values[field];
    if (typeof v !== 'number' || !Number.isFinite(v)) continue;
    const h = hour(r.ts);
    if (!h) continue;
    let b = buckets.get(h);
    if (!b) buckets.set(h, (b = []));
    b.push(v);
  }
  const leq = NOISE_FIELDS.has(field);
  return [...buckets.entries()]
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([h, vs]) => {
      const mean = leq
        ? 10 * Math.log10(vs.reduce((s, v) => s + 10 ** (v / 10), 0) / vs.length)
        : vs.reduce((s, v) => s + v, 0) / vs.length;
      return [h, Math.round(mean * 10) / 10];
    });
}

/** The `n` Asia/Shanghai hours (`YYYY-MM-DD HH:00`) ending with the hour of `end`, oldest first:
 * the x axis of an hourly chart, whole even when few hours have readings (so the limit lines
 * span the chart). */
export function lastHours(end: string | number | Date, n = 24): string[] {
  const t = new Date(end).getTime();
  return Array.from({ length: n }, (_, i) => hour(t - (n - 1 - i) * 3600 * 1000));
}
