import { describe, expect, it } from 'vitest';
import zh from './zh-CN';
import en from './en';

function keys(o: Record<string, unknown>, prefix = ''): string[] {
  return Object.entries(o).flatMap(([k, v]) => (typeof v === 'object' && v !== null ? keys(v as Record<string, unknown>, `${prefix}${k}.`) : [`${prefix}${k}`]));
}

describe('messages', () => {
  it('English has exactly the keys of Chinese', () => {
    expect(keys(en).sort()).toEqual(keys(zh).sort());
  });
});
