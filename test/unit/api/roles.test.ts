/**
 * Roles on the TCP API: every registered route has a declared role (a missing one would need admin: fail closed);
 * viewers read, operators run instances, admins touch the host; a role too weak is FORBIDDEN (403) naming both
 * roles, and the service is never asked. No valid token is UNAUTHORIZED (401). The unix socket needs no token.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import Fastify from 'fastify';
import { installAuth } from '../../../src/api/auth.js';
import { declared, registeredRoutes, routeRule, ROUTE_ROLES } from '../../../src/api/roles.js';
import type { Role } from '../../../src/core/tokens.js';
import { authSetup, bearer, LEGACY_TOKEN, withSetup, type AuthSetup } from './auth-setup.js';


type Method = 'GET' | 'POST' | 'PATCH' | 'DELETE';

async function call(s: AuthSetup, secret: string | null, method: Method, url: string, payload?: object): Promise<{ status: number; body: any; asked: string[] }> {
  s.calls.length = 0;
  const r = await s.tcp.inject({ method, url, headers: secret === null ? {} : bearer(secret), ...(payload ? { payload } : {}) });
  return { status: r.statusCode, body: r.json(), asked: [...s.calls] };
}

/** Got past auth: the recording service answered (its coded 409, or a list), never 401 or 403. */
function reached(r: { status: number; body: any; asked: string[] }, what: string): void {
  assert.ok(r.status !== 401 && r.status !== 403, `${what}: ${r.status} ${JSON.stringify(r.body)}`);
  assert.ok(r.asked.length > 0, `${what}: the service was asked`);
}

function forbidden(r: { status: number; body: any; asked: string[] }, required: Role, role: Role, who: RegExp): void {
  assert.equal(r.status, 403, JSON.stringify(r.body));
  assert.equal(r.body.error.code, 'FORBIDDEN');
  assert.equal(r.body.error.required, required);
  assert.equal(r.body.error.role, role);
  assert.match(r.body.error.message, new RegExp(`needs the ${required} role; ${who.source} has the ${role} role$`));
  assert.deepEqual(r.asked, [], 'the service was never asked');
}

test('every registered route has a declared role, and the table names no route that does not exist', withSetup(async (s) => {
  const routes = registeredRoutes(s.tcp);
  assert.ok(routes.length >= 60, `only ${routes.length} routes recorded`);
  const undeclared = routes.filter((r) => !declared(r.method, r.url)).map((r) => `${r.method} ${r.url}`);
  assert.deepEqual(undeclared, [], 'routes without a role in src/api/roles.ts');
  const seen = new Set(routes.map((r) => `${r.method} ${r.url}`));
  // a cluster controller's own routes are a controller's (test/unit/cluster/controller-roles.test.ts checks them)
  const controllerOnly = (k: string): boolean => / \/v1\/(hosts|cluster)\b/.test(k);
  assert.deepEqual(Object.keys(ROUTE_ROLES).filter((k) => !seen.has(k) && !controllerOnly(k)), [], 'table entries with no route');
  // the console websocket is among them, and is the operator's: it writes to the guest
  assert.equal(routeRule('GET', '/v1/instances/:name/console').role, 'operator');
  assert.equal(routeRule('HEAD', '/v1/instances').role, 'viewer');
}));

test('a route missing from the table needs admin (fail closed)', async () => {
  assert.equal(routeRule('POST', '/v1/something-new').role, 'admin');
  const s = await authSetup();
  const app = Fastify();
  try {
    installAuth(app, LEGACY_TOKEN, () => s.tokens);
    app.get('/v1/something-new', async () => ({ ok: true }));
    app.setErrorHandler((e: { statusCode?: number; code?: string }, _q, reply) => reply.status(e.statusCode ?? (e.code === 'FORBIDDEN' ? 403 : 500)).send({ code: e.code }));
    const op = await app.inject({ method: 'GET', url: '/v1/something-new', headers: bearer(s.secret.operator) });
    assert.equal(op.statusCode, 403);
    const admin = await app.inject({ method: 'GET', url: '/v1/something-new', headers: bearer(s.secret.admin) });
    assert.deepEqual(admin.json(), { ok: true });
  } finally {
    await app.close();
    await s.close();
  }
});

test('a viewer reads and streams events, and may change nothing', withSetup(async (s) => {
  const v = s.secret.viewer;
  reached(await call(s, v, 'GET', '/v1/instances'), 'list instances');
  reached(await call(s, v, 'GET', '/v1/instances/web1'), 'show');
  reached(await call(s, v, 'GET', '/v1/networks'), 'list networks');
  reached(await call(s, v, 'GET', '/v1/host/devices'), 'host devices');
  assert.equal(routeRule('GET', '/v1/events').role, 'viewer');
  forbidden(await call(s, v, 'POST', '/v1/instances/web1/start', {}), 'operator', 'viewer', /the token "viewer1"/);
  forbidden(await call(s, v, 'POST', '/v1/instances', { name: 'web2', image: 'tiny' }), 'operator', 'viewer', /the token "viewer1"/);
  forbidden(await call(s, v, 'DELETE', '/v1/volumes/data'), 'operator', 'viewer', /the token "viewer1"/);
  forbidden(await call(s, v, 'GET', '/v1/tokens'), 'admin', 'viewer', /the token "viewer1"/);
  const r = await call(s, v, 'POST', '/v1/instances/web1/start', {});
  assert.equal(r.body.error.message, 'POST /v1/instances/:name/start needs the operator role; the token "viewer1" has the viewer role');
  // the console websocket writes to the guest: refused before the upgrade
  await assert.rejects(s.tcp.injectWS('/v1/instances/web1/console', { headers: bearer(v) }), /Unexpected server response: 403/);
}));

test('an operator runs instances, their devices and volumes; the host is the admin\'s', withSetup(async (s) => {
  const op = s.secret.operator;
  reached(await call(s, op, 'POST', '/v1/instances/web1/start', {}), 'start');
  reached(await call(s, op, 'PATCH', '/v1/instances/web1', { cpus: 2 }), 'set');
  reached(await call(s, op, 'POST', '/v1/instances/web1/disks', { volume: 'data' }), 'attach a disk');
  reached(await call(s, op, 'POST', '/v1/instances/web1/nics', { model: 'virtio-net' }), 'attach a NIC');
  reached(await call(s, op, 'POST', '/v1/volumes', { name: 'data', size: '1G' }), 'create a volume');
  forbidden(await call(s, op, 'POST', '/v1/networks', { name: 'lan', cidr: '10.9.0.0/24' }), 'admin', 'operator', /the token "operator1"/);
  forbidden(await call(s, op, 'DELETE', '/v1/networks/lan'), 'admin', 'operator', /the token "operator1"/);
  forbidden(await call(s, op, 'POST', '/v1/images/build-tiny', {}), 'admin', 'operator', /the token "operator1"/);
  forbidden(await call(s, op, 'DELETE', '/v1/images/tiny'), 'admin', 'operator', /the token "operator1"/);
  forbidden(await call(s, op, 'POST', '/v1/host/sriov', { pf: '0000:03:00.0', vfs: 2 }), 'admin', 'operator', /the token "operator1"/);
  forbidden(await call(s, op, 'POST', '/v1/instances/web1/hostdevs', { address: '0000:05:00.0' }), 'admin', 'operator', /the token "operator1"/);
  forbidden(await call(s, op, 'POST', '/v1/tokens', { name: 'x', role: 'admin' }), 'admin', 'operator', /the token "operator1"/);
  forbidden(await call(s, op, 'GET', '/v1/audit'), 'admin', 'operator', /the token "operator1"/);
  // NICs that take a host VF or a host socket are the admin's, said once the body is read
  const sriov = await call(s, op, 'POST', '/v1/instances/web1/nics', { model: 'sriov', pf: '0000:03:00.0' });
  forbidden(sriov, 'admin', 'operator', /the token "operator1"/);
  assert.match(sriov.body.error.message, /^an SR-IOV NIC takes a virtual function of a host NIC needs the admin role/);
  forbidden(await call(s, op, 'POST', '/v1/instances/web1/nics', { model: 'vhost-user-net', backend: 'ovs0' }), 'admin', 'operator', /the token "operator1"/);
  // which host sockets may get a guest's memory is the admin's to say
  forbidden(await call(s, op, 'POST', '/v1/vhost-user', { name: 'ovs0', socket: '/run/x.sock' }), 'admin', 'operator', /the token "operator1"/);
  forbidden(await call(s, op, 'DELETE', '/v1/vhost-user/ovs0'), 'admin', 'operator', /the token "operator1"/);
  // the console: past the role check (the recording service then refuses it with 409)
  await assert.rejects(s.tcp.injectWS('/v1/instances/web1/console', { headers: bearer(op) }), /Unexpected server response: 409/);
}));

test('an admin and the token file\'s token may do everything', withSetup(async (s) => {
  for (const secret of [s.secret.admin, LEGACY_TOKEN]) {
    reached(await call(s, secret, 'POST', '/v1/networks', { name: 'lan', cidr: '10.9.0.0/24' }), 'create a network');
    reached(await call(s, secret, 'POST', '/v1/instances/web1/nics', { model: 'sriov', pf: '0000:03:00.0' }), 'an SR-IOV NIC');
    const made = await call(s, secret, 'POST', '/v1/tokens', { name: `t${secret.length}`, role: 'viewer' });
    assert.equal(made.status, 201);
    assert.match(made.body.token, /^corral_/);
  }
}));

test('no token, a wrong one, a revoked or an expired one: UNAUTHORIZED, saying why but naming no token', withSetup(async (s) => {
  const none = await call(s, null, 'GET', '/v1/instances');
  assert.equal(none.status, 401);
  assert.match(none.body.error.message, /a valid bearer token is required: the token file \$CORRAL_DATA_DIR\/token, or a token from `corral token create`/);
  const wrong = await call(s, `corral_${'A'.repeat(43)}`, 'GET', '/v1/instances');
  assert.equal(wrong.status, 401);
  assert.equal(wrong.body.error.message, 'the bearer token is not valid: it is not a token this daemon issued');
  s.tokens.revoke('viewer1');
  const revoked = await call(s, s.secret.viewer, 'GET', '/v1/instances');
  assert.equal(revoked.status, 401);
  assert.match(revoked.body.error.message, /^the bearer token was revoked at \d{4}-.*Z; ask an admin for a new one$/);
  assert.doesNotMatch(revoked.body.error.message, /viewer1/);
  const short = s.tokens.create({ name: 'short', role: 'admin', expires: '90m' });
  reached(await call(s, short.token, 'POST', '/v1/networks', { name: 'lan' }), 'before it expires');
  s.clock.offsetMs = 91 * 60_000;
  const expired = await call(s, short.token, 'POST', '/v1/networks', { name: 'lan' });
  assert.equal(expired.status, 401);
  assert.equal(expired.body.error.message, `the bearer token expired at ${short.expiresAt}; ask an admin for a new one`);
  assert.deepEqual(expired.asked, []);
}));

test('the unix socket asks for no token: its caller is an admin', withSetup(async (s) => {
  s.calls.length = 0;
  const r = await s.unix.inject({ method: 'POST', url: '/v1/networks', payload: { name: 'lan' } });
  assert.equal(r.statusCode, 409);
  assert.deepEqual(s.calls, ['networks.create']);
}));
