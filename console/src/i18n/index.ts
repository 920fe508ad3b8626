import { createI18n } from 'vue-i18n';
import zhCN from './zh-CN';
import en from './en';

const saved = typeof localStorage !== 'undefined' ? localStorage.getItem('smartsite.locale') : null;

export const i18n = createI18n({
  legacy: false,
  locale: saved === 'en' ? 'en' : 'zh-CN',
  fallbackLocale: 'zh-CN',
  messages: { 'zh-CN': zhCN, en },
});

export function setLocale(l: 'zh-CN' | 'en') {
  i18n.global.locale.value = l;
  localStorage.setItem('smartsite.locale', l);
  document.documentElement.lang = l;
}
