import { describe, expect, it } from 'vitest';
import { sliceCsv } from './csv';

describe('sliceCsv', () => {
  it('repeats the header in every slice and drops the BOM and blank lines', () => {
    const s = sliceCsv('\uFEFFserial_no,model_id,category\r\nA,m,tower_crane\r\n\r\nB,m,hoist\r\nC,m,hoist\r\n', 2);
    expect(s.header).toBe('serial_no,model_id,category');
    expect(s.rows).toHaveLength(3);
    expect(s.slices).toEqual(['serial_no,model_id,category\nA,m,tower_crane\nB,m,hoist\n', 'serial_no,model_id,category\nC,m,hoist\n']);
  });
  it('gives no slice for a header alone', () => {
    expect(sliceCsv('serial_no,model_id,category\n').slices).toEqual([]);
  });
});
