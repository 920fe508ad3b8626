// Every literal message key the sources use exists in the Chinese messages (and so, by the other
// test, in English): a missing key would show its raw name to a user.
import { describe, expect, it } from 'vitest';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import zh from './zh-CN';

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    return statSync(p).isDirectory() ? files(p) : /\.(vue|ts)$/.test(n) && !n.endsWith('.d.ts') ? [p] : [];
  });
}

function has(key: string): boolean {
  let o: unknown = zh;
  for (const part of key.split('.')) {
    if (typeof o !== 'object' || o === null || !(part in o)) return false;
    o = (o as Record<string, unknown>)[part];
  }
  return typeof o === 'string';
}

describe('message keys', () => {
  it('every t("…") key in the sources is defined', () => {
    const root = join(__dirname, '..');
    const missing = new Set<string>();
    for (const f of files(root)) {
      for (const m of readFileSync(f, 'utf8').matchAll(/\bt\(\s*'([a-zA-Z0-9_.-]+)'/g)) {
        if (!has(m[1])) missing.add(`${m[1]} (${f.slice(root.length + 1)})`);
      }
    }
    expect([...missing]).toEqual([]);
  });
});
