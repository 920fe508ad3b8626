import { describe, expect, it } from 'vitest';
import { day, hour, instant, money, month, parseYuan, percentBp, yuan } from './format';

describe('money', () => {
  it('shows fen as yuan with two decimals and grouping', () => {
    expect(yuan(123456)).toBe('1,234.56');
    expect(money(123456)).toBe('¥1,234.56');
    expect(yuan(5)).toBe('0.05');
    expect(yuan(0)).toBe('0.00');
    expect(yuan(12_000_000_000)).toBe('120,000,000.00');
    expect(money(-100)).toBe('-¥1.00');
    expect(yuan(null)).toBe('—');
  });
  it('parses typed yuan back to fen exactly', () => {
    expect(parseYuan('1,234.56')).toBe(123456);
    expect(parseYuan('0.1')).toBe(10);
    expect(parseYuan('1200000')).toBe(120000000);
    expect(parseYuan('¥ 3.05 元')).toBe(305);
    expect(parseYuan('1.005')).toBeNull();
    expect(parseYuan('abc')).toBeNull();
  });
  it('shows basis points as percent', () => {
    expect(percentBp(150)).toBe('1.50%');
  });
});

describe('instants in Asia/Shanghai', () => {
  it('shifts UTC by eight hours and crosses midnight', () => {
    expect(instant('2026-12-06T16:30:05Z')).toBe('2026-12-07 00:30:05');
    expect(day('2026-12-06T16:30:05Z')).toBe('2026-12-07');
    expect(hour('2026-12-06T16:30:05Z')).toBe('2026-12-07 00:00');
    expect(month('2026-11-30T16:00:00Z')).toBe('2026-12');
    expect(instant(null)).toBe('—');
  });
});
