/**
 * The web console's sessions across two controllers over one PostgreSQL (no hosts), with plain HTTPS requests as a
 * browser sends them (the cookie, its own origin, the session's CSRF token): a login on controller 1 is taken by
 * controller 2 (reads, and a change with the CSRF token), survives controller 1's restart, and a logout on
 * controller 2 refuses the cookie on both. A named token's session is refused on both from the request after its
 * revoke, and an event stream it held open on the other controller is cut by that controller's sweep (30 s).
 * Behind one name (a load balancer) the controllers listen on one port, so the browser sends one cookie to both;
 * here they listen on two ports of 127.0.0.1, and the cookie's name (which holds the port) is the one each expects.
 * Needs PostgreSQL, not the tiny image.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { request, type RequestOptions } from 'node:https';
import { join } from 'node:path';
import { Controller, twoControllers } from './cluster-harness.js';
import type { TestPostgres } from '../unit/postgres.js';

let server: TestPostgres;
let c1: Controller;
let c2: Controller;

before(async () => {
  ({ server, c1, c2 } = await twoControllers());
});

after(async () => {
  await c1?.destroy();
  await c2?.destroy();
  await server?.stop();
});

interface Reply { status: number; headers: Record<string, string | string[] | undefined>; body: any }

/** The session cookie as controller `c` names it. */
const cookieFor = (c: Controller, id: string): string => `__Host-corral-session-${c.port}=${id}`;

function options(c: Controller, method: string, headers: Record<string, string>): RequestOptions {
  return { method, agent: false, ca: readFileSync(join(c.dataDir, 'cluster-ca.crt')), headers: { 'sec-fetch-site': 'same-origin', ...(method === 'GET' ? {} : { origin: c.url }), ...headers } };
}

/** A request to controller `c` as its own page sends it. */
function call(c: Controller, method: string, path: string, headers: Record<string, string> = {}, body?: object): Promise<Reply> {
  const text = body ? JSON.stringify(body) : undefined;
  return new Promise((resolve, reject) => {
    const req = request(`${c.url}${path}`, options(c, method, { ...(text ? { 'content-type': 'application/json' } : {}), ...headers }), (res) => {
      let data = '';
      res.on('data', (d: Buffer) => { data += d.toString(); });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: data ? JSON.parse(data) : null }));
    });
    req.on('error', reject);
    req.end(text);
  });
}

/** Log in on `c` with a token: the session's id (the cookie's value) and CSRF token. */
async function login(c: Controller, token: string): Promise<{ id: string; csrf: string; who: string }> {
  const r = await call(c, 'POST', '/v1/session', {}, { token });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  const set = String(r.headers['set-cookie']);
  assert.match(set, /; Path=\/; Max-Age=43200; HttpOnly; Secure; SameSite=Strict$/);
  const m = new RegExp(`^__Host-corral-session-${c.port}=([A-Za-z0-9_-]{43});`).exec(set);
  assert.ok(m, set);
  return { id: m[1]!, csrf: r.body.csrf, who: r.body.who };
}

const tokenFile = (c: Controller): string => readFileSync(join(c.dataDir, 'token'), 'utf8').trim();

/** How an event stream opened on `c` with the cookie ends: resolves when the controller closes it. */
function eventStream(c: Controller, id: string): Promise<{ connected: Promise<void>; closed: Promise<void> }> {
  return new Promise((resolve, reject) => {
    const req = request(`${c.url}/v1/events`, options(c, 'GET', { cookie: cookieFor(c, id), accept: 'text/event-stream' }), (res) => {
      assert.equal(res.statusCode, 200);
      let text = '';
      const connected = new Promise<void>((ok) => res.on('data', (d: Buffer) => {
        text += d.toString();
        if (text.includes(': connected')) ok();
      }));
      const closed = new Promise<void>((ok) => res.socket.once('close', () => ok()));
      resolve({ connected, closed });
    });
    req.on('error', reject);
    req.end();
  });
}

test('a session made on one controller is taken by the other, survives a restart, and a logout on either ends it on both', { timeout: 60_000 }, async () => {
  const s = await login(c1, tokenFile(c1));
  assert.equal(s.who, 'token-file');
  const hosts = await call(c2, 'GET', '/v1/hosts', { cookie: cookieFor(c2, s.id) });
  assert.equal(hosts.status, 200, JSON.stringify(hosts.body));
  assert.deepEqual(hosts.body, { hosts: [] });
  const who = await call(c2, 'GET', '/v1/session', { cookie: cookieFor(c2, s.id) });
  assert.deepEqual([who.body.who, who.body.role, who.body.csrf], ['token-file', 'admin', s.csrf]);
  // a change on controller 2 needs the session's CSRF token, as on controller 1
  const bare = await call(c2, 'POST', '/v1/cluster/join-tokens', { cookie: cookieFor(c2, s.id) }, {});
  assert.equal(bare.status, 403);
  assert.equal(bare.body.error.code, 'CSRF_REFUSED');
  const made = await call(c2, 'POST', '/v1/cluster/join-tokens', { cookie: cookieFor(c2, s.id), 'x-corral-csrf': s.csrf }, {});
  assert.equal(made.status, 201, JSON.stringify(made.body));

  await c1.stop();
  await c1.start();
  assert.equal((await call(c1, 'GET', '/v1/hosts', { cookie: cookieFor(c1, s.id) })).status, 200, 'a restart logs no one out');

  const out = await call(c2, 'DELETE', '/v1/session', { cookie: cookieFor(c2, s.id), 'x-corral-csrf': s.csrf });
  assert.equal(out.status, 200);
  assert.deepEqual(out.body, { ended: true });
  assert.match(String(out.headers['set-cookie']), /^__Host-corral-session-\d+=; Path=\/; Max-Age=0;/);
  for (const c of [c1, c2]) {
    const r = await call(c, 'GET', '/v1/hosts', { cookie: cookieFor(c, s.id) });
    assert.equal(r.status, 401, `${c.url}: ${JSON.stringify(r.body)}`);
    assert.equal(r.body.error.code, 'UNAUTHORIZED');
    assert.match(r.body.error.message, /the browser session has ended \(logged out\)/);
  }
});

test('a revoked token\'s session is refused on both controllers, and what it held open is cut', { timeout: 60_000 }, async () => {
  const made = await c1.json(['token', 'create', 'web-ops', '--role', 'operator']);
  const s = await login(c2, made.token);
  assert.equal(s.who, 'web-ops');
  assert.equal((await call(c1, 'GET', '/v1/instances', { cookie: cookieFor(c1, s.id) })).status, 200);
  const stream = await eventStream(c1, s.id);
  await stream.connected;

  await c2.json(['token', 'revoke', 'web-ops']);
  const t0 = Date.now();
  const refused = async (c: Controller): Promise<void> => {
    const r = await call(c, 'GET', '/v1/instances', { cookie: cookieFor(c, s.id) });
    assert.equal(r.status, 401, `${c.url}: ${JSON.stringify(r.body)}`);
    assert.match(r.body.error.message, /the browser session has ended \(the bearer token was revoked at /);
  };
  await refused(c2);
  // controller 1 has had no request of the session since: its sweep (every 30 s) cuts the stream it holds
  await stream.closed;
  assert.ok(Date.now() - t0 < 35_000, `cut after ${Date.now() - t0} ms`);
  await refused(c1);
});
