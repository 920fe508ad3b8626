// problem+json for people: the stable `type` slug picks a translated title; the API's detail and
// the offending field follow.

import { ApiError } from '@/api/client';
import { i18n } from '@/i18n';

export function describe(e: unknown): string {
  const { t, te } = i18n.global;
  if (!(e instanceof ApiError)) return e instanceof Error && e.message ? e.message : t('problems.unexpected');
  const key = `problems.${e.slug}`;
  const title = te(key) ? t(key) : (e.problem?.title ?? t('problems.unexpected'));
  if (e.retryAfter !== null && (e.slug === 'too-many-requests' || e.slug === 'unavailable')) {
    // The API's detail repeats the wait in English; say it in the user's language instead.
    return `${title} — ${t('problems.retryIn', { wait: waitText(e.retryAfter) })}`;
  }
  const parts = [title];
  const field = e.problem?.field;
  if (field) parts.push(`${t('problems.field')}: ${te(`fields.${field}`) ? t(`fields.${field}`) : field}`);
  if (e.problem?.detail) parts.push(e.problem.detail);
  return parts.join(' — ');
}

/** A wait in seconds as people say it: "45 秒", "3 分钟", "1 分 30 秒". */
export function waitText(seconds: number): string {
  const { t } = i18n.global;
  const s = Math.max(1, Math.ceil(seconds));
  if (s < 60) return t('problems.seconds', { n: s });
  const m = Math.floor(s / 60);
  const rest = s % 60;
  return rest ? t('problems.minutesSeconds', { m, s: rest }) : t('problems.minutes', { n: m });
}
