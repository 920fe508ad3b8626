// Each role signs in and sees only its own navigation: what the API's x-roles let it call.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { navNames, setup, shot, signIn } from './harness.mjs';

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
  owner_rep: ['fund', 'projects'],
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
