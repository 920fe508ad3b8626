// Live device states and alarms of one project.
//
// The contract: `GET /v1/projects/{id}/live` answers text/event-stream with `state`, `alarm` and
// `presence` events (Bearer token, so read with fetch, not EventSource). Where it does not answer
// 200 (a server without it yet, or the AWS edition), the client polls the ordinary reads every
// 5 s with If-None-Match and turns differences into the same events, so the views do not care
// which mode runs. In polling mode the stream is probed again every minute.

import { send, all, apiUrl, type Schemas } from '@/api/client';
import { SseParser } from './sse';

export interface StateEvent {
  device_id: string;
  category?: string;
  ts?: string | null;
  online: boolean;
  values: Record<string, unknown>;
}
export interface PresenceEvent {
  device_id: string;
  online: boolean;
  at?: string;
}
/** An alarm. The document names the alarm's status enum `Status` like the customer's, so the
 * generated type carries the customer's values; the alarm's are these (API.md). */
export type Alarm = Omit<Schemas['Alarm'], 'status'> & { status: 'open' | 'acknowledged' | 'resolved' };
export type Mode = 'connecting' | 'stream' | 'polling';

export interface LiveHandlers {
  state(e: StateEvent): void;
  alarm(a: Alarm): void;
  presence(p: PresenceEvent): void;
  mode?(m: Mode): void;
}

export interface LiveOptions {
  pollMs?: number;
  probeMs?: number;
}

export class ProjectLive {
  private stopped = false;
  private abort = new AbortController();
  private etags = new Map<string, string>();
  private lastState = new Map<string, string>();
  private lastOnline = new Map<string, boolean>();
  private lastAlarm = new Map<string, string>();
  private timer: ReturnType<typeof setTimeout> | undefined;
  private nextProbe = 0;
  mode: Mode = 'connecting';

  constructor(
    private readonly projectId: string,
    private readonly on: LiveHandlers,
    private readonly opts: LiveOptions = {},
  ) {}

  /** The first polling round, started with the stream probe rather than after it: the page
   * shows the current states at once in either mode (the stream sends changes only). */
  private first: Promise<void> | undefined;

  start(): void {
    this.first = this.poll().catch(() => {});
    void this.loop();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    this.abort.abort();
  }

  private setMode(m: Mode) {
    if (m === 'stream') this.first = undefined;
    if (m !== this.mode) {
      this.mode = m;
      this.on.mode?.(m);
    }
  }

  private async loop(): Promise<void> {
    while (!this.stopped) {
      if (Date.now() >= this.nextProbe) {
        const streamed = await this.stream();
        if (this.stopped) return;
        if (streamed) continue; // the stream ended: reconnect at once
        this.nextProbe = Date.now() + (this.opts.probeMs ?? 60000);
      }
      this.setMode('polling');
      const first = this.first;
      this.first = undefined;
      try {
        await (first ?? this.poll());
      } catch {
        /* the banner shows network loss; try again next round */
      }
      await new Promise<void>((r) => (this.timer = setTimeout(r, this.opts.pollMs ?? 5000)));
    }
  }

  /** Reads the event stream until it ends; false when the endpoint does not stream. */
  private async stream(): Promise<boolean> {
    let res: Response;
    try {
      res = await send('GET', `/v1/projects/${this.projectId}/live`, {
        headers: { accept: 'text/event-stream' },
        signal: this.abort.signal,
        retry: false,
      });
    } catch {
      return false;
    }
    const type = res.headers.get('content-type') ?? '';
    if (!res.ok || !type.includes('text/event-stream') || !res.body) {
      await res.body?.cancel().catch(() => {});
      return false;
    }
    this.setMode('stream');
    const parser = new SseParser((e) => {
      try {
        const data = JSON.parse(e.data);
        if (e.event === 'state') this.on.state(data as StateEvent);
        else if (e.event === 'alarm') this.on.alarm(data as Alarm);
        else if (e.event === 'presence') this.on.presence(data as PresenceEvent);
      } catch {
        /* a malformed event is skipped, the stream goes on */
      }
    });
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        parser.push(value);
      }
    } catch {
      /* connection lost: reconnect */
    }
    if (!this.stopped) await new Promise((r) => setTimeout(r, 1000));
    return true;
  }

  /** One polling round: devices, their states (ETag-conditional), the project's alarms. */
  async poll(): Promise<void> {
    const devices = await all<Schemas['DeviceView']>(`/v1/projects/${this.projectId}/devices`);
    await Promise.all(
      devices
        .filter((d) => d.status === 'active')
        .map(async (d) => {
          const path = `/v1/devices/${d.id}/state`;
          const etag = this.etags.get(path);
          const res = await send('GET', path, { headers: etag ? { 'if-none-match': etag } : {}, signal: this.abort.signal });
          if (res.status === 304 || !res.ok) return;
          const tag = res.headers.get('etag');
          if (tag) this.etags.set(path, tag);
          const s = (await res.json()) as Schemas['DeviceState'];
          const key = JSON.stringify([s.ts, s.online, s.values, s.untrusted]);
          if (this.lastState.get(d.id) !== key) {
            this.lastState.set(d.id, key);
            this.on.state({ device_id: d.id, category: d.category, ts: s.ts, online: s.online, values: s.values as Record<string, unknown> });
          }
          if (this.lastOnline.get(d.id) !== s.online) {
            this.lastOnline.set(d.id, s.online);
            this.on.presence({ device_id: d.id, online: s.online, at: s.last_seen ?? undefined });
          }
        }),
    );
    const alarms = await all<Alarm>('/v1/alarms', { project_id: this.projectId }, 500);
    for (const a of alarms) {
      const key = `${a.status}|${a.level}|${a.version}`;
      if (this.lastAlarm.get(a.id) !== key) {
        this.lastAlarm.set(a.id, key);
        this.on.alarm(a);
      }
    }
  }
}

/** For tests and diagnostics: where the live endpoint is. */
export const liveUrl = (projectId: string) => apiUrl(`/v1/projects/${projectId}/live`);
