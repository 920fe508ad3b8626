import { describe, expect, it } from 'vitest';
import { SseParser, type SseEvent } from './sse';

function parse(chunks: string[]): SseEvent[] {
  const out: SseEvent[] = [];
  const p = new SseParser((e) => out.push(e));
  for (const c of chunks) p.push(c);
  return out;
}

describe('SseParser', () => {
  it('parses named events and skips keep-alive comments', () => {
    const text = ': keep-alive\n\nevent: state\ndata: {"device_id":"d1"}\n\nevent: alarm\ndata: {"id":"a1"}\n\n';
    expect(parse([text])).toEqual([
      { event: 'state', data: '{"device_id":"d1"}', id: undefined },
      { event: 'alarm', data: '{"id":"a1"}', id: undefined },
    ]);
  });
  it('joins chunks split anywhere, including inside CRLF', () => {
    const text = 'event: presence\r\ndata: {"online":true}\r\n\r\n';
    const chunks = [...text].map((c) => c);
    expect(parse(chunks)).toEqual([{ event: 'presence', data: '{"online":true}', id: undefined }]);
  });
  it('joins multi-line data and defaults the event name', () => {
    expect(parse(['data: a\ndata: b\n\n'])).toEqual([{ event: 'message', data: 'a\nb', id: undefined }]);
  });
  it('keeps an incomplete event until its blank line', () => {
    expect(parse(['event: state\ndata: {}\n'])).toEqual([]);
  });
});
