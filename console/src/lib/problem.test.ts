import { afterEach, describe as group, expect, it } from 'vitest';
import { ApiError } from '@/api/client';
import { i18n } from '@/i18n';
import { describe, waitText } from './problem';

const setLocale = (l: 'zh-CN' | 'en') => {
  i18n.global.locale.value = l;
};

const tooMany = (secs: number) =>
  new ApiError(
    429,
    { type: 'https://smartsite.dev/problems/too-many-requests', title: 'Too many requests', detail: `too many failed sign-ins; try again in ${secs} s` },
    secs,
  );

group('describe', () => {
  afterEach(() => setLocale('zh-CN'));
  it('says how long to wait in the user language, not the API English', () => {
    setLocale('zh-CN');
    expect(describe(tooMany(90))).toBe('尝试次数过多 — 请在 1 分 30 秒后重试');
    setLocale('en');
    expect(describe(tooMany(900))).toBe('Too many attempts — try again in 15 min');
  });
  it('shows the translated title of a known type with the field and detail', () => {
    setLocale('zh-CN');
    const e = new ApiError(422, { type: 'https://smartsite.dev/problems/validation', field: 'name', detail: 'too long' });
    expect(describe(e)).toMatch(/^填写的内容有误 — 字段: .+ — too long$/);
  });
});

group('waitText', () => {
  it('rounds up to whole seconds', () => {
    setLocale('zh-CN');
    expect(waitText(0.2)).toBe('1 秒');
    expect(waitText(59)).toBe('59 秒');
    expect(waitText(120)).toBe('2 分钟');
  });
});
