import { defineStore } from 'pinia';

/** Whether the platform is reachable; the layout shows a banner while it is not. */
export const useNet = defineStore('net', {
  state: () => ({ down: false, since: 0 }),
  actions: {
    set(down: boolean) {
      if (down && !this.down) this.since = Date.now();
      this.down = down;
    },
  },
});
