// Money, dates and instants as Chinese finance staff expect them: 元 with two decimals from
// integer fen (no floating point on the way), dates YYYY-MM-DD, instants in Asia/Shanghai.

const TZ = 'Asia/Shanghai';

/** `123456` fen → `1,234.56`; negative amounts keep their sign. */
export function yuan(fen: number | null | undefined): string {
  if (fen === null || fen === undefined || !Number.isFinite(fen)) return '—';
  const n = Math.trunc(fen);
  const sign = n < 0 ? '-' : '';
  const abs = Math.abs(n);
  const whole = Math.floor(abs / 100)
    .toString()
    .replace(/\B(?=(\d{3})+(?!\d))/g, ',');
  const cents = (abs % 100).toString().padStart(2, '0');
  return `${sign}${whole}.${cents}`;
}

/** `123456` fen → `¥1,234.56`. */
export function money(fen: number | null | undefined): string {
  const y = yuan(fen);
  if (y === '—') return y;
  return y.startsWith('-') ? `-¥${y.slice(1)}` : `¥${y}`;
}

/** `1,234.56` or `1234.5` (元, as typed) → fen, or null when it is not an amount. */
export function parseYuan(text: string): number | null {
  const s = text.replace(/[,，\s¥元]/g, '');
  const m = /^(-?)(\d+)(?:\.(\d{1,2}))?$/.exec(s);
  if (!m) return null;
  const fen = Number(m[2]) * 100 + Number((m[3] ?? '').padEnd(2, '0'));
  return m[1] ? -fen : fen;
}

const parts = new Intl.DateTimeFormat('en-CA', {
  timeZone: TZ,
  year: 'numeric',
  month: '2-digit',
  day: '2-digit',
  hour: '2-digit',
  minute: '2-digit',
  second: '2-digit',
  hourCycle: 'h23',
});

function shanghai(instant: string | number | Date) {
  const d = instant instanceof Date ? instant : new Date(instant);
  if (Number.isNaN(d.getTime())) return null;
  const p: Record<string, string> = {};
  for (const x of parts.formatToParts(d)) p[x.type] = x.value;
  return p;
}

/** An RFC 3339 instant → `YYYY-MM-DD HH:mm:ss` in Asia/Shanghai. */
export function instant(value: string | number | Date | null | undefined): string {
  if (value === null || value === undefined || value === '') return '—';
  const p = shanghai(value);
  return p ? `${p.year}-${p.month}-${p.day} ${p.hour}:${p.minute}:${p.second}` : String(value);
}

/** The calendar day of an instant in Asia/Shanghai, `YYYY-MM-DD`. */
export function day(value: string | number | Date): string {
  const p = shanghai(value);
  return p ? `${p.year}-${p.month}-${p.day}` : '';
}

/** The hour of an instant in Asia/Shanghai, `YYYY-MM-DD HH:00`. */
export function hour(value: string | number | Date): string {
  const p = shanghai(value);
  return p ? `${p.year}-${p.month}-${p.day} ${p.hour}:00` : '';
}

/** The month of an instant in Asia/Shanghai, `YYYY-MM`. */
export function month(value: string | number | Date): string {
  return day(value).slice(0, 7);
}

/** Basis points → `12.34%`. */
export function percentBp(bp: number | null | undefined): string {
  if (bp === null || bp === undefined) return '—';
  return `${(bp / 100).toFixed(2)}%`;
}
