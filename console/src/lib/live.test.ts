import { afterEach, describe, expect, it, vi } from 'vitest';
import { ProjectLive, type Alarm, type Mode, type PresenceEvent, type StateEvent } from './live';

const device = (pm10: number, ts: string, online = true): StateEvent => ({
  device_id: 'd1',
  category: 'dust_noise',
  ts,
  online,
  last_seen: ts,
  values: { pm10_ugm3: pm10 },
});
const alarm = (status: Alarm['status'], version: number) =>
  ({ id: 'a1', rule: 'DU-PM10', level: 'alarm', status, version }) as unknown as Alarm;

function recorder() {
  const seen = { states: [] as StateEvent[], alarms: [] as Alarm[], presence: [] as PresenceEvent[], modes: [] as Mode[] };
  return {
    seen,
    handlers: {
      state: (e: StateEvent) => seen.states.push(e),
      alarm: (a: Alarm) => seen.alarms.push(a),
      presence: (p: PresenceEvent) => seen.presence.push(p),
      mode: (m: Mode) => seen.modes.push(m),
    },
  };
}

const json = (body: unknown, etag: string) =>
  new Response(JSON.stringify(body), { status: 200, headers: { 'content-type': 'application/json', etag } });

afterEach(() => vi.unstubAllGlobals());

describe('ProjectLive polling (the AWS edition: snapshots, no stream)', () => {
  it('turns snapshots into events, asks with the last ETag and stays quiet on 304', async () => {
    const snapshots = [
      json({ devices: [device(80, 't1')], alarms: [] }, '"e1"'),
      new Response(null, { status: 304, headers: { etag: '"e1"' } }),
      json({ devices: [device(200, 't2')], alarms: [alarm('open', 1)] }, '"e2"'),
    ];
    const asked: (string | null)[] = [];
    const fetch = vi.fn(async (_url: string, init: RequestInit) => {
      const h = init.headers as Record<string, string>;
      // The server does not stream: it answers the snapshot whatever the Accept header says.
      if (h.accept === 'text/event-stream') return json({ devices: [], alarms: [] }, '"x"');
      asked.push(h['if-none-match'] ?? null);
      return snapshots.shift() ?? new Response(null, { status: 304 });
    });
    vi.stubGlobal('fetch', fetch);
    const { seen, handlers } = recorder();
    const live = new ProjectLive('p1', handlers, { pollMs: 5, probeMs: 60_000 });
    live.start();
    await vi.waitFor(() => expect(seen.alarms).toHaveLength(1));
    live.stop();
    expect(seen.modes).toContain('polling');
    expect(asked.slice(0, 3)).toEqual([null, '"e1"', '"e1"']);
    expect(seen.states.map((s) => s.values.pm10_ugm3)).toEqual([80, 200]);
    expect(seen.presence).toEqual([{ device_id: 'd1', online: true, at: 't1' }]);
    expect(seen.alarms[0].status).toBe('open');
  });
});

describe('ProjectLive streaming (the single box)', () => {
  it('passes the stream events to the handlers', async () => {
    const wire =
      'event: presence\ndata: {"device_id":"d1","online":true,"at":"t1"}\n\n' +
      ': keep-alive\n\n' +
      `event: state\ndata: ${JSON.stringify(device(120, 't1'))}\n\n` +
      `event: alarm\ndata: ${JSON.stringify(alarm('acknowledged', 2))}\n\n`;
    let streamed = false;
    const fetch = vi.fn(async (_url: string, init: RequestInit) => {
      const h = init.headers as Record<string, string>;
      if (h.accept === 'text/event-stream' && !streamed) {
        streamed = true;
        const body = new ReadableStream<Uint8Array>({
          start(c) {
            c.enqueue(new TextEncoder().encode(wire.slice(0, 37)));
            c.enqueue(new TextEncoder().encode(wire.slice(37)));
            // left open: a live stream does not end by itself
          },
        });
        return new Response(body, { status: 200, headers: { 'content-type': 'text/event-stream' } });
      }
      return json({ devices: [], alarms: [] }, '"empty"');
    });
    vi.stubGlobal('fetch', fetch);
    const { seen, handlers } = recorder();
    const live = new ProjectLive('p1', handlers, { pollMs: 5, probeMs: 60_000 });
    live.start();
    await vi.waitFor(() => expect(seen.alarms).toHaveLength(1));
    live.stop();
    expect(seen.modes).toEqual(['stream']);
    expect(seen.presence).toEqual([{ device_id: 'd1', online: true, at: 't1' }]);
    expect(seen.states.map((s) => s.values.pm10_ugm3)).toEqual([120]);
    expect(seen.alarms[0].status).toBe('acknowledged');
  });
});
