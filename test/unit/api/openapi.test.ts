/**
 * The OpenAPI document is complete enough for linters and client generators: every operation has a unique
 * camelCase operationId, a summary, a success reply with a schema and its error replies; the bearer scheme,
 * servers and security are declared; every $ref resolves.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildApi } from '../../../src/api/server.js';
import type { Services } from '../../../src/api/services.js';
import { routeRule } from '../../../src/api/roles.js';

type Json = Record<string, unknown>;
interface Operation {
  operationId?: string;
  'x-corral-role'?: string;
  summary?: string;
  security?: unknown[];
  responses?: Record<string, { description?: string; content?: Record<string, { schema?: Json }> }>;
}

const METHODS = ['get', 'put', 'post', 'patch', 'delete', 'head', 'options'];

async function openapi(token?: string): Promise<Json> {
  const svc = { events: { subscribe: () => () => undefined, since: () => [] } } as unknown as Services;
  const app = await buildApi(svc, token ? { token } : {});
  try {
    const r = await app.inject({ method: 'GET', url: '/openapi.json', headers: token ? { authorization: `Bearer ${token}` } : {} });
    assert.equal(r.statusCode, 200);
    return r.json() as Json;
  } finally {
    await app.close();
  }
}

function operations(doc: Json): Array<{ where: string; op: Operation }> {
  const out: Array<{ where: string; op: Operation }> = [];
  for (const [path, item] of Object.entries(doc.paths as Record<string, Record<string, Operation>>)) {
    for (const m of METHODS) if (item[m]) out.push({ where: `${m.toUpperCase()} ${path}`, op: item[m] });
  }
  return out;
}

/** Every {"$ref": "#/..."} in the document, with whether it resolves. */
function refs(doc: Json): Array<{ ref: string; ok: boolean }> {
  const out: Array<{ ref: string; ok: boolean }> = [];
  const resolve = (ref: string): boolean => {
    if (!ref.startsWith('#/')) return false;
    let at: unknown = doc;
    for (const raw of ref.slice(2).split('/')) {
      const key = decodeURIComponent(raw).replace(/~1/g, '/').replace(/~0/g, '~');
      if (at === null || typeof at !== 'object' || !(key in at)) return false;
      at = (at as Json)[key];
    }
    return true;
  };
  const walk = (v: unknown): void => {
    if (Array.isArray(v)) v.forEach(walk);
    else if (v !== null && typeof v === 'object') {
      for (const [k, x] of Object.entries(v)) {
        if (k === '$ref' && typeof x === 'string') out.push({ ref: x, ok: resolve(x) });
        else walk(x);
      }
    }
  };
  walk(doc);
  return out;
}

test('every operation has a unique camelCase operationId, a summary, a success reply with a schema and error replies', async () => {
  const doc = await openapi('secret');
  assert.match(String(doc.openapi), /^3\.1\./);
  const ops = operations(doc);
  assert.ok(ops.length >= 45, `only ${ops.length} operations`);
  const ids = new Map<string, string>();
  for (const { where, op } of ops) {
    assert.match(op.operationId ?? '', /^[a-z][a-zA-Z0-9]*$/, `${where}: operationId`);
    assert.ok(!ids.has(op.operationId!), `${where}: operationId ${op.operationId} is also ${ids.get(op.operationId!)}'s`);
    ids.set(op.operationId!, where);
    assert.ok(typeof op.summary === 'string' && op.summary.length > 0, `${where}: summary`);
    const codes = Object.keys(op.responses ?? {});
    const success = codes.filter((c) => /^2\d\d$/.test(c));
    // (the console websocket is left out of the document by @fastify/websocket: OpenAPI does not describe websockets)
    assert.ok(success.length > 0, `${where}: a 2xx reply`);
    for (const c of success) {
      if (c === '204') continue;
      const content = Object.values(op.responses![c]!.content ?? {});
      assert.ok(content.length > 0 && content.every((x) => x.schema && Object.keys(x.schema).length > 0), `${where}: ${c} has a schema`);
    }
    const clientErrors = codes.filter((c) => /^4\d\d$/.test(c));
    assert.ok(clientErrors.length > 0, `${where}: a 4xx reply`);
    for (const c of codes.filter((x) => /^[45]\d\d$/.test(x))) {
      const schema = op.responses![c]!.content?.['application/json']?.schema as { properties?: { error?: { required?: string[] } } } | undefined;
      assert.deepEqual(schema?.properties?.error?.required, ['code', 'message'], `${where}: ${c} is the Error body`);
    }
    assert.ok(op.responses!['401'], `${where}: 401 on the TCP API`);
  }
  for (const id of ['listInstances', 'createInstance', 'getInstance', 'stopInstance', 'getInstanceCpu', 'getInstanceMemory', 'listVolumes', 'getNetwork', 'getHost', 'getPool', 'streamEvents', 'setSriovVfCount']) {
    assert.ok(ids.has(id), `operation ${id}`);
  }
});

test('the TCP API declares the bearer scheme and needs it everywhere; servers are named; every $ref resolves', async () => {
  const doc = await openapi('secret');
  const schemes = (doc.components as { securitySchemes?: Record<string, { type?: string; scheme?: string }> }).securitySchemes;
  assert.equal(schemes?.bearer?.type, 'http');
  assert.equal(schemes?.bearer?.scheme, 'bearer');
  assert.deepEqual(doc.security, [{ bearer: [] }]);
  for (const { where, op } of operations(doc)) {
    if (op.security !== undefined) assert.deepEqual(op.security, [{ bearer: [] }], `${where}: security`);
  }
  const servers = doc.servers as Array<{ url?: string; description?: string }>;
  assert.ok(Array.isArray(servers) && servers.length > 0 && servers.every((s) => typeof s.url === 'string' && s.description), 'servers');
  const all = refs(doc);
  assert.deepEqual(all.filter((r) => !r.ok), [], 'every $ref resolves');
});

test('each operation names the role it needs (x-corral-role, as src/api/roles.ts says); on TCP those above viewer list 403 FORBIDDEN', async () => {
  const doc = await openapi('secret');
  const roles = new Map<string, number>();
  for (const { where, op } of operations(doc)) {
    const [method, path] = where.split(' ') as [string, string];
    const role = routeRule(method, path.replace(/\{([^}]+)\}/g, ':$1')).role;
    assert.equal(op['x-corral-role'], role, `${where}: x-corral-role`);
    roles.set(role, (roles.get(role) ?? 0) + 1);
    if (role === 'viewer') assert.equal(op.responses?.['403'], undefined, `${where}: a viewer's operation is never forbidden`);
    else assert.match(String(op.responses?.['403']?.description), /^FORBIDDEN: /, `${where}: 403`);
  }
  assert.ok((roles.get('viewer') ?? 0) > 10 && (roles.get('operator') ?? 0) > 10 && (roles.get('admin') ?? 0) > 5, JSON.stringify([...roles]));
  for (const id of ['createToken', 'listTokens', 'revokeToken', 'listAuditEntries']) {
    assert.equal(operations(doc).find((o) => o.op.operationId === id)?.op['x-corral-role'], 'admin', id);
  }
});

test('the unix socket API needs no token: security is empty and no operation lists 401 or 403', async () => {
  const doc = await openapi();
  assert.deepEqual(doc.security, []);
  for (const { where, op } of operations(doc)) {
    assert.equal(op.responses?.['401'], undefined, `${where}: no 401`);
    assert.equal(op.responses?.['403'], undefined, `${where}: no 403`);
  }
  assert.deepEqual(refs(doc).filter((r) => !r.ok), []);
});
