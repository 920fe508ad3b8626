import { describe, expect, it } from 'vitest';
import { hourlyMeans, lastHours } from './hourly';

describe('hourlyMeans', () => {
  const r = (ts: string, values: Record<string, unknown>) => ({ ts, values });
  it('averages particulates per Asia/Shanghai hour, in order', () => {
    const out = hourlyMeans(
      [r('2026-12-07T01:10:00Z', { pm10_ugm3: 100 }), r('2026-12-07T00:59:00Z', { pm10_ugm3: 40 }), r('2026-12-07T01:50:00Z', { pm10_ugm3: 200 }), r('2026-12-07T01:55:00Z', { noise_dba: 60 })],
      'pm10_ugm3',
    );
    expect(out).toEqual([
      ['2026-12-07 08:00', 40],
      ['2026-12-07 09:00', 150],
    ]);
  });
  it('takes the energy mean (Leq) of noise, not the arithmetic one', () => {
    const [[, leq]] = hourlyMeans([r('2026-12-07T01:00:00Z', { noise_dba: 60 }), r('2026-12-07T01:30:00Z', { noise_dba: 70 })], 'noise_dba');
    expect(leq).toBe(67.4);
  });
});

describe('lastHours', () => {
  it('ends with the Asia/Shanghai hour of the instant, oldest first, across midnight', () => {
    const hs = lastHours('2026-12-07T17:30:00Z', 24);
    expect(hs).toHaveLength(24);
    expect(hs[0]).toBe('2026-12-07 02:00');
    expect(hs[21]).toBe('2026-12-07 23:00');
    expect(hs[22]).toBe('2026-12-08 00:00');
    expect(hs[23]).toBe('2026-12-08 01:00');
  });
});
