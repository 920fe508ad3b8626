// A safety officer watches the site dashboard while the tower crane reports over MQTT: the
// moment gauge follows, an overload alarm appears without reloading, and she acknowledges it.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { setup, shot, signIn } from './harness.mjs';
import { publish } from './device.mjs';

let env;
before(async () => {
  env = await setup('dash');
});
after(async () => {
  await env?.teardown();
});

const crane = (load_t, moment_pct) => ({ load_t, radius_m: 20, moment_pct, wind_ms: 4.2, tilt_deg: 0.3, mode: 'operating' });

test('the crane gauge moves and an overload alarm appears live, and is acknowledged', async () => {
  const { world, server } = env;
  const craneDevice = world.devices.tower_crane;
  await publish(server.endpoints.mqtt, world.devices.dust_noise, { pm10_ugm3: 86, pm25_ugm3: 41, tsp_ugm3: 160, noise_dba: 61.5, wind_ms: 2.1 });
  await publish(server.endpoints.mqtt, craneDevice, crane(3.2, 55));

  const page = await signIn(env, world.users.safety_officer);
  await page.getByTestId(`project-${world.project}`).click();
  await page.waitForURL((u) => u.pathname === `/projects/${world.project}`);
  const moment = page.getByTestId(`gauge-${craneDevice.device_id}-moment_pct`);
  await moment.getByText('55.0 %').waitFor();
  await page.getByTestId(`reading-${world.devices.dust_noise.device_id}-pm10_ugm3`).getByText('86 μg/m³').waitFor();
  // The single box streams the project's changes to the page (server-sent events).
  await page.getByTestId('live-mode').getByText('实时推送').waitFor();
  await page.evaluate(() => (window.__notReloaded = true));

  await publish(server.endpoints.mqtt, craneDevice, crane(7.9, 104.5));
  // Issue 16: the reading and the alarm show within 3 s, without reloading.
  await moment.getByText('104.5 %').waitFor({ timeout: 3000 });
  const rule = page.getByTestId('alarm-rule-TC-MOMENT');
  await rule.waitFor({ timeout: 3000 });
  assert.equal(await page.evaluate(() => window.__notReloaded), true, 'the page was not reloaded');
  await shot(page, 'dashboard');

  const [alarm] = (await env.api.call('GET', `/v1/alarms?project_id=${world.project}`, undefined, world.tokens.gc)).items.filter((a) => a.rule === 'TC-MOMENT');
  assert.equal(alarm.status, 'open');
  await page.getByTestId(`ack-${alarm.id}`).click();
  await page.locator('.el-message-box input').fill('已通知司机停止起升');
  await page.locator('.el-message-box').getByRole('button', { name: '确定' }).click();
  await page.getByTestId(`alarm-status-${alarm.id}`).getByText('已确认').waitFor();
  const after = await env.api.call('GET', `/v1/alarms/${alarm.id}`, undefined, world.tokens.gc);
  assert.equal(after.status, 'acknowledged');
  assert.equal(after.handling.at(-1).note, '已通知司机停止起升');
  await page.close();
});

test('on a phone the dashboard fits the screen and the menu opens from the header', async () => {
  const page = await signIn(env, env.world.users.project_manager, { viewport: { width: 390, height: 844 } });
  await page.goto(`${env.server.base}/projects/${env.world.project}`);
  await page.getByTestId(`gauge-${env.world.devices.tower_crane.device_id}-moment_pct`).waitFor();
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 1, `no horizontal scrolling on a phone (overflow ${overflow}px)`);
  // The alarm's status is on screen, not scrolled away behind the action buttons.
  const status = page.locator('[data-test^="alarm-status-"]').first();
  await status.getByText('已确认').waitFor();
  const box = await status.boundingBox();
  assert.ok(box && box.x >= 0 && box.x + box.width <= 390, `alarm status inside the screen: ${JSON.stringify(box)}`);
  await shot(page, 'dashboard-phone');
  await page.getByTestId('menu-toggle').click();
  await page.getByTestId('nav-projects').waitFor();
  await shot(page, 'menu-phone', { fullPage: false });
  await page.close();
});

test('a reader without the right to handle alarms gets no handling buttons', async () => {
  const page = await signIn(env, env.world.users.owner_rep);
  await page.goto(`${env.server.base}/projects/${env.world.project}`);
  await page.getByTestId('alarm-rule-TC-MOMENT').first().waitFor();
  assert.equal(await page.locator('[data-test^="ack-"], [data-test^="resolve-"]').count(), 0);
  await page.close();
});

test('a tab whose sign-in expired asks for the password again and then shows the page', async () => {
  const page = await signIn(env, env.world.users.project_manager);
  await page.goto(`${env.server.base}/projects/${env.world.project}`);
  await page.getByTestId(`gauge-${env.world.devices.tower_crane.device_id}-moment_pct`).waitFor();
  // The token of this tab runs out (15 minutes pass): its expiry is moved into the past.
  await page.evaluate(() => {
    const saved = JSON.parse(sessionStorage.getItem('smartsite.session'));
    const [h, p, sig] = saved.token.split('.');
    const claims = JSON.parse(atob(p.replace(/-/g, '+').replace(/_/g, '/')));
    claims.exp = Math.floor(Date.now() / 1000) - 60;
    const b64 = btoa(JSON.stringify(claims)).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
    sessionStorage.setItem('smartsite.session', JSON.stringify({ ...saved, token: `${h}.${b64}.${sig}` }));
  });
  await page.reload();
  const dialog = page.getByTestId('reauth');
  await dialog.getByText('登录即将过期').waitFor();
  await page.getByTestId('reauth-password').fill('Site-Safety-2026');
  await page.getByTestId('reauth-submit').click();
  await dialog.waitFor({ state: 'hidden' });
  await page.getByTestId(`gauge-${env.world.devices.tower_crane.device_id}-moment_pct`).waitFor();
  assert.equal(new URL(page.url()).pathname, `/projects/${env.world.project}`);
  await page.close();
});

test('losing the network shows a banner, and it goes once the platform answers again', async () => {
  const page = await signIn(env, env.world.users.safety_officer);
  await page.goto(`${env.server.base}/projects/${env.world.project}`);
  await page.getByTestId('live-mode').getByText('实时推送').waitFor();
  await env.browser.context.setOffline(true);
  await page.getByTestId('net-banner').waitFor({ timeout: 8000 });
  await shot(page, 'offline-banner');
  await env.browser.context.setOffline(false);
  await page.getByTestId('net-banner').waitFor({ state: 'detached', timeout: 20000 });
  await page.close();
});
