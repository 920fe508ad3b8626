// Onboards a small world over the public API, as an operator's script would: an integrator, its
// customers (a government region, an enterprise, a project owner), a project, one user per role,
// a supplier, device models and devices. The browser tests then drive the console against it.

export const PASSWORD = 'Site-Safety-2026';

/** GB 32100 check character of a unified social credit code's first 17 characters. */
export function uscc(first17) {
  const chars = '0123456789ABCDEFGHJKLMNPQRTUWXY';
  const weights = [1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28];
  let sum = 0;
  for (let i = 0; i < 17; i++) sum += chars.indexOf(first17[i]) * weights[i];
  return first17 + chars[(31 - (sum % 31)) % 31];
}

export class Api {
  constructor(base) {
    this.base = base;
  }

  async call(method, path, body, token, { raw = false, contentType = 'application/json' } = {}) {
    const headers = {};
    if (token) headers.authorization = `Bearer ${token}`;
    if (body !== undefined) headers['content-type'] = contentType;
    const res = await fetch(this.base + path, {
      method,
      headers,
      body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
    });
    if (raw) return res;
    const text = await res.text();
    if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${text}`);
    return text ? JSON.parse(text) : null;
  }

  async login(username, password) {
    const t = await this.call('POST', '/v1/auth/token', { username, password });
    return t.access_token;
  }
}

/** Onboards a world; `tag` keeps names and serials unique per run. */
export async function onboard(api, adminPassword, tag = 'e2e') {
  const admin = await api.login('admin', adminPassword);
  const integrator = (
    await api.call('POST', '/v1/integrators', { name: `${tag} 中国电信吉林分公司`, operator: 'china_telecom', province_code: '220000' }, admin)
  ).id;
  const users = {};
  const mkUser = async (token, username, roles, extra) => {
    await api.call('POST', '/v1/users', { username, password: PASSWORD, roles, ...extra }, token);
    users[roles[0]] = username;
  };
  await mkUser(admin, `${tag}-ops-admin`, ['integrator_admin'], { integrator_id: integrator });
  const intAdmin = await api.login(`${tag}-ops-admin`, PASSWORD);
  await mkUser(intAdmin, `${tag}-ops`, ['integrator_ops'], { integrator_id: integrator });
  const gov = (
    await api.call('POST', '/v1/customers', { kind: 'gov_region', name: '长春市住房和城乡建设局', region_code: '220100' }, intAdmin)
  ).id;
  const enterprise = (
    await api.call('POST', '/v1/customers', { kind: 'enterprise', name: '吉林建工集团', region_code: '220100', uscc: uscc('91220101MA0000001') }, intAdmin)
  ).id;
  const owner = (
    await api.call('POST', '/v1/customers', { kind: 'project_owner', name: '长春置业有限公司', region_code: '220100', uscc: uscc('91220101MA0000002') }, intAdmin)
  ).id;
  const project = (
    await api.call('POST', '/v1/projects', {
      name: '长春市朝阳区某住宅项目', contractor_customer_id: enterprise, owner_customer_id: owner,
      region_code: '220102', project_type: 'building', contract_value_fen: 12_000_000_000,
      contract_signed_date: '2026-03-01', tender_completed_date: '2026-02-15', start_date: '2026-04-01',
      planned_end_date: '2027-10-31',
    }, intAdmin)
  ).id;
  const second = (
    await api.call('POST', '/v1/projects', {
      name: '长春市南关区某学校项目', contractor_customer_id: enterprise, owner_customer_id: owner,
      region_code: '220104', project_type: 'building', contract_value_fen: 4_500_000_000,
      contract_signed_date: '2026-05-10',
    }, intAdmin)
  ).id;
  await mkUser(intAdmin, `${tag}-gov`, ['gov_supervisor'], { customer_id: gov });
  await mkUser(intAdmin, `${tag}-gc`, ['enterprise_admin'], { customer_id: enterprise });
  await mkUser(intAdmin, `${tag}-owner`, ['owner_rep'], { customer_id: owner });
  const gc = await api.login(`${tag}-gc`, PASSWORD);
  for (const role of ['project_manager', 'safety_officer', 'labour_officer']) {
    await mkUser(gc, `${tag}-${role.replace('_', '-')}`, [role], { customer_id: enterprise });
  }
  const supplier = (
    await api.call('POST', '/v1/suppliers', { name: `${tag} 智塔科技`, uscc: uscc('91430100C0000000' + String(tag.length % 10)) }, intAdmin)
  ).id;
  const models = {};
  for (const [category, name] of [['tower_crane', '塔机黑匣子'], ['dust_noise', '扬尘噪声监测仪'], ['hoist', '升降机监控']]) {
    models[category] = (
      await api.call('POST', '/v1/device-models', { supplier_id: supplier, name, category, protocol: 'mqtt_json', access_cert_no: `JL-${tag}-${category}` }, intAdmin)
    ).id;
  }
  const devices = {};
  const configs = { tower_crane: { rated_load_t: 8, rated_moment_tm: 125 }, dust_noise: {}, hoist: { rated_load_kg: 2000, rated_persons: 12 } };
  for (const category of Object.keys(models)) {
    devices[category] = await api.call('POST', `/v1/projects/${project}/devices`, {
      model_id: models[category], serial_no: `${tag}-${category}-1`, category, ...configs[category],
    }, intAdmin);
  }
  return { integrator, gov, enterprise, owner, project, second, supplier, models, devices, users, tokens: { admin, intAdmin, gc } };
}
