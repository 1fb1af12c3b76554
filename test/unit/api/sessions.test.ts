/**
 * The web console's login on the TCP API: POST/GET/DELETE /v1/session, the cookie taken as the caller, the CSRF
 * token on changes, requests from another origin refused (CSRF_REFUSED), a revoked token's sessions ended, the
 * audit log naming who without a session id or token; the console's page served to anyone with its headers.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import WebSocket from 'ws';
import type { LightMyRequestResponse } from 'fastify';
import { buildApi } from '../../../src/api/server.js';
import { sessionCookieName } from '../../../src/core/sessions.js';
import { bearer, LEGACY_TOKEN, withSetup, type AuthSetup } from './auth-setup.js';
import { recordingServices } from './recording-services.js';

const HOST = '127.0.0.1:8443';
const OWN = `https://${HOST}`;


interface Login { id: string; csrf: string; cookie: string; reply: LightMyRequestResponse }

async function login(s: AuthSetup, token: string, headers: Record<string, string> = {}): Promise<Login> {
  const reply = await s.tcp.inject({ method: 'POST', url: '/v1/session', headers: { host: HOST, origin: OWN, ...headers }, payload: { token } });
  assert.equal(reply.statusCode, 200, reply.body);
  const set = String(reply.headers['set-cookie']);
  const m = /^(__Host-corral-session)=([A-Za-z0-9_-]{43});/.exec(set);
  assert.ok(m, set);
  return { id: m[2]!, csrf: (reply.json() as { csrf: string }).csrf, cookie: `${m[1]}=${m[2]}`, reply };
}

const send = (s: AuthSetup, method: 'GET' | 'POST' | 'DELETE', url: string, headers: Record<string, string>, payload?: object) =>
  s.tcp.inject({ method, url, headers: { host: HOST, ...headers }, ...(payload ? { payload } : {}) });

const code = (r: LightMyRequestResponse): string => (r.json() as { error: { code: string } }).error.code;

test('a token logs in: the cookie is HttpOnly, Secure, SameSite=Strict, Path=/; the reply says who and gives a CSRF token', withSetup(async (s) => {
  const l = await login(s, LEGACY_TOKEN);
  assert.match(String(l.reply.headers['set-cookie']), /^__Host-corral-session=[A-Za-z0-9_-]{43}; Path=\/; Max-Age=43200; HttpOnly; Secure; SameSite=Strict$/);
  assert.equal(l.reply.headers['cache-control'], 'no-store');
  const body = l.reply.json() as Record<string, unknown>;
  assert.equal(body.who, 'token-file');
  assert.equal(body.role, 'admin');
  assert.ok(!JSON.stringify(body).includes(l.id), 'the session id is in the cookie only');
  const named = await login(s, s.secret.viewer);
  assert.deepEqual({ ...(named.reply.json() as object), csrf: 'x', createdAt: 'x', expiresAt: 'x' }, { who: 'viewer1', role: 'viewer', csrf: 'x', createdAt: 'x', expiresAt: 'x' });
}));

test('a wrong token, or a login from another origin, gets no cookie', withSetup(async (s) => {
  for (const token of [`corral_${'A'.repeat(43)}`, 'not-a-token', `${LEGACY_TOKEN}x`]) {
    const r = await send(s, 'POST', '/v1/session', { origin: OWN }, { token });
    assert.equal(r.statusCode, 401);
    assert.equal(r.headers['set-cookie'], undefined);
  }
  const foreign = await send(s, 'POST', '/v1/session', { origin: 'https://evil.example' }, { token: LEGACY_TOKEN });
  assert.equal(foreign.statusCode, 403);
  assert.equal(code(foreign), 'CSRF_REFUSED');
  assert.equal(foreign.headers['set-cookie'], undefined);
  const sameSite = await send(s, 'POST', '/v1/session', { 'sec-fetch-site': 'same-site' }, { token: LEGACY_TOKEN });
  assert.equal(code(sameSite), 'CSRF_REFUSED');
}));

test('the cookie is the caller: reads need nothing more, changes need the CSRF header, another origin is refused', withSetup(async (s) => {
  const l = await login(s, s.secret.operator);
  s.calls.length = 0;
  assert.equal((await send(s, 'GET', '/v1/instances', { cookie: l.cookie })).statusCode, 200);
  const none = await send(s, 'POST', '/v1/instances/web1/start', { cookie: l.cookie }, {});
  assert.equal(none.statusCode, 403);
  assert.equal(code(none), 'CSRF_REFUSED');
  assert.match((none.json() as { error: { message: string } }).error.message, /x-corral-csrf header/);
  // one character changed (to another: the token may end in A)
  const wrong = await send(s, 'POST', '/v1/instances/web1/start', { cookie: l.cookie, 'x-corral-csrf': `${l.csrf.slice(0, -1)}${l.csrf.endsWith('A') ? 'B' : 'A'}` }, {});
  assert.equal(code(wrong), 'CSRF_REFUSED');
  const foreign: Array<Record<string, string>> = [{ origin: 'https://127.0.0.1:9999' }, { origin: 'null' }, { 'sec-fetch-site': 'cross-site' }, { 'sec-fetch-site': 'same-site' }];
  for (const h of foreign) {
    const r = await send(s, 'POST', '/v1/instances/web1/start', { cookie: l.cookie, 'x-corral-csrf': l.csrf, ...h }, {});
    assert.equal(code(r), 'CSRF_REFUSED', JSON.stringify(h));
  }
  const evilRead = await send(s, 'GET', '/v1/instances', { cookie: l.cookie, origin: 'https://evil.example' });
  assert.equal(code(evilRead), 'CSRF_REFUSED', 'a read from another origin too');
  assert.deepEqual(s.calls, ['instances.list'], 'no refused request reached a service');
  const ok = await send(s, 'POST', '/v1/instances/web1/start', { cookie: l.cookie, 'x-corral-csrf': l.csrf, origin: OWN, 'sec-fetch-site': 'same-origin' }, {});
  assert.equal(ok.statusCode, 409, 'past auth: the recording service answers');
  assert.deepEqual(s.calls, ['instances.list', 'instances.start']);
  // a bearer token is not sent by a browser on its own: with one, the cookie is not looked at and no CSRF header is needed
  assert.equal((await send(s, 'POST', '/v1/instances/web1/start', { cookie: 'x=y', ...bearer(s.secret.operator) }, {})).statusCode, 409);
}));

test('a session has its token\'s role', withSetup(async (s) => {
  const l = await login(s, s.secret.viewer);
  const r = await send(s, 'POST', '/v1/instances/web1/start', { cookie: l.cookie, 'x-corral-csrf': l.csrf }, {});
  assert.equal(r.statusCode, 403);
  assert.equal(code(r), 'FORBIDDEN');
  assert.match((r.json() as { error: { message: string } }).error.message, /needs the operator role; the token "viewer1" has the viewer role/);
}));

test('GET /v1/session says who; logout ends the session and clears the cookie', withSetup(async (s) => {
  const l = await login(s, s.secret.admin);
  const who = await send(s, 'GET', '/v1/session', { cookie: l.cookie });
  assert.equal((who.json() as { csrf: string }).csrf, l.csrf);
  assert.equal((who.json() as { who: string }).who, 'admin1');
  const byBearer = await send(s, 'GET', '/v1/session', bearer(s.secret.viewer));
  assert.deepEqual(byBearer.json(), { who: 'viewer1', role: 'viewer', csrf: null, createdAt: null, expiresAt: null });
  assert.equal(code(await send(s, 'GET', '/v1/session', {})), 'UNAUTHORIZED');
  assert.equal(code(await send(s, 'DELETE', '/v1/session', { cookie: l.cookie })), 'CSRF_REFUSED', 'a logout is a change: no forged logouts');
  const out = await send(s, 'DELETE', '/v1/session', { cookie: l.cookie, 'x-corral-csrf': l.csrf });
  assert.deepEqual(out.json(), { ended: true });
  assert.match(String(out.headers['set-cookie']), /^__Host-corral-session=; Path=\/; Max-Age=0; HttpOnly; Secure; SameSite=Strict$/);
  const after = await send(s, 'GET', '/v1/instances', { cookie: l.cookie });
  assert.equal(after.statusCode, 401);
  assert.match((after.json() as { error: { message: string } }).error.message, /^the browser session has ended \(logged out\): log in again$/);
}));

test('revoking a token ends its sessions', withSetup(async (s) => {
  const l = await login(s, s.secret.operator);
  assert.equal((await send(s, 'GET', '/v1/instances', { cookie: l.cookie })).statusCode, 200);
  s.tokens.revoke('operator1');
  const r = await send(s, 'GET', '/v1/instances', { cookie: l.cookie });
  assert.equal(r.statusCode, 401);
  assert.match((r.json() as { error: { message: string } }).error.message, /^the browser session has ended \(the bearer token was revoked at \S+\): log in again$/);
}));

test('the console websocket takes the cookie from the daemon\'s own pages only', withSetup(async (s) => {
  const l = await login(s, s.secret.operator);
  await s.tcp.listen({ host: '127.0.0.1', port: 0 });
  const port = (s.tcp.server.address() as { port: number }).port;
  const cookie = `${sessionCookieName(port)}=${l.id}`;
  const open = (headers: Record<string, string>): Promise<number> => new Promise((resolve) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/v1/instances/web1/console`, { headers: { cookie, ...headers } });
    ws.on('open', () => { ws.close(); resolve(101); });
    ws.on('unexpected-response', (_q, res) => { res.resume(); resolve(res.statusCode ?? 0); });
    ws.on('error', () => undefined);
  });
  assert.equal(await open({ origin: 'https://evil.example' }), 403);
  assert.equal(await open({ origin: `https://127.0.0.1:${port + 1}` }), 403);
  // ws sends no Origin unless told: a websocket with a session cookie must say where it comes from
  assert.equal(await open({}), 403);
  // past auth: the recording service refuses the console (409)
  assert.equal(await open({ origin: `https://127.0.0.1:${port}`, host: `127.0.0.1:${port}` }), 409);
}));

test('the audit log names who logged in, and never holds the session id, the CSRF token or the token', withSetup(async (s) => {
  const l = await login(s, s.secret.operator);
  await send(s, 'POST', '/v1/session', { origin: OWN }, { token: 'wrong' });
  await send(s, 'POST', '/v1/instances/web1/stop', { cookie: l.cookie }, {});
  await send(s, 'POST', '/v1/instances/web1/stop', { cookie: l.cookie, 'x-corral-csrf': l.csrf, origin: 'https://evil.example' }, {});
  await send(s, 'POST', '/v1/instances/web1/stop', { cookie: l.cookie, 'x-corral-csrf': l.csrf }, {});
  await new Promise((r) => setTimeout(r, 20));
  const text = readFileSync(s.auditFile, 'utf8');
  for (const secret of [l.id, l.csrf, s.secret.operator]) assert.ok(!text.includes(secret));
  const lines = text.split('\n').filter(Boolean).map((x) => JSON.parse(x) as Record<string, unknown>);
  assert.deepEqual(lines.map((e) => [e.who, e.method, e.path, e.status, e.code]), [
    ['operator1', 'POST', '/v1/session', 200, null],
    [null, 'POST', '/v1/session', 401, 'UNAUTHORIZED'],
    ['operator1', 'POST', '/v1/instances/web1/stop', 403, 'CSRF_REFUSED'],
    ['operator1', 'POST', '/v1/instances/web1/stop', 403, 'CSRF_REFUSED'],
    ['operator1', 'POST', '/v1/instances/web1/stop', 409, 'INVALID_STATE'],
  ]);
}));

test('the unix socket has no sessions and no web console', withSetup(async (s) => {
  assert.equal((await s.unix.inject({ method: 'POST', url: '/v1/session', payload: { token: LEGACY_TOKEN } })).statusCode, 404);
  assert.equal((await s.unix.inject({ method: 'GET', url: '/' })).statusCode, 404);
}));

test('the console\'s page and files are served to anyone, with headers that keep other sites out', async () => {
  const root = mkdtempSync(join(tmpdir(), 'corral-web-'));
  mkdirSync(join(root, 'assets'));
  writeFileSync(join(root, 'index.html'), '<!doctype html><title>Corral</title>');
  writeFileSync(join(root, 'assets', 'index-abc.js'), 'console.log(1)');
  const app = await buildApi(recordingServices([]), { token: LEGACY_TOKEN, webRoot: root });
  const bare = await buildApi(recordingServices([]), { token: LEGACY_TOKEN, webRoot: join(root, 'nothing') });
  try {
    for (const headers of [{}, bearer('a-wrong-token'), { cookie: '__Host-corral-session=gone' }]) {
      const page = await app.inject({ method: 'GET', url: '/', headers });
      assert.equal(page.statusCode, 200, 'credentials are not looked at: a stale cookie must not keep the login page away');
      assert.equal(page.body, '<!doctype html><title>Corral</title>');
      assert.match(String(page.headers['content-security-policy']), /^default-src 'self'; script-src 'self';.* connect-src 'self';.*frame-ancestors 'none'$/);
      assert.equal(page.headers['x-frame-options'], 'DENY');
      assert.equal(page.headers['cache-control'], 'no-cache');
    }
    const js = await app.inject({ method: 'GET', url: '/assets/index-abc.js' });
    assert.equal(js.statusCode, 200);
    assert.match(String(js.headers['cache-control']), /immutable/);
    assert.equal(js.headers['x-content-type-options'], 'nosniff');
    const up = await app.inject({ method: 'GET', url: '/assets/../index.html' });
    assert.notEqual(up.statusCode, 200);
    assert.doesNotMatch(up.body, /<title>/);
    // the API is not opened by it: an unknown path still needs a token
    assert.equal((await app.inject({ method: 'GET', url: '/v1/nothing' })).statusCode, 401);
    const missing = await bare.inject({ method: 'GET', url: '/' });
    assert.equal(missing.statusCode, 404);
    assert.match(missing.body, /the web console is not built .*: run make build/);
  } finally {
    await app.close();
    await bare.close();
    rmSync(root, { recursive: true, force: true });
  }
});
