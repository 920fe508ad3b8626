// Each role signs in and sees only its own navigation: what the API's x-roles let it call.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { navNames, PASSWORD, setup, shot, signIn } from './harness.mjs';

let env;
before(async () => {
  env = await setup('roles');
});
after(async () => {
  await env?.teardown();
});

const operator = ['blacklist', 'catalog', 'fleet', 'fund', 'invoices', 'onboarding', 'packages', 'projects', 'provision', 'revenue', 'subscriptions'];
const expected = {
  integrator_admin: operator,
  integrator_ops: operator,
  gov_supervisor: ['blacklist', 'catalog', 'fund', 'projects', 'region'],
  enterprise_admin: ['fund', 'invoices', 'packages', 'projects', 'subscriptions'],
  project_manager: ['fund', 'projects'],
  safety_officer: ['fund', 'projects'],
  labour_officer: ['fund', 'projects'],
  owner_rep: ['fund', 'invoices', 'projects'],
};

for (const [role, nav] of Object.entries(expected)) {
  test(`a ${role} signs in and sees only its navigation`, async () => {
    const page = await signIn(env, env.world.users[role]);
    assert.deepEqual(await navNames(page), nav);
    // Its role is named in the header, in Chinese.
    await page.getByText(
      { integrator_admin: '集成商管理员', integrator_ops: '集成商运维', gov_supervisor: '主管部门', enterprise_admin: '施工企业管理员', project_manager: '项目经理', safety_officer: '安全员', labour_officer: '劳务员', owner_rep: '建设单位代表' }[role],
      { exact: true },
    ).first().waitFor();
    await shot(page, `home-${role}`);
    await page.close();
  });
}

test('the platform admin sees the platform navigation', async () => {
  const page = await signIn(env, 'admin', { password: env.server.adminPassword });
  assert.deepEqual(await navNames(page), ['blacklist', 'catalog', 'fund', 'projects', 'region']);
  await page.close();
});

test('a wrong password is refused in Chinese and what was typed stays', async () => {
  const p = await env.browser.context.newPage();
  await p.goto(`${env.server.base}/login`);
  await p.getByTestId('username').fill(env.world.users.owner_rep);
  await p.getByTestId('password').fill('not-the-password');
  await p.getByTestId('sign-in').click();
  await p.getByTestId('login-error').getByText('用户名或密码错误').waitFor();
  assert.equal(await p.getByTestId('username').inputValue(), env.world.users.owner_rep);
  assert.equal(await p.getByTestId('password').inputValue(), 'not-the-password');
  await p.close();
});

test('a page a role may not use sends it home, and signing out ends the session', async () => {
  const page = await signIn(env, env.world.users.owner_rep);
  await page.goto(`${env.server.base}/onboarding`);
  await page.waitForURL((u) => u.pathname === '/projects');
  await page.getByTestId('user-menu').click();
  await page.getByTestId('sign-out').click();
  await page.waitForURL((u) => u.pathname === '/login');
  await page.goto(`${env.server.base}/projects`);
  await page.waitForURL((u) => u.pathname === '/login');
  await page.close();
});

test('after too many wrong passwords the sign-in says how long to wait, counts down, then lets the user in', async () => {
  const user = env.world.users.labour_officer;
  // Wrong passwords over the API until the username is blocked for a few seconds (the throttle
  // doubles each block after the free failures: 1 s, 2 s, 4 s …).
  let retryAfter = 0;
  while (retryAfter < 4) {
    const res = await env.api.call('POST', '/v1/auth/token', { username: user, password: 'wrong-guess' }, undefined, { raw: true });
    if (res.status === 429) {
      retryAfter = Number(res.headers.get('retry-after'));
      if (retryAfter < 4) await new Promise((r) => setTimeout(r, retryAfter * 1000));
    } else assert.equal(res.status, 401);
  }
  const p = await env.browser.context.newPage();
  await p.goto(`${env.server.base}/login`);
  await p.getByTestId('username').fill(user);
  await p.getByTestId('password').fill(PASSWORD);
  await p.getByTestId('sign-in').click();
  const error = p.getByTestId('login-error');
  await error.getByText(/^尝试次数过多 — 请在 \d+ 秒后重试$/).waitFor();
  assert.equal(await p.getByTestId('sign-in').isDisabled(), true);
  await shot(p, 'login-throttled');
  // The wait runs out on its own; the same password then signs in.
  await error.waitFor({ state: 'hidden', timeout: 20000 });
  await p.getByTestId('sign-in').click();
  await p.waitForURL((u) => !u.pathname.startsWith('/login'));
  await p.close();
});
