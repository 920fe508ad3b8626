// Which operations a caller may call, from the `x-roles` of each operation in /openapi.json:
// the console shows a button or a menu entry only when one of the caller's roles may call the
// operation behind it, so it never offers what the API would refuse.

export type Method = 'GET' | 'POST' | 'PUT' | 'DELETE' | 'PATCH';

/** `"GET /v1/projects/{id}"` → the roles that may call it; `null` for public operations. */
export type Operations = Map<string, string[] | null>;

interface OpenApiDoc {
  paths?: Record<string, Record<string, { 'x-roles'?: string[]; security?: unknown[] }>>;
}

export function operationsOf(doc: OpenApiDoc): Operations {
  const ops: Operations = new Map();
  for (const [path, item] of Object.entries(doc.paths ?? {})) {
    for (const [method, op] of Object.entries(item)) {
      if (!['get', 'put', 'post', 'delete', 'patch'].includes(method)) continue;
      const roles = op['x-roles'];
      ops.set(`${method.toUpperCase()} ${path}`, Array.isArray(roles) ? roles : op.security ? [] : null);
    }
  }
  return ops;
}

/** Whether any of `roles` may call `method pathTemplate`; an operation the document does not
 * list is never allowed. */
export function allowed(ops: Operations, roles: readonly string[], method: Method, pathTemplate: string): boolean {
  const key = `${method} ${pathTemplate}`;
  if (!ops.has(key)) return false;
  const who = ops.get(key);
  if (who === null || who === undefined) return true;
  return roles.some((r) => who.includes(r));
}
