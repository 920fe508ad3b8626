// The enterprise and the owner work on the project's safety fund (statement in Excel, the
// owner's approval of the smart-site cost plan); the government supervisor watches its region
// and blacklists a supplier.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { strFromU8, unzipSync } from 'fflate';
import { fillIn, setup, shot, signIn, PASSWORD } from './harness.mjs';
import { publish } from './device.mjs';

let env;
before(async () => {
  env = await setup('fund');
  const { api, world } = env;
  const pm = await api.login(world.users.project_manager, PASSWORD);
  await api.call('POST', `/v1/projects/${world.project}/safety-fund/progress`, { month: '2026-04', progress_value_fen: 1_000_000_000 }, pm);
  await api.call('PUT', `/v1/projects/${world.project}/safety-fund/cost-plan`, { lines: [{ id: 'L1', item: '塔吊安全监控', quantity: 2, unit_price_fen: 3_000_000 }, { id: 'L2', item: '扬尘噪声在线监测', quantity: 1, unit_price_fen: 1_850_000 }] }, pm);
});
after(async () => {
  await env?.teardown();
});

test('the enterprise admin reads the safety-fund ledger and downloads its statement in Excel, but cannot approve the plan', async () => {
  const page = await signIn(env, env.world.users.enterprise_admin);
  await page.getByTestId('nav-fund').click();
  await page.waitForURL((u) => u.pathname.startsWith('/fund'));
  await page.getByTestId('fund-project').click();
  await page.locator('.el-select-dropdown:visible .el-select-dropdown__item', { hasText: '长春市朝阳区某住宅项目' }).click();
  // 3% of ¥10,000,000.00 progress (building, r2022).
  await page.getByTestId('fund-balance').getByText('¥300,000.00').waitFor();
  await page.getByTestId('statement').getByText('300,000.00').first().waitFor();
  await page.getByTestId('plan-pending').waitFor();
  assert.equal(await page.getByTestId('plan-approve').count(), 0);
  await shot(page, 'fund-enterprise');
  const [download] = await Promise.all([page.waitForEvent('download'), page.getByTestId('statement-xlsx').click()]);
  const xlsx = unzipSync(new Uint8Array(readFileSync(await download.path())));
  assert.ok(strFromU8(xlsx['xl/sharedStrings.xml']).includes('余额(元)'));
  await page.close();
});

test('the owner representative approves the smart-site cost plan', async () => {
  const page = await signIn(env, env.world.users.owner_rep);
  await page.goto(`${env.server.base}/fund/${env.world.project}`);
  await page.getByTestId('cost-plan').getByText('塔吊安全监控').waitFor();
  await page.getByTestId('cost-plan').getByText('¥78,500.00').waitFor();
  await page.getByTestId('plan-approve').click();
  await page.locator('.el-message-box').getByText('¥78,500.00').waitFor();
  await page.locator('.el-message-box').getByRole('button', { name: '确定' }).click();
  await page.getByTestId('plan-approved').waitFor();
  assert.equal(await page.getByTestId('plan-approve').count(), 0);
  await shot(page, 'fund-owner-approved');
  const plan = await env.api.call('GET', `/v1/projects/${env.world.project}/safety-fund/cost-plan`, undefined, env.world.tokens.gc);
  assert.ok(plan.plan.approval, 'the plan is approved');
  await page.close();
});

test('the government supervisor sees its region turn red on an alarm and blacklists a supplier', async () => {
  const { world, server } = env;
  // The site escalates a crane overload to the government at once (the default is two hours).
  const pm = await env.api.login(world.users.project_manager, PASSWORD);
  await env.api.call('PUT', `/v1/projects/${world.project}/alarm-rules`, { 'TC-MOMENT': { escalate_enterprise_s: 0, escalate_government_s: 0 } }, pm);
  const gov = await env.api.login(world.users.gov_supervisor, PASSWORD);
  await publish(server.endpoints.mqtt, world.devices.tower_crane, { load_t: 8.4, radius_m: 18, moment_pct: 108, wind_ms: 5, tilt_deg: 0.2, mode: 'operating' });
  // Governments see the alarms escalated to them; the region page reads what is there then.
  for (let i = 0; ; i++) {
    const seen = (await env.api.call('GET', `/v1/alarms?project_id=${world.project}`, undefined, gov)).items;
    if (seen.some((a) => a.rule === 'TC-MOMENT')) break;
    assert.ok(i < 100, 'the overload alarm reached the government');
    await new Promise((r) => setTimeout(r, 100));
  }
  const page = await signIn(env, world.users.gov_supervisor);
  await page.getByTestId('nav-region').click();
  const node = page.getByTestId(`region-project-${world.project}`);
  await node.waitFor();
  assert.equal(await node.getAttribute('data-health'), 'alarm');
  assert.equal(await page.getByTestId(`region-project-${world.second}`).getAttribute('data-health'), 'ok');
  assert.equal(await page.getByTestId('region-220100').getAttribute('data-health'), 'alarm');
  await page.getByTestId('region-alarms').getByText('塔吊力矩').first().waitFor();
  await shot(page, 'region');
  // Read-only: the supervisor gets no handling buttons on the project dashboard.
  await node.getByRole('link').click();
  await page.getByTestId('alarm-rule-TC-MOMENT').first().waitFor();
  assert.equal(await page.locator('[data-test^="ack-"]').count(), 0);

  await page.getByTestId('nav-blacklist').click();
  await page.getByTestId('blacklist-new').click();
  await page.getByTestId('blacklist-target').click();
  await page.locator('.el-select-dropdown:visible .el-select-dropdown__item', { hasText: 'fund 智塔科技' }).click();
  assert.equal(await page.getByTestId('blacklist-region').inputValue(), '220100');
  await fillIn(page, 'blacklist-reason', '设备数据造假，见长住建通〔2026〕12号');
  await page.getByTestId('blacklist-save').click();
  await page.getByTestId('blacklist').getByText('设备数据造假').waitFor();
  await shot(page, 'blacklist');
  const entries = (await env.api.call('GET', '/v1/blacklist', undefined, world.tokens.intAdmin)).items;
  assert.ok(entries.some((e) => e.target_id === world.supplier && e.scope === 'supplier' && !e.lifted));
  await page.close();
});
