import { describe, expect, it } from 'vitest';
import { allowed, operationsOf } from './access';

const doc = {
  paths: {
    '/v1/auth/token': { post: {} },
    '/v1/projects': {
      get: { security: [{ bearer: [] }], 'x-roles': ['integrator_admin', 'owner_rep'] },
      post: { security: [{ bearer: [] }], 'x-roles': ['integrator_admin'] },
    },
    '/v1/projects/{id}/safety-fund/cost-plan/approve': {
      post: { security: [{ bearer: [] }], 'x-roles': ['owner_rep'] },
    },
  },
};

describe('allowed', () => {
  const ops = operationsOf(doc);
  it('follows x-roles per method and path template', () => {
    expect(allowed(ops, ['owner_rep'], 'GET', '/v1/projects')).toBe(true);
    expect(allowed(ops, ['owner_rep'], 'POST', '/v1/projects')).toBe(false);
    expect(allowed(ops, ['integrator_admin'], 'POST', '/v1/projects')).toBe(true);
    expect(allowed(ops, ['integrator_admin'], 'POST', '/v1/projects/{id}/safety-fund/cost-plan/approve')).toBe(false);
    expect(allowed(ops, ['project_manager', 'owner_rep'], 'POST', '/v1/projects/{id}/safety-fund/cost-plan/approve')).toBe(true);
  });
  it('allows public operations to anyone and unknown ones to no one', () => {
    expect(allowed(ops, [], 'POST', '/v1/auth/token')).toBe(true);
    expect(allowed(ops, ['integrator_admin'], 'GET', '/v1/projects/{id}/live')).toBe(false);
    expect(allowed(ops, ['integrator_admin'], 'DELETE', '/v1/projects')).toBe(false);
  });
});
