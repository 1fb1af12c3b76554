/**
 * Roles on a controller's API (built in-process over a private PostgreSQL, with no hosts): every route is in the
 * daemon's role table but the agents' own (join, heartbeat, the CA) and the calls forwarded to an agent, which are
 * checked by the route the agent would match, body included; viewers read, operators run instances, the hosts and
 * join tokens are the admin's; refusals say what the daemon says, and each is in the audit table with who made it.
 * Reaching an instance route gives INSTANCE_NOT_FOUND here (the cluster has none): that is "past the role check".
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import type { FastifyInstance } from 'fastify';
import { declared, pathRule, registeredRoutes, ROUTE_ROLES } from '../../../src/api/roles.js';
import type { Role } from '../../../src/core/tokens.js';
import { ClusterStore } from '../../../src/cluster/cluster-store.js';
import type { ClusterTokens } from '../../../src/cluster/cluster-tokens.js';
import { perHostPath } from '../../../src/cluster/host-routing.js';
import type { ClusterDb } from '../../../src/cluster/db.js';
import { startTestController, type TestController } from './controller-app.js';

const TOKEN_FILE = 'c'.repeat(64);
/** a heartbeat's body, sent without an agent's certificate */
const BEAT = { capacity: {}, allocation: {}, agentVersion: 'test' };

let ctl: TestController;
let db: ClusterDb;
let app: FastifyInstance;
let tokens: ClusterTokens;
const secret = {} as Record<Role, string>;

before(async () => {
  ctl = await startTestController(TOKEN_FILE);
  ({ app, db, tokens } = ctl);
  for (const role of ['viewer', 'operator', 'admin'] as const) secret[role] = (await tokens.create({ name: `${role}1`, role }, null)).token;
});
after(async () => {
  await ctl?.close();
});

type Method = 'GET' | 'POST' | 'PATCH' | 'DELETE';
const bearer = (s: string): Record<string, string> => ({ authorization: `Bearer ${s}` });

async function call(who: string | null, method: Method, url: string, payload?: object): Promise<{ status: number; body: any }> {
  const r = await app.inject({ method, url, headers: who === null ? {} : bearer(who), ...(payload ? { payload } : {}) });
  return { status: r.statusCode, body: r.json() };
}

function forbidden(r: { status: number; body: any }, required: Role, role: Role, route: string): void {
  assert.equal(r.status, 403, JSON.stringify(r.body));
  assert.deepEqual([r.body.error.code, r.body.error.required, r.body.error.role], ['FORBIDDEN', required, role]);
  assert.match(r.body.error.message, new RegExp(`^${route.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} needs the ${required} role; the token "${role}1" has the ${role} role$`));
}

/** Past the role check: the route itself answered (no instance, no host of that name). */
function reached(r: { status: number; body: any }, code: string): void {
  assert.ok(r.status !== 401 && r.status !== 403, JSON.stringify(r.body));
  assert.equal(r.body.error?.code, code, JSON.stringify(r.body));
}

test('every controller route has a declared role, but the agents\' own routes and the calls forwarded to an agent', () => {
  const routes = registeredRoutes(app);
  // an instance's calls, and a host's own resources (every method: checked by the route the agent would match)
  const forwarded = (url: string): boolean => url === '/v1/instances/:name' || url === '/v1/instances/:name/*' || perHostPath(url);
  const key = (r: { method: string; url: string }): string => `${r.method === 'HEAD' ? 'GET' : r.method} ${r.url}`;
  const undeclared = [...new Set(routes.filter((r) => !declared(r.method, r.url) && !forwarded(r.url)).map(key))].sort();
  assert.deepEqual(undeclared, ['GET /v1/cluster/ca', 'POST /v1/cluster/heartbeat', 'POST /v1/cluster/join']);
  const seen = new Set(routes.map(key));
  const controllerOnly = Object.keys(ROUTE_ROLES).filter((k) => / \/v1\/(hosts|cluster)\b/.test(k));
  assert.ok(controllerOnly.length >= 5);
  assert.deepEqual(controllerOnly.filter((k) => !seen.has(k)), [], 'table entries for the controller that it does not serve');
  for (const k of ['GET /v1/tokens', 'POST /v1/tokens', 'DELETE /v1/tokens/:name', 'GET /v1/audit', 'GET /v1/instances/:name/console']) assert.ok(seen.has(k), k);
});

test('a forwarded path is checked by the route the agent would match; one that matches none needs admin', () => {
  assert.deepEqual(pathRule('POST', '/v1/instances/web1/start')?.route, 'POST /v1/instances/:name/start');
  assert.equal(pathRule('HEAD', '/v1/instances/web1/console/log')?.rule.role, 'viewer');
  assert.equal(pathRule('DELETE', '/v1/instances/web1/nics/net0')?.rule.role, 'operator');
  assert.equal(pathRule('POST', '/v1/instances/web1/nics')?.rule.escalate?.({ model: 'sriov' })?.role, 'admin');
  for (const odd of ['/v1/instances/web1/start/', '/v1/instances//start', '/v1/instances/web1/%73tart', '/v1/instances/web1/reboot', '/v1/instances/web1/x/../start']) {
    assert.equal(pathRule('POST', odd), null, odd);
  }
  // a URL resolves dot segments away (the agent would be asked for /v1/instances/web1/): never a parameter
  assert.equal(pathRule('DELETE', '/v1/instances/web1/disks/..'), null);
});

const target = (host: string): Record<string, string> => ({ 'x-corral-target': host });

async function targeted(who: string, method: Method, url: string, host: string, payload?: object): Promise<{ status: number; body: any }> {
  const r = await app.inject({ method, url, headers: { ...bearer(who), ...target(host) }, ...(payload ? { payload } : {}) });
  return { status: r.statusCode, body: r.json() };
}

test('a host\'s own resources: the agent route\'s role, checked before the target; without one a list is the union, the rest TARGET_REQUIRED', async () => {
  const v = secret.viewer;
  const op = secret.operator;
  // past the role check, the target is looked for: there is no host h1
  reached(await targeted(v, 'GET', '/v1/images', 'h1'), 'HOST_NOT_FOUND');
  reached(await targeted(v, 'GET', '/v1/host', 'h1'), 'HOST_NOT_FOUND');
  reached(await targeted(v, 'GET', '/v1/host/devices', 'h1'), 'HOST_NOT_FOUND');
  reached(await targeted(v, 'GET', '/v1/volumes/v1/snapshots', 'h1'), 'HOST_NOT_FOUND');
  reached(await targeted(op, 'POST', '/v1/volumes', 'h1', { name: 'v1', size: '64M' }), 'HOST_NOT_FOUND');
  reached(await targeted(op, 'POST', '/v1/volumes/v1/snapshots/s1/revert', 'h1', {}), 'HOST_NOT_FOUND');
  forbidden(await targeted(v, 'POST', '/v1/volumes', 'h1', { name: 'v1', size: '64M' }), 'operator', 'viewer', 'POST /v1/volumes');
  forbidden(await targeted(v, 'DELETE', '/v1/volumes/v1', 'h1'), 'operator', 'viewer', 'DELETE /v1/volumes/:name');
  forbidden(await targeted(op, 'POST', '/v1/networks', 'h1', { name: 'n1' }), 'admin', 'operator', 'POST /v1/networks');
  forbidden(await targeted(op, 'POST', '/v1/images/build-tiny', 'h1', {}), 'admin', 'operator', 'POST /v1/images/:name');
  forbidden(await targeted(op, 'POST', '/v1/host/sriov', 'h1', {}), 'admin', 'operator', 'POST /v1/host/sriov');
  forbidden(await targeted(op, 'DELETE', '/v1/vhost-user/dpdk0', 'h1'), 'admin', 'operator', 'DELETE /v1/vhost-user/:name');
  // a path no agent route matches needs admin (fail closed)
  forbidden(await targeted(op, 'POST', '/v1/volumes/v1/grow', 'h1', {}), 'admin', 'operator', 'POST /v1/volumes/v1/grow');
  const bad = await targeted(v, 'GET', '/v1/images', 'H1');
  assert.deepEqual([bad.status, bad.body.error.code, bad.body.error.field], [400, 'INVALID_SPEC', 'target']);

  // no target: the lists are the union (no hosts here), the rest TARGET_REQUIRED naming the hosts up (none)
  for (const [url, key] of [['/v1/images', 'images'], ['/v1/volumes', 'volumes'], ['/v1/networks', 'networks']]) {
    assert.deepEqual((await call(v, 'GET', url!)).body, { [key!]: [], unreachable: [] });
  }
  const req = await call(op, 'POST', '/v1/volumes', { name: 'v1', size: '64M' });
  assert.deepEqual([req.status, req.body.error.code, req.body.error.hosts], [400, 'TARGET_REQUIRED', []]);
  assert.match(req.body.error.message, /^POST \/v1\/volumes is one host's, not the cluster's: say which with --target HOST \(the x-corral-target header\); no host is up now/);
  for (const url of ['/v1/host', '/v1/host/devices', '/v1/vhost-user', '/v1/images/tiny']) assert.equal((await call(v, 'GET', url)).body.error.code, 'TARGET_REQUIRED', url);
  forbidden(await call(v, 'POST', '/v1/volumes', { name: 'v1', size: '64M' }), 'operator', 'viewer', 'POST /v1/volumes');
});

test('the cluster\'s own routes refuse a target, once the caller may call them', async () => {
  for (const [method, url] of [['GET', '/v1/instances'], ['GET', '/v1/pool'], ['GET', '/v1/hosts'], ['GET', '/v1/instances/web1/disks'], ['GET', '/v1/events']] as const) {
    const r = await targeted(secret.viewer, method, url, 'h1');
    assert.deepEqual([r.status, r.body.error.code, r.body.error.field], [400, 'INVALID_SPEC', 'target'], url);
    assert.match(r.body.error.message, new RegExp(`^target: ${method} ${url.replace(/\//g, '\\/')} is the cluster's, not one host's: drop --target`));
  }
  forbidden(await targeted(secret.viewer, 'GET', '/v1/tokens', 'h1'), 'admin', 'viewer', 'GET /v1/tokens');
  // an agent's routes check their callers themselves, and take no target: left be
  assert.equal((await app.inject({ method: 'GET', url: '/v1/cluster/ca', headers: target('h1') })).statusCode, 200);
});

test('no token, an unknown, a revoked or an expired one: UNAUTHORIZED; the agents\' routes need none', async () => {
  const none = await call(null, 'GET', '/v1/instances');
  assert.equal(none.status, 401);
  assert.match(none.body.error.message, /a controller's token file .* or a token from `corral token create`/);
  assert.equal((await call(`corral_${'A'.repeat(43)}`, 'GET', '/v1/hosts')).body.error.code, 'UNAUTHORIZED');
  const t = await tokens.create({ name: 'soon-gone', role: 'admin' }, null);
  assert.equal((await call(t.token, 'GET', '/v1/hosts')).status, 200);
  await tokens.revoke('soon-gone');
  const revoked = await call(t.token, 'GET', '/v1/hosts');
  assert.deepEqual([revoked.status, revoked.body.error.reason], [401, 'revoked']);
  const e = await tokens.create({ name: 'brief', role: 'admin', expires: '1h' }, null);
  await db.pool.query("UPDATE named_tokens SET expires_at = now() - interval '1 second' WHERE name = 'brief'");
  const expired = await call(e.token, 'GET', '/v1/hosts');
  assert.deepEqual([expired.status, expired.body.error.reason], [401, 'expired']);

  assert.equal((await call(null, 'GET', '/v1/cluster/ca')).status, 200);
  assert.equal((await call(null, 'POST', '/v1/cluster/heartbeat', BEAT)).body.error.code, 'UNTRUSTED_PEER');
});

test('a viewer reads the cluster and changes nothing', async () => {
  const v = secret.viewer;
  assert.equal((await call(v, 'GET', '/v1/hosts')).status, 200);
  assert.equal((await call(v, 'GET', '/v1/instances')).status, 200);
  assert.equal((await call(v, 'GET', '/v1/pool')).status, 200);
  reached(await call(v, 'GET', '/v1/hosts/h1'), 'HOST_NOT_FOUND');
  reached(await call(v, 'GET', '/v1/instances/web1'), 'INSTANCE_NOT_FOUND');
  reached(await call(v, 'GET', '/v1/instances/web1/console/log'), 'INSTANCE_NOT_FOUND');
  forbidden(await call(v, 'POST', '/v1/instances', { name: 'web2', image: 'tiny' }), 'operator', 'viewer', 'POST /v1/instances');
  forbidden(await call(v, 'POST', '/v1/instances/web1/start', {}), 'operator', 'viewer', 'POST /v1/instances/:name/start');
  forbidden(await call(v, 'DELETE', '/v1/instances/web1'), 'operator', 'viewer', 'DELETE /v1/instances/:name');
  forbidden(await call(v, 'GET', '/v1/tokens'), 'admin', 'viewer', 'GET /v1/tokens');
  await assert.rejects(app.injectWS('/v1/instances/web1/console', { headers: bearer(v) }), /Unexpected server response: 403/);
});

test('an operator runs instances through the controller; hosts, join tokens and host devices are the admin\'s', async () => {
  const op = secret.operator;
  reached(await call(op, 'POST', '/v1/instances', { name: 'web2', image: 'tiny' }), 'NO_HOST_FITS');
  reached(await call(op, 'POST', '/v1/instances/web1/start', {}), 'INSTANCE_NOT_FOUND');
  reached(await call(op, 'PATCH', '/v1/instances/web1', { cpus: 2 }), 'INSTANCE_NOT_FOUND');
  reached(await call(op, 'DELETE', '/v1/instances/web1'), 'INSTANCE_NOT_FOUND');
  reached(await call(op, 'POST', '/v1/instances/web1/nics', { model: 'virtio-net' }), 'INSTANCE_NOT_FOUND');
  forbidden(await call(op, 'POST', '/v1/cluster/join-tokens', {}), 'admin', 'operator', 'POST /v1/cluster/join-tokens');
  forbidden(await call(op, 'DELETE', '/v1/hosts/h1'), 'admin', 'operator', 'DELETE /v1/hosts/:name');
  forbidden(await call(op, 'POST', '/v1/hosts/h1/maintenance', { on: true }), 'admin', 'operator', 'POST /v1/hosts/:name/maintenance');
  forbidden(await call(op, 'POST', '/v1/instances/web1/hostdevs', { address: '0000:05:00.0' }), 'admin', 'operator', 'POST /v1/instances/:name/hostdevs');
  forbidden(await call(op, 'POST', '/v1/tokens', { name: 'x', role: 'admin' }), 'admin', 'operator', 'POST /v1/tokens');
  forbidden(await call(op, 'GET', '/v1/audit'), 'admin', 'operator', 'GET /v1/audit');
  // what the agent would take for a host NIC is the admin's, said once the body is read
  const sriov = await call(op, 'POST', '/v1/instances/web1/nics', { model: 'sriov', pf: '0000:03:00.0' });
  assert.equal(sriov.status, 403);
  assert.match(sriov.body.error.message, /^an SR-IOV NIC takes a virtual function of a host NIC needs the admin role/);
  // a forwarded path no agent route matches: fail closed
  forbidden(await call(op, 'POST', '/v1/instances/web1/reboot', {}), 'admin', 'operator', 'POST /v1/instances/web1/reboot');
  // the console: past the role check, then the instance is not found
  await assert.rejects(app.injectWS('/v1/instances/web1/console', { headers: bearer(op) }), /Unexpected server response: 404/);
});

test('an admin, and a controller\'s token file, may do everything', async () => {
  for (const s of [secret.admin, TOKEN_FILE]) {
    reached(await call(s, 'POST', '/v1/instances/web1/nics', { model: 'sriov', pf: '0000:03:00.0' }), 'INSTANCE_NOT_FOUND');
    reached(await call(s, 'DELETE', '/v1/hosts/h1'), 'HOST_NOT_FOUND');
    assert.equal((await call(s, 'POST', '/v1/cluster/join-tokens', {})).status, 201);
  }
  const made = await call(TOKEN_FILE, 'POST', '/v1/tokens', { name: 'by-file', role: 'viewer' });
  assert.equal(made.status, 201);
  assert.match(made.body.token, /^corral_/);
  const { rows } = await db.pool.query("SELECT created_by FROM named_tokens WHERE name = 'by-file'");
  assert.equal(rows[0].created_by, 'token-file');
  assert.deepEqual((await call(secret.admin, 'GET', '/v1/tokens')).body.tokens.map((t: any) => t.name).includes('by-file'), true);
});

test('each state-changing and each refused request is in the audit table, with who made it; reads are not', async () => {
  await call(secret.viewer, 'GET', '/v1/hosts');
  await call(secret.viewer, 'POST', '/v1/instances/web9/stop', {});
  await call(secret.operator, 'POST', '/v1/instances/web9/stop', {});
  await call(null, 'GET', '/v1/pool');
  await app.injectWS('/v1/instances/web9/console', { headers: bearer(secret.viewer) }).catch(() => undefined);
  await call(TOKEN_FILE, 'DELETE', '/v1/tokens/by-file');
  const r = await call(secret.admin, 'GET', '/v1/audit?limit=5');
  const fixed = r.body.entries.map(({ time, ms, ...rest }: any) => {
    assert.ok(!Number.isNaN(Date.parse(time)) && ms >= 0);
    return rest;
  });
  assert.deepEqual(fixed, [
    { who: 'viewer1', role: 'viewer', via: 'tcp', peer: '127.0.0.1', method: 'POST', path: '/v1/instances/web9/stop', resource: 'web9', status: 403, code: 'FORBIDDEN' },
    { who: 'operator1', role: 'operator', via: 'tcp', peer: '127.0.0.1', method: 'POST', path: '/v1/instances/web9/stop', resource: 'web9', status: 404, code: 'INSTANCE_NOT_FOUND' },
    { who: null, role: null, via: 'tcp', peer: '127.0.0.1', method: 'GET', path: '/v1/pool', resource: null, status: 401, code: 'UNAUTHORIZED' },
    // (an injected websocket has no client address)
    { who: 'viewer1', role: 'viewer', via: 'tcp', peer: null, method: 'GET', path: '/v1/instances/web9/console', resource: 'web9', status: 403, code: 'FORBIDDEN' },
    { who: 'token-file', role: 'admin', via: 'tcp', peer: '127.0.0.1', method: 'DELETE', path: '/v1/tokens/by-file', resource: 'by-file', status: 200, code: null },
  ]);
  const agent = await call(null, 'POST', '/v1/cluster/heartbeat', BEAT);
  assert.equal(agent.status, 403);
  const last = (await call(secret.admin, 'GET', '/v1/audit?limit=1')).body.entries[0];
  assert.deepEqual([last.who, last.path, last.status, last.code], [null, '/v1/cluster/heartbeat', 403, 'UNTRUSTED_PEER']);
});

test('GET /metrics on a controller: a viewer\'s token reads the hosts by state and each one\'s figures; none is refused', async () => {
  await new ClusterStore(db.pool).insertHost({ name: 'm-h1', uuid: '33333333-3333-4333-8333-333333333333', address: 'https://10.0.0.9:8444', certSerial: 'ab', certFingerprint: 'cd', labels: {}, agentVersion: 'test' });
  assert.equal((await app.inject({ method: 'GET', url: '/metrics' })).statusCode, 401);
  const r = await app.inject({ method: 'GET', url: '/metrics', headers: bearer(secret.viewer) });
  assert.equal(r.statusCode, 200);
  // it never sent a heartbeat: unreachable
  assert.match(r.body, /^corral_cluster_hosts\{state="unreachable"\} 1$/m);
  assert.match(r.body, /^corral_cluster_hosts\{state="up"\} 0$/m);
  assert.match(r.body, /^corral_cluster_host_state\{host="m-h1",state="unreachable"\} 1$/m);
  assert.match(r.body, /^corral_cluster_host_allocated_memory_bytes\{host="m-h1"\} 0$/m);
  assert.match(r.body, /^corral_http_request_duration_seconds_count\{method="GET",route="\/v1\/hosts",status_code="200"\} [1-9]/m);
  const check = spawnSync('promtool', ['check', 'metrics'], { input: r.body, encoding: 'utf8' });
  if (!check.error) assert.equal(`${check.stdout}${check.stderr}`.trim() + String(check.status), '0');
  await db.pool.query("DELETE FROM hosts WHERE name = 'm-h1'");
});
