/**
 * A controller's web console (built in-process over a private PostgreSQL, no hosts): the page and its files are
 * served to anyone with the UI's headers; a cluster token logs in (HttpOnly, Secure, SameSite=Strict cookie); the
 * cookie lets in the API's reads, and changes only with the session's CSRF token and from the controller's own
 * origin; no cookie is UNAUTHORIZED; a revoked token's session is refused at once; a viewer's session stays a viewer.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import type { ClusterTokens } from '../../../src/cluster/cluster-tokens.js';
import type { ClusterDb } from '../../../src/cluster/db.js';
import { startTestController, type TestController } from './controller-app.js';

const TOKEN_FILE = 'd'.repeat(64);
const HOST = 'controller.example:7443';
const OWN = `https://${HOST}`;

let ctl: TestController;
let db: ClusterDb;
let app: FastifyInstance;
let tokens: ClusterTokens;

before(async () => {
  ctl = await startTestController(TOKEN_FILE, {
    webRoot: (dir) => {
      const root = join(dir, 'web');
      mkdirSync(join(root, 'assets'), { recursive: true });
      writeFileSync(join(root, 'index.html'), '<!doctype html><title>Corral</title>');
      writeFileSync(join(root, 'assets', 'app-abc123.js'), 'console.log(1)');
      return root;
    },
  });
  ({ app, db, tokens } = ctl);
});
after(async () => {
  await ctl?.close();
});

type Method = 'GET' | 'POST' | 'DELETE' | 'PATCH';
const send = (method: Method, url: string, headers: Record<string, string> = {}, payload?: object) =>
  app.inject({ method, url, headers: { host: HOST, ...headers }, ...(payload ? { payload } : {}) });
const code = (r: LightMyRequestResponse): string => (r.json() as { error: { code: string } }).error.code;

async function login(token: string): Promise<{ cookie: string; csrf: string; reply: LightMyRequestResponse }> {
  const reply = await send('POST', '/v1/session', { origin: OWN }, { token });
  assert.equal(reply.statusCode, 200, reply.body);
  const m = /^(__Host-corral-session)=([A-Za-z0-9_-]{43});/.exec(String(reply.headers['set-cookie']));
  assert.ok(m, String(reply.headers['set-cookie']));
  return { cookie: `${m[1]}=${m[2]}`, csrf: (reply.json() as { csrf: string }).csrf, reply };
}

test('the console\'s page and files are served to anyone, with the UI\'s headers; the API is not', async () => {
  const page = await send('GET', '/');
  assert.equal(page.statusCode, 200);
  assert.match(page.body, /<title>Corral<\/title>/);
  assert.match(String(page.headers['content-security-policy']), /frame-ancestors 'none'/);
  assert.equal(page.headers['x-frame-options'], 'DENY');
  const asset = await send('GET', '/assets/app-abc123.js');
  assert.equal(asset.statusCode, 200);
  assert.equal(asset.body, 'console.log(1)');
  for (const url of ['/v1/instances', '/v1/pool', '/v1/hosts', '/v1/session']) {
    const r = await send('GET', url);
    assert.equal(r.statusCode, 401, `${url}: ${r.body}`);
    assert.equal(code(r), 'UNAUTHORIZED');
  }
  // the UI's headers are the console's, not the API's
  assert.equal((await send('GET', '/v1/hosts')).headers['x-frame-options'], undefined);
});

test('a cluster token logs in; the cookie is HttpOnly, Secure, SameSite=Strict and lets in the API\'s reads', async () => {
  const bad = await send('POST', '/v1/session', { origin: OWN }, { token: `corral_${'A'.repeat(43)}` });
  assert.equal(bad.statusCode, 401);
  assert.equal(bad.headers['set-cookie'], undefined);
  const foreign = await send('POST', '/v1/session', { origin: 'https://evil.example' }, { token: TOKEN_FILE });
  assert.equal(foreign.statusCode, 403);
  assert.equal(code(foreign), 'CSRF_REFUSED');

  const file = await login(TOKEN_FILE);
  assert.match(String(file.reply.headers['set-cookie']), /; Path=\/; Max-Age=43200; HttpOnly; Secure; SameSite=Strict$/);
  assert.deepEqual([file.reply.json().who, file.reply.json().role], ['token-file', 'admin']);
  const pool = await send('GET', '/v1/pool', { cookie: file.cookie });
  assert.equal(pool.statusCode, 200, pool.body);
  assert.deepEqual(pool.json().hosts, []);
  const who = await send('GET', '/v1/session', { cookie: file.cookie });
  assert.deepEqual([who.json().who, who.json().csrf], ['token-file', file.csrf]);
});

test('a change with the cookie needs the session\'s CSRF token and the controller\'s own origin', async () => {
  const s = await login(TOKEN_FILE);
  const change = (headers: Record<string, string>) => send('POST', '/v1/cluster/join-tokens', { cookie: s.cookie, ...headers }, {});
  const none = await change({ origin: OWN });
  assert.equal(none.statusCode, 403);
  assert.equal(code(none), 'CSRF_REFUSED');
  assert.equal(none.json().error.reason, 'csrf-token');
  const cross = await change({ origin: 'https://evil.example', 'x-corral-csrf': s.csrf });
  assert.equal(cross.statusCode, 403);
  assert.equal(cross.json().error.reason, 'cross-origin');
  const good = await change({ origin: OWN, 'x-corral-csrf': s.csrf });
  assert.equal(good.statusCode, 201, good.body);
  assert.match(good.json().token, /./);
  // and every one of them is in the cluster's audit table, with who
  const audit = await db.pool.query<{ who: string; status: number }>(`SELECT who, status FROM audit WHERE path = '/v1/cluster/join-tokens' ORDER BY id`);
  assert.deepEqual(audit.rows.map((r) => [r.who, r.status]), [['token-file', 403], ['token-file', 403], ['token-file', 201]]);
});

test('a viewer\'s session reads but may not change; logout ends it; a revoked token\'s session is refused', async () => {
  const viewer = (await tokens.create({ name: 'web-viewer', role: 'viewer' }, null)).token;
  const s = await login(viewer);
  assert.equal((await send('GET', '/v1/instances', { cookie: s.cookie })).statusCode, 200);
  const make = await send('POST', '/v1/cluster/join-tokens', { cookie: s.cookie, origin: OWN, 'x-corral-csrf': s.csrf }, {});
  assert.equal(make.statusCode, 403);
  assert.equal(code(make), 'FORBIDDEN');

  await tokens.revoke('web-viewer');
  // each use reads the session and its token from PostgreSQL: refused from the very next request, saying why
  const revoked = await send('GET', '/v1/instances', { cookie: s.cookie });
  assert.equal(revoked.statusCode, 401);
  assert.match(revoked.json().error.message, /has ended \(the bearer token was revoked at /);

  const other = await login(TOKEN_FILE);
  const out = await send('DELETE', '/v1/session', { cookie: other.cookie, origin: OWN, 'x-corral-csrf': other.csrf });
  assert.deepEqual(out.json(), { ended: true });
  assert.equal((await send('GET', '/v1/pool', { cookie: other.cookie })).statusCode, 401);
});
