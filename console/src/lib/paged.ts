import { computed, ref, type Ref } from 'vue';

/** One page of a list held in the browser (device lists of a large site run to hundreds). */
export function usePaged<T>(items: Ref<T[]>, size = 20) {
  const page = ref(1);
  const shown = computed(() => items.value.slice((page.value - 1) * size, page.value * size));
  return { page, size, shown };
}
