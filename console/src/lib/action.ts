import { ref } from 'vue';
import { describe } from './problem';

/** A user action in flight: `busy` while it runs, `error` (problem+json for people) when it
 * failed. Forms keep what was typed: only the action's own success path clears them. */
export function useAction() {
  const busy = ref(false);
  const error = ref('');
  async function run(f: () => Promise<unknown>): Promise<boolean> {
    busy.value = true;
    error.value = '';
    try {
      await f();
      return true;
    } catch (e) {
      error.value = describe(e);
      return false;
    } finally {
      busy.value = false;
    }
  }
  return { busy, error, run };
}
