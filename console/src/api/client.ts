// The one API layer: base URL from config.json, the Bearer token, problem+json errors, and
// network loss (reads retry behind a banner; writes fail with what was typed kept by the form).

import type { components } from './schema';

export type Schemas = components['schemas'];

export interface Problem {
  type?: string;
  title?: string;
  status?: number;
  detail?: string;
  field?: string;
  [k: string]: unknown;
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly problem: Problem | null,
    /** Seconds the server asks to wait before trying again (`Retry-After` of a 429 or 503). */
    readonly retryAfter: number | null = null,
  ) {
    super(problem?.detail ?? problem?.title ?? `HTTP ${status}`);
  }

  /** The stable slug of the problem `type` (`…/problems/validation` → `validation`);
   * `network` when the server could not be reached. */
  get slug(): string {
    if (this.status === 0) return 'network';
    const t = this.problem?.type ?? '';
    return t.slice(t.lastIndexOf('/') + 1) || `http-${this.status}`;
  }
}

export interface ClientHooks {
  token(): string | null;
  /** Called on a 401 for a request that carried a token; resolves true once signed in again. */
  reauthenticate(): Promise<boolean>;
  /** The server is unreachable (true) or reachable again (false). */
  network(down: boolean): void;
}

let base = '';
let hooks: ClientHooks = {
  token: () => null,
  reauthenticate: async () => false,
  network: () => {},
};

export function configure(apiBase: string, h: ClientHooks): void {
  base = apiBase.replace(/\/$/, '');
  hooks = h;
}

export function apiUrl(path: string): string {
  return base + path;
}

export type Query = Record<string, string | number | boolean | null | undefined>;

export interface RequestOptions {
  query?: Query;
  body?: unknown;
  /** A raw body (e.g. CSV) with its content type. */
  text?: { body: string; contentType: string };
  signal?: AbortSignal;
  headers?: Record<string, string>;
  /** Reads retry while the network is down (default for GET); writes never do. */
  retry?: boolean;
}

function withQuery(path: string, query?: Query): string {
  if (!query) return path;
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) if (v !== null && v !== undefined && v !== '') q.set(k, String(v));
  const s = q.toString();
  return s ? `${path}${path.includes('?') ? '&' : '?'}${s}` : path;
}

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve, reject) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => {
      clearTimeout(t);
      reject(signal.reason);
    });
  });

/** Sends a request and answers the raw response (any status but 401, which re-authenticates). */
export async function send(method: string, path: string, opts: RequestOptions = {}): Promise<Response> {
  const retry = opts.retry ?? method === 'GET';
  let delay = 1000;
  let reauthed = false;
  for (;;) {
    const headers: Record<string, string> = { accept: 'application/json', ...opts.headers };
    const token = hooks.token();
    if (token) headers.authorization = `Bearer ${token}`;
    let body: string | undefined;
    if (opts.text) {
      headers['content-type'] = opts.text.contentType;
      body = opts.text.body;
    } else if (opts.body !== undefined) {
      headers['content-type'] = 'application/json';
      body = JSON.stringify(opts.body);
    }
    let res: Response;
    try {
      res = await fetch(apiUrl(withQuery(path, opts.query)), { method, headers, body, signal: opts.signal });
    } catch (e) {
      if (opts.signal?.aborted) throw e;
      hooks.network(true);
      if (!retry) throw new ApiError(0, null);
      await sleep(delay, opts.signal);
      delay = Math.min(delay * 2, 15000);
      continue;
    }
    hooks.network(false);
    if (res.status === 401 && token && !reauthed) {
      reauthed = true;
      if (await hooks.reauthenticate()) continue;
    }
    return res;
  }
}

/** `Retry-After` in seconds: delta-seconds or an HTTP date (RFC 9110 §10.2.3). */
export function retryAfterOf(value: string | null, now = Date.now()): number | null {
  if (!value) return null;
  const v = value.trim();
  if (/^\d+$/.test(v)) return Number(v);
  const at = Date.parse(v);
  return Number.isNaN(at) ? null : Math.max(0, Math.ceil((at - now) / 1000));
}

async function errorOf(res: Response): Promise<ApiError> {
  return new ApiError(res.status, await problemOf(res), retryAfterOf(res.headers.get('retry-after')));
}

async function problemOf(res: Response): Promise<Problem | null> {
  try {
    const p = (await res.json()) as Problem;
    return typeof p === 'object' && p !== null ? p : null;
  } catch {
    return null;
  }
}

/** Sends a request and answers its JSON body; a non-2xx answer throws an [`ApiError`]. */
export async function request<T>(method: string, path: string, opts: RequestOptions = {}): Promise<T> {
  const res = await send(method, path, opts);
  if (!res.ok) throw await errorOf(res);
  if (res.status === 204) return undefined as T;
  const text = await res.text();
  return (text ? JSON.parse(text) : undefined) as T;
}

export const api = {
  get: <T>(path: string, query?: Query, signal?: AbortSignal) => request<T>('GET', path, { query, signal }),
  post: <T>(path: string, body?: unknown) => request<T>('POST', path, { body: body ?? {} }),
  put: <T>(path: string, body: unknown) => request<T>('PUT', path, { body }),
  del: <T>(path: string) => request<T>('DELETE', path),
};

export interface Page<T> {
  items: T[];
  next?: string | null;
}

/** Every item of a paged list (`{items, next}`), following `next` up to `max` items. */
export async function all<T>(path: string, query: Query = {}, max = 2000): Promise<T[]> {
  const out: T[] = [];
  let cursor: string | null | undefined;
  do {
    const page = await api.get<Page<T>>(path, { ...query, limit: 200, cursor });
    out.push(...page.items);
    cursor = page.next;
  } while (cursor && out.length < max);
  return out;
}

/** The file name of a Content-Disposition header (RFC 6266, `filename*` first). */
export function filenameOf(disposition: string | null, fallback: string): string {
  if (!disposition) return fallback;
  const star = /filename\*\s*=\s*(?:UTF-8|utf-8)''([^;]+)/.exec(disposition);
  if (star) {
    try {
      return decodeURIComponent(star[1].trim());
    } catch {
      /* fall through */
    }
  }
  const plain = /filename\s*=\s*"?([^";]+)"?/.exec(disposition);
  return plain ? plain[1].trim() : fallback;
}

/** Saves what the browser holds as a file. */
export function saveBlob(blob: Blob, name: string): void {
  const url = URL.createObjectURL(blob);
  const a = document.createElement('a');
  a.href = url;
  a.download = name;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

/** Downloads an export (`?format=csv|xlsx`) with the caller's token. */
export async function download(path: string, query: Query, fallback: string): Promise<void> {
  const res = await send('GET', path, { query, headers: { accept: '*/*' } });
  if (!res.ok) throw await errorOf(res);
  saveBlob(await res.blob(), filenameOf(res.headers.get('content-disposition'), fallback));
}
