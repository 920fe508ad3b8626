// The signed-in user: token in memory and sessionStorage (a tab keeps its sign-in across
// reloads, a new tab signs in again), the claims it carries, and renewal before expiry.
//
// Renewal: today the API issues 15-minute access tokens and no refresh token, so shortly before
// expiry the console asks for the password again in a modal (the page and what was typed stay).
// When the token answer carries a `refresh_token` and the API offers `POST /v1/auth/refresh`
// (issue #19), `renew()` uses it instead and the modal is only the fallback.

import { defineStore } from 'pinia';
import { api, ApiError } from '@/api/client';
import { allowed, type Method, type Operations } from '@/lib/access';

export interface Claims {
  sub: string;
  roles: string[];
  integrator_id?: string;
  customer_id?: string;
  exp: number;
}

interface Tokens {
  access_token: string;
  expires_in: number;
  refresh_token?: string;
}

const KEY = 'smartsite.session';
/** Ask to renew this long before the token expires. */
const RENEW_BEFORE_S = 90;

export function decodeClaims(token: string): Claims | null {
  try {
    const part = token.split('.')[1] ?? '';
    const b64 = part.replace(/-/g, '+').replace(/_/g, '/').padEnd(Math.ceil(part.length / 4) * 4, '=');
    const json = new TextDecoder().decode(Uint8Array.from(atob(b64), (c) => c.charCodeAt(0)));
    const c = JSON.parse(json) as Claims;
    return Array.isArray(c.roles) && typeof c.exp === 'number' ? c : null;
  } catch {
    return null;
  }
}

let timer: ReturnType<typeof setTimeout> | undefined;
let waiters: Array<(ok: boolean) => void> = [];

export const useSession = defineStore('session', {
  state: () => ({
    token: null as string | null,
    refreshToken: null as string | null,
    claims: null as Claims | null,
    username: '',
    reauthOpen: false,
    ops: new Map() as Operations,
  }),
  getters: {
    signedIn: (s) => s.token !== null,
    roles: (s): string[] => s.claims?.roles ?? [],
  },
  actions: {
    /** Whether the caller may call `method pathTemplate` (its `x-roles` in /openapi.json). */
    can(method: Method, pathTemplate: string): boolean {
      return allowed(this.ops, this.roles, method, pathTemplate);
    },
    restore() {
      try {
        const saved = JSON.parse(sessionStorage.getItem(KEY) ?? 'null') as {
          token: string;
          refresh?: string;
          username: string;
        } | null;
        if (!saved) return;
        this.username = saved.username;
        const claims = decodeClaims(saved.token);
        if (claims && claims.exp * 1000 > Date.now()) {
          this.adopt({ access_token: saved.token, expires_in: claims.exp - Date.now() / 1000, refresh_token: saved.refresh });
        } else if (claims) {
          // Expired while the tab was away: keep the page, ask for the password; the requests
          // the page makes meanwhile wait for the new token (401 → renew) and then go through.
          this.token = saved.token;
          this.refreshToken = saved.refresh ?? null;
          this.claims = claims;
          void this.renew();
        }
      } catch {
        sessionStorage.removeItem(KEY);
      }
    },
    adopt(t: Tokens) {
      const claims = decodeClaims(t.access_token);
      if (!claims) throw new ApiError(500, { title: 'bad token' });
      this.token = t.access_token;
      this.refreshToken = t.refresh_token ?? null;
      this.claims = claims;
      sessionStorage.setItem(KEY, JSON.stringify({ token: t.access_token, refresh: t.refresh_token, username: this.username }));
      clearTimeout(timer);
      const ms = Math.max((claims.exp - RENEW_BEFORE_S) * 1000 - Date.now(), 1000);
      timer = setTimeout(() => void this.renew(), ms);
    },
    async signIn(username: string, password: string) {
      const t = await api.post<Tokens>('/v1/auth/token', { username, password });
      this.username = username;
      this.adopt(t);
      this.reauthOpen = false;
      const w = waiters;
      waiters = [];
      w.forEach((f) => f(true));
    },
    /** Renews before expiry: the refresh token where there is one, else the password modal. */
    async renew(): Promise<boolean> {
      if (this.refreshToken && this.can('POST', '/v1/auth/refresh')) {
        try {
          this.adopt(await api.post<Tokens>('/v1/auth/refresh', { refresh_token: this.refreshToken }));
          return true;
        } catch {
          /* fall back to the password */
        }
      }
      this.reauthOpen = true;
      return new Promise((resolve) => waiters.push(resolve));
    },
    signOut() {
      clearTimeout(timer);
      this.token = null;
      this.refreshToken = null;
      this.claims = null;
      this.reauthOpen = false;
      sessionStorage.removeItem(KEY);
      const w = waiters;
      waiters = [];
      w.forEach((f) => f(false));
    },
  },
});
