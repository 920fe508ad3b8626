import { createApp } from 'vue';
import { createPinia } from 'pinia';
import App from './App.vue';
import { i18n } from './i18n';
import { awaitOperations, router } from './router';
import { configure } from './api/client';
import { useSession } from './stores/session';
import { useNet } from './stores/net';
import { operationsOf } from './lib/access';
// Styles of the Element Plus services called from code (ElMessage, ElMessageBox): the on-demand
// resolver adds styles only for components used in templates.
import 'element-plus/es/components/message/style/css';
import 'element-plus/es/components/message-box/style/css';
import './styles.css';

async function start() {
  // config.json sits beside index.html: the same build runs on the single box (same origin, empty
  // base) and on AWS (the API Gateway URL written into config.json at deploy time).
  let apiBase = '';
  try {
    const c = (await (await fetch('/config.json', { cache: 'no-cache' })).json()) as { api_base?: string };
    apiBase = c.api_base ?? '';
  } catch {
    /* same origin */
  }
  const app = createApp(App);
  const pinia = createPinia();
  app.use(pinia);
  const session = useSession();
  const net = useNet();
  configure(apiBase, {
    token: () => session.token,
    reauthenticate: () => session.renew(),
    network: (down) => net.set(down),
  });
  // Who may call what: the x-roles of every operation, fetched while the first page's code loads
  // (navigation waits for it). Retried while the server is unreachable.
  const ops = (async () => {
    for (let delay = 1000; ; delay = Math.min(delay * 2, 15000)) {
      try {
        const res = await fetch(`${apiBase}/openapi.json`);
        if (res.ok) {
          session.ops = operationsOf(await res.json());
          net.set(false);
          return;
        }
      } catch {
        net.set(true);
      }
      await new Promise((r) => setTimeout(r, delay));
    }
  })();
  awaitOperations(ops);
  session.restore();
  app.use(i18n).use(router);
  app.mount('#app');
}

void start();
