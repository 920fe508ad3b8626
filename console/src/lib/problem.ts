// problem+json for people: the stable `type` slug picks a translated title; the API's detail and
// the offending field follow.

import { ApiError } from '@/api/client';
import { i18n } from '@/i18n';

export function describe(e: unknown): string {
  const { t, te } = i18n.global;
  if (!(e instanceof ApiError)) return e instanceof Error && e.message ? e.message : t('problems.unexpected');
  const key = `problems.${e.slug}`;
  const title = te(key) ? t(key) : (e.problem?.title ?? t('problems.unexpected'));
  const parts = [title];
  const field = e.problem?.field;
  if (field) parts.push(`${t('problems.field')}: ${te(`fields.${field}`) ? t(`fields.${field}`) : field}`);
  if (e.problem?.detail) parts.push(e.problem.detail);
  return parts.join(' — ');
}
