// Live device states and alarms of one project.
//
// The contract: `GET /v1/projects/{id}/live` with `Accept: text/event-stream` answers an event
// stream of `state`, `alarm` and `presence` events (Bearer token, so read with fetch, not
// EventSource) on the single box. Where it does not stream (the AWS edition, where API Gateway
// buffers the answer), the same path without that header answers the whole picture as one JSON
// snapshot with an ETag: the client polls it every 3 s with If-None-Match (304 while nothing
// changed) and turns differences into the same events, so the views do not care which mode runs.
// In polling mode the stream is probed again every minute.

import { send, apiUrl, type Schemas } from '@/api/client';
import { SseParser } from './sse';

export interface StateEvent {
  device_id: string;
  category?: string;
  ts?: string | null;
  online: boolean;
  last_seen?: string | null;
  values: Record<string, unknown>;
}
/** `GET /v1/projects/{id}/live` without the event stream: active devices and newest alarms. */
interface Snapshot {
  devices: StateEvent[];
  alarms: Alarm[];
}
export interface PresenceEvent {
  device_id: string;
  online: boolean;
  at?: string;
}
export type Alarm = Schemas['Alarm'];
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
  private etag: string | undefined;
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

  /** The open stream's own abort: dropped when the browser goes offline, since a held
   * connection may not notice, so that polling (and its network banner) takes over. */
  private streamAbort: AbortController | undefined;
  private readonly offline = () => this.streamAbort?.abort();
  /** Back online: try the stream again at the next round rather than a minute later. */
  private readonly online = () => (this.nextProbe = 0);

  start(): void {
    this.first = this.poll().catch(() => {});
    globalThis.addEventListener?.('offline', this.offline);
    globalThis.addEventListener?.('online', this.online);
    void this.loop();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    this.abort.abort();
    globalThis.removeEventListener?.('offline', this.offline);
    globalThis.removeEventListener?.('online', this.online);
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
      await new Promise<void>((r) => (this.timer = setTimeout(r, this.opts.pollMs ?? 3000)));
    }
  }

  /** Reads the event stream until it ends; false when the endpoint does not stream. */
  private async stream(): Promise<boolean> {
    let res: Response;
    const own = new AbortController();
    this.streamAbort = own;
    try {
      res = await send('GET', `/v1/projects/${this.projectId}/live`, {
        headers: { accept: 'text/event-stream' },
        signal: AbortSignal.any([this.abort.signal, own.signal]),
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

  /** One polling round: the project's snapshot, conditional on the last one's ETag. */
  async poll(): Promise<void> {
    const res = await send('GET', `/v1/projects/${this.projectId}/live`, {
      headers: this.etag ? { 'if-none-match': this.etag } : {},
      signal: this.abort.signal,
    });
    if (res.status === 304 || !res.ok) return;
    this.etag = res.headers.get('etag') ?? undefined;
    const snap = (await res.json()) as Snapshot;
    for (const s of snap.devices) {
      const key = JSON.stringify([s.ts, s.online, s.values]);
      if (this.lastState.get(s.device_id) !== key) {
        this.lastState.set(s.device_id, key);
        this.on.state(s);
      }
      if (this.lastOnline.get(s.device_id) !== s.online) {
        this.lastOnline.set(s.device_id, s.online);
        this.on.presence({ device_id: s.device_id, online: s.online, at: s.last_seen ?? undefined });
      }
    }
    // Oldest first, as the stream sends them.
    for (const a of [...snap.alarms].reverse()) {
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
