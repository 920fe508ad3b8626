import { createRouter, createWebHistory, type RouteRecordRaw } from 'vue-router';
import type { Method } from './lib/access';
import { useSession } from './stores/session';

/** A navigation entry: shown only when the caller may call every operation it needs. */
export interface NavItem {
  name: string;
  path: string;
  needs: Array<[Method, string]>;
}

export const nav: NavItem[] = [
  { name: 'projects', path: '/projects', needs: [['GET', '/v1/projects']] },
  { name: 'region', path: '/region', needs: [['GET', '/v1/regions/{code}/safety-fund'], ['GET', '/v1/alarms']] },
  { name: 'fund', path: '/fund', needs: [['GET', '/v1/projects/{id}/safety-fund']] },
  { name: 'onboarding', path: '/onboarding', needs: [['POST', '/v1/customers'], ['POST', '/v1/projects']] },
  { name: 'catalog', path: '/catalog', needs: [['GET', '/v1/suppliers'], ['GET', '/v1/device-models']] },
  { name: 'provision', path: '/provision', needs: [['POST', '/v1/projects/{id}/devices']] },
  { name: 'fleet', path: '/fleet', needs: [['GET', '/v1/devices']] },
  { name: 'packages', path: '/packages', needs: [['GET', '/v1/packages']] },
  { name: 'subscriptions', path: '/subscriptions', needs: [['GET', '/v1/subscriptions']] },
  { name: 'invoices', path: '/invoices', needs: [['GET', '/v1/invoices']] },
  { name: 'revenue', path: '/revenue', needs: [['GET', '/v1/invoices'], ['POST', '/v1/billing/close']] },
  { name: 'blacklist', path: '/blacklist', needs: [['GET', '/v1/blacklist']] },
];

const views: Record<string, () => Promise<unknown>> = {
  projects: () => import('./views/ProjectsView.vue'),
  region: () => import('./views/RegionView.vue'),
  fund: () => import('./views/FundView.vue'),
  onboarding: () => import('./views/OnboardingView.vue'),
  catalog: () => import('./views/CatalogView.vue'),
  provision: () => import('./views/ProvisionView.vue'),
  fleet: () => import('./views/FleetView.vue'),
  packages: () => import('./views/PackagesView.vue'),
  subscriptions: () => import('./views/SubscriptionsView.vue'),
  invoices: () => import('./views/InvoicesView.vue'),
  revenue: () => import('./views/RevenueView.vue'),
  blacklist: () => import('./views/BlacklistView.vue'),
};

export function visible(item: NavItem): boolean {
  const s = useSession();
  return item.needs.every(([m, p]) => s.can(m, p));
}

const routes: RouteRecordRaw[] = [
  { path: '/login', name: 'login', component: () => import('./views/LoginView.vue'), meta: { public: true } },
  {
    path: '/',
    component: () => import('./layouts/MainLayout.vue'),
    children: [
      { path: '', name: 'home', redirect: () => nav.find(visible)?.path ?? '/projects' },
      ...nav.map((n) => ({ path: n.path.slice(1), name: n.name, component: views[n.name], meta: { nav: n } })),
      { path: 'projects/:id', name: 'dashboard', component: () => import('./views/DashboardView.vue'), props: true },
      { path: 'fund/:id', name: 'fund-project', component: views.fund, props: true },
      { path: ':rest(.*)*', name: 'missing', component: () => import('./views/MissingView.vue') },
    ],
  },
];

export const router = createRouter({ history: createWebHistory(), routes });

let operations: Promise<void> = Promise.resolve();
/** Navigation waits for /openapi.json: what a page shows depends on it. */
export function awaitOperations(p: Promise<void>) {
  operations = p;
}

router.beforeEach(async (to) => {
  await operations;
  const s = useSession();
  if (!to.meta.public && !s.signedIn && !s.reauthOpen) return { name: 'login', query: { next: to.fullPath } };
  const item = to.meta.nav as NavItem | undefined;
  if (item && s.signedIn && !visible(item)) return { name: 'home' };
  return true;
});
