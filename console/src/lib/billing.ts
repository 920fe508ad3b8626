// Billing objects the console reads. The OpenAPI document gives packages and subscriptions as
// untyped objects, so these name only the fields the console shows (API.md "Billing").

import type { Schemas } from '@/api/client';

export interface PriceLine {
  unit: string;
  price_fen: number;
  category?: string | null;
  included?: number | null;
}

export interface Package {
  id: string;
  name: string;
  model: string;
  version: number;
  prices: PriceLine[];
  created_at: string;
}

export interface Subscription {
  id: string;
  customer_id: string;
  project_id: string;
  package_id: string;
  package_version: number;
  start_date: string;
  end_date?: string | null;
  funding_source: string;
  status: string;
  model: string;
}

export type Invoice = Schemas['Invoice'];

export interface InvoiceLine {
  item: string;
  description?: string;
  quantity_milli?: number;
  unit_price_fen?: number;
  amount_fen: number;
  trace?: string[];
}

/** Revenue (invoiced, not voided) by customer and month: `{months, customers, fen[c][m]}`. */
export function revenueByCustomerMonth(invoices: Invoice[]) {
  const live = invoices.filter((i) => i.status !== 'void');
  const months = [...new Set(live.map((i) => i.period))].sort();
  const customers = [...new Set(live.map((i) => i.customer_id))].sort();
  const fen = customers.map((c) =>
    months.map((m) => live.filter((i) => i.customer_id === c && i.period === m).reduce((s, i) => s + i.total_fen - i.credited_fen, 0)),
  );
  return { months, customers, fen };
}
