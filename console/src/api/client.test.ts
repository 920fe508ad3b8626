import { describe, expect, it } from 'vitest';
import { ApiError, filenameOf, retryAfterOf } from './client';

describe('ApiError', () => {
  it('takes the stable slug of the problem type', () => {
    expect(new ApiError(422, { type: 'https://smartsite.dev/problems/validation' }).slug).toBe('validation');
    expect(new ApiError(0, null).slug).toBe('network');
    expect(new ApiError(502, null).slug).toBe('http-502');
  });
});

describe('filenameOf', () => {
  it('prefers the UTF-8 name', () => {
    expect(filenameOf(`attachment; filename="invoice.xlsx"; filename*=UTF-8''%E5%8F%91%E7%A5%A8.xlsx`, 'x')).toBe('发票.xlsx');
    expect(filenameOf('attachment; filename="invoices-2026-11.csv"', 'x')).toBe('invoices-2026-11.csv');
    expect(filenameOf(null, 'fallback.xlsx')).toBe('fallback.xlsx');
  });
});

describe('retryAfterOf', () => {
  it('reads seconds and HTTP dates', () => {
    expect(retryAfterOf('17')).toBe(17);
    expect(retryAfterOf(new Date(61_000).toUTCString(), 1_000)).toBe(60);
    expect(retryAfterOf(null)).toBeNull();
    expect(retryAfterOf('soon')).toBeNull();
  });
});
