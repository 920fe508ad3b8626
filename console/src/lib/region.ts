// The government's region tree: province → city → district → project (GB/T 2260 codes nest by
// digit pairs), each node coloured by the worst status below it.

export type Health = 'alarm' | 'warning' | 'ok';

export interface RegionNode {
  key: string;
  code: string;
  label: string;
  health: Health;
  projectId?: string;
  children: RegionNode[];
}

const rank: Record<Health, number> = { ok: 0, warning: 1, alarm: 2 };
export const worst = (a: Health, b: Health): Health => (rank[a] >= rank[b] ? a : b);

export function regionTree(projects: Array<{ id: string; name: string; region_code: string }>, health: (projectId: string) => Health): RegionNode[] {
  const roots: RegionNode[] = [];
  const byCode = new Map<string, RegionNode>();
  const node = (code: string, parent: RegionNode[] | null): RegionNode => {
    let n = byCode.get(code);
    if (!n) {
      n = { key: code, code, label: code, health: 'ok', children: [] };
      byCode.set(code, n);
      (parent ?? roots).push(n);
    }
    return n;
  };
  for (const p of [...projects].sort((a, b) => a.region_code.localeCompare(b.region_code) || a.name.localeCompare(b.name))) {
    const c = p.region_code;
    const province = node(`${c.slice(0, 2)}0000`, null);
    const city = c.slice(2, 4) === '00' ? province : node(`${c.slice(0, 4)}00`, province.children);
    const district = c.slice(4) === '00' ? city : node(c, city.children);
    const h = health(p.id);
    district.children.push({ key: p.id, code: c, label: p.name, health: h, projectId: p.id, children: [] });
    for (const n of new Set([province, city, district])) n.health = worst(n.health, h);
  }
  return roots;
}
