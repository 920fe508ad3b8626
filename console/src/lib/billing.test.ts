import { describe, expect, it } from 'vitest';
import { revenueByCustomerMonth, type Invoice } from './billing';

const inv = (customer_id: string, period: string, total_fen: number, status = 'issued', credited_fen = 0) =>
  ({ customer_id, period, total_fen, status, credited_fen }) as unknown as Invoice;

describe('revenueByCustomerMonth', () => {
  it('sums net invoiced amounts per customer and month, leaving out void invoices', () => {
    const r = revenueByCustomerMonth([inv('b', '2026-11', 500), inv('a', '2026-10', 300), inv('a', '2026-11', 200, 'paid', 50), inv('a', '2026-11', 999, 'void')]);
    expect(r.months).toEqual(['2026-10', '2026-11']);
    expect(r.customers).toEqual(['a', 'b']);
    expect(r.fen).toEqual([
      [300, 150],
      [0, 500],
    ]);
  });
});
