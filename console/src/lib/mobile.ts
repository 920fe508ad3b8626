import { onBeforeUnmount, ref } from 'vue';

/** Whether the viewport is phone-sized (project staff use the console on a phone). */
export function useMobile(width = 768) {
  const q = window.matchMedia(`(max-width: ${width}px)`);
  const mobile = ref(q.matches);
  const on = (e: MediaQueryListEvent) => (mobile.value = e.matches);
  q.addEventListener('change', on);
  onBeforeUnmount(() => q.removeEventListener('change', on));
  return mobile;
}
