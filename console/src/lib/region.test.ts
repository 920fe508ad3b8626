import { describe, expect, it } from 'vitest';
import { regionTree } from './region';

describe('regionTree', () => {
  it('nests projects under province, city and district and carries the worst status up', () => {
    const tree = regionTree(
      [
        { id: 'a', name: '住宅', region_code: '220102' },
        { id: 'b', name: '学校', region_code: '220104' },
        { id: 'c', name: '桥梁', region_code: '220200' },
      ],
      (id) => (id === 'b' ? 'alarm' : id === 'c' ? 'warning' : 'ok'),
    );
    expect(tree.map((n) => n.code)).toEqual(['220000']);
    expect(tree[0].health).toBe('alarm');
    const [cc, jl] = tree[0].children;
    expect([cc.code, jl.code]).toEqual(['220100', '220200']);
    expect(cc.children.map((d) => [d.code, d.health])).toEqual([
      ['220102', 'ok'],
      ['220104', 'alarm'],
    ]);
    expect(jl.health).toBe('warning');
    expect(jl.children.map((p) => p.projectId)).toEqual(['c']);
  });
});
