// An integrator's operator onboards a customer and its project through the wizard, provisions a
// device and downloads its credential bundle, imports devices from a CSV, and downloads an
// invoice as Excel.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { strFromU8, unzipSync } from 'fflate';
import { fillIn, setup, shot, signIn, PASSWORD } from './harness.mjs';
import { uscc } from './world.mjs';

let env;
before(async () => {
  env = await setup('ops');
});
after(async () => {
  await env?.teardown();
});

async function choose(page, testId, optionText) {
  await page.getByTestId(testId).click();
  await page.locator('.el-select-dropdown:visible .el-select-dropdown__item', { hasText: optionText }).first().click();
}

test('the integrator admin onboards a customer, its project and a user through the wizard', async () => {
  const page = await signIn(env, env.world.users.integrator_admin);
  await page.getByTestId('nav-onboarding').click();
  await page.waitForURL((u) => u.pathname === '/onboarding');
  await fillIn(page, 'customer-name', '吉林省第三建筑工程公司');
  await fillIn(page, 'customer-region', '220103');
  // A wrong check character: the API's problem is shown in Chinese and nothing typed is lost.
  const good = uscc('91220103MA0000777');
  const bad = good.slice(0, 17) + (good[17] === '0' ? '1' : '0');
  await fillIn(page, 'customer-uscc', bad);
  await page.getByTestId('wizard-next').click();
  await page.getByTestId('wizard-error').getByText('填写的内容有误').waitFor();
  await page.getByTestId('wizard-error').getByText('统一社会信用代码').waitFor();
  assert.equal(await page.getByTestId('customer-name').inputValue(), '吉林省第三建筑工程公司');
  await shot(page, 'onboarding-error');
  await fillIn(page, 'customer-uscc', good);
  await page.getByTestId('wizard-next').click();

  await fillIn(page, 'project-name-input', '长春市宽城区某商业综合体');
  await fillIn(page, 'project-value', '86,500,000.00');
  await fillIn(page, 'project-signed', '2026-06-18');
  await page.keyboard.press('Enter');
  await shot(page, 'onboarding-project');
  await page.getByTestId('wizard-next').click();

  await fillIn(page, 'user-name-0', 'kc-pm');
  await fillIn(page, 'user-password-0', PASSWORD);
  await choose(page, 'user-role-0', '项目经理');
  await page.getByTestId('wizard-finish').click();
  await page.getByTestId('wizard-done').waitFor();
  await shot(page, 'onboarding-done');

  const token = env.world.tokens.intAdmin;
  const customers = (await env.api.call('GET', '/v1/customers?limit=200', undefined, token)).items;
  const customer = customers.find((c) => c.name === '吉林省第三建筑工程公司');
  assert.ok(customer, 'the customer exists');
  assert.equal(customer.uscc, good);
  const project = (await env.api.call('GET', '/v1/projects?limit=200', undefined, token)).items.find((p) => p.name === '长春市宽城区某商业综合体');
  assert.equal(project.contractor_customer_id, customer.id);
  assert.equal(project.contract_value_fen, 8_650_000_000);
  assert.equal(project.contract_signed_date, '2026-06-18');
  assert.equal(project.region_code, '220103');
  const pm = await env.api.login('kc-pm', PASSWORD);
  const seen = (await env.api.call('GET', '/v1/projects', undefined, pm)).items.map((p) => p.id);
  assert.deepEqual(seen, [project.id], 'the new project manager sees the new project');
  await page.close();
});

test('the operator provisions a tower crane and downloads its credentials once, as a zip', async () => {
  const page = await signIn(env, env.world.users.integrator_admin);
  await page.goto(`${env.server.base}/provision?project=${env.world.project}`);
  await page.getByTestId('provision-open').click();
  await choose(page, 'provision-model', '塔机黑匣子');
  await fillIn(page, 'provision-serial', 'TC-OPS-0099');
  await fillIn(page, 'provision-rated_load_t', '10');
  await fillIn(page, 'provision-rated_moment_tm', '160');
  await page.getByTestId('provision-submit').click();
  const dialog = page.getByTestId('credentials');
  await dialog.getByText('只显示这一次').waitFor();
  await shot(page, 'provision-credentials');
  const [download] = await Promise.all([page.waitForEvent('download'), page.getByTestId('bundle-download').click()]);
  const path = await download.path();
  const entries = unzipSync(new Uint8Array(readFileSync(path)));
  const names = Object.keys(entries).map((n) => n.split('/').slice(1).join('/')).sort();
  assert.deepEqual(names, ['ca.pem', 'certificate.pem', 'device_token.txt', 'endpoints.json', 'private_key.pem', 'topics.json']);
  const first = Object.keys(entries)[0].split('/')[0];
  assert.match(first, /^dev-/);
  const key = Object.entries(entries).find(([n]) => n.endsWith('private_key.pem'))[1];
  assert.match(strFromU8(key), /BEGIN .*PRIVATE KEY/);
  const ep = JSON.parse(strFromU8(Object.entries(entries).find(([n]) => n.endsWith('endpoints.json'))[1]));
  assert.equal(ep.device_id, first);
  assert.match(ep.topics.telemetry, new RegExp(`/${first}/telemetry$`));
  assert.match(download.suggestedFilename(), /^TC-OPS-0099-dev-.*\.zip$/);
  // The device is there, with no credential in its record.
  const device = await env.api.call('GET', `/v1/devices/${first}`, undefined, env.world.tokens.intAdmin);
  assert.equal(device.serial_no, 'TC-OPS-0099');
  assert.equal(device.private_key_pem, undefined);
  await page.close();
});

test('the operator imports devices from a CSV with a progress bar; a bad row is reported and the rest go in', async () => {
  const rows = ['serial_no,model_id,category,rated_load_kg,rated_persons'];
  for (let i = 1; i <= 120; i++) rows.push(`HO-BULK-${String(i).padStart(4, '0')},${env.world.models.hoist},hoist,2000,12`);
  rows.push(`HO-BULK-BAD,${env.world.models.hoist},hoist,2000,`);
  const file = join(mkdtempSync(join(tmpdir(), 'bulk-')), 'devices.csv');
  writeFileSync(file, '\uFEFF' + rows.join('\r\n') + '\r\n');

  const page = await signIn(env, env.world.users.integrator_ops);
  await page.goto(`${env.server.base}/provision?project=${env.world.project}`);
  await page.getByTestId('bulk-open').click();
  await page.getByTestId('bulk-file').setInputFiles(file);
  await page.getByTestId('bulk-start').click();
  await page.getByTestId('bulk-summary').getByText('已处理 121 / 121 行：新接入 120，已存在 0，失败 1').waitFor({ timeout: 60000 });
  await page.getByText('HO-BULK-BAD').waitFor();
  // The row's refusal is named in Chinese, with the field it concerns.
  await page.getByText(/^填写的内容有误 — 字段: 额定人数/).waitFor();
  await page.getByText('额定人数').first().waitFor();
  const progress = await page.getByTestId('bulk-progress').evaluate((e) => (e.getAttribute('role') === 'progressbar' ? e : e.querySelector('[role=progressbar]')).getAttribute('aria-valuenow'));
  assert.equal(progress, '100');
  await shot(page, 'bulk-import');
  const [download] = await Promise.all([page.waitForEvent('download'), page.getByTestId('bundle-download').click()]);
  const entries = Object.keys(unzipSync(new Uint8Array(readFileSync(await download.path()))));
  assert.equal(new Set(entries.map((n) => n.split('/')[0])).size, 120, 'one folder per created device');
  const devices = (await env.api.call('GET', `/v1/projects/${env.world.project}/devices?limit=200`, undefined, env.world.tokens.intAdmin)).items;
  assert.equal(devices.filter((d) => d.serial_no.startsWith('HO-BULK-')).length, 120);
  await page.close();
});

test('integrator ops may onboard customers and projects but not users, and the wizard says so', async () => {
  const page = await signIn(env, env.world.users.integrator_ops);
  await page.getByTestId('nav-onboarding').click();
  await page.getByTestId('customer-kind').click();
  await page.locator('.el-select-dropdown:visible .el-select-dropdown__item', { hasText: '建设单位' }).click();
  await fillIn(page, 'customer-name', '长春市某开发有限公司');
  await fillIn(page, 'customer-region', '220104');
  await fillIn(page, 'customer-uscc', uscc('91220104MA0000888'));
  await page.getByTestId('wizard-next').click();
  await page.getByRole('button', { name: '跳过' }).click();
  await page.getByTestId('no-user-rights').waitFor();
  assert.equal(await page.getByTestId('user-name-0').count(), 0);
  await page.getByTestId('wizard-finish').click();
  await page.getByTestId('wizard-done').waitFor();
  await page.close();
});

test('the operator closes a month and downloads an invoice as Excel', async () => {
  const { api, world } = env;
  const pkg = await api.call('POST', '/v1/packages', { name: '智慧工地全套', model: 'full_solution', prices: [{ unit: 'project_month', price_fen: 300000 }] }, world.tokens.intAdmin);
  await api.call('POST', '/v1/subscriptions', { customer_id: world.enterprise, project_id: world.project, package_id: pkg.id, start_date: '2026-10-01', funding_source: 'safety_fee' }, world.tokens.intAdmin);
  const page = await signIn(env, world.users.integrator_admin);
  await page.getByTestId('nav-invoices').click();
  await page.getByTestId('billing-close').click();
  await page.locator('.el-message-box input').fill('2026-11');
  await page.locator('.el-message-box').getByRole('button', { name: '确定' }).click();
  await page.getByText('2026-11 已出账，共 1 张账单').waitFor();
  const [invoice] = (await api.call('GET', '/v1/invoices?period=2026-11', undefined, world.tokens.intAdmin)).items;
  await page.getByTestId(`invoice-total-${invoice.id}`).getByText('¥3,000.00').waitFor();
  await shot(page, 'invoices');
  const [download] = await Promise.all([page.waitForEvent('download'), page.getByTestId(`invoice-xlsx-${invoice.id}`).click()]);
  const xlsx = unzipSync(new Uint8Array(readFileSync(await download.path())));
  assert.ok(xlsx['xl/workbook.xml'], 'an Excel workbook');
  const strings = strFromU8(xlsx['xl/sharedStrings.xml'] ?? new Uint8Array());
  assert.ok(strings.includes('发票号') && strings.includes(invoice.number), 'Chinese headers and the invoice number');
  assert.match(download.suggestedFilename(), /\.xlsx$/);
  await page.getByTestId('nav-revenue').click();
  await page.getByTestId('revenue').getByText('吉林建工集团').waitFor();
  await page.getByTestId('revenue').getByText('3,000.00').first().waitFor();
  await shot(page, 'revenue');
  await page.close();
});

test('the operator sees fleet health and the supplier catalogue', async () => {
  const page = await signIn(env, env.world.users.integrator_admin);
  await page.getByTestId('nav-fleet').click();
  await fillIn(page, 'fleet-filter', 'tower_crane');
  await page.getByTestId('fleet-offline').getByText('OPS-TOWER_CRANE-1').waitFor();
  await shot(page, 'fleet');
  await page.getByTestId('nav-catalog').click();
  await page.getByTestId('suppliers').getByText('ops 智塔科技').waitFor();
  await shot(page, 'catalog');
  await page.close();
});
