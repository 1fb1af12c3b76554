/**
 * A single daemon is no cluster: a request naming a target host (`corral --target`, x-corral-target) is refused with
 * NOT_A_CLUSTER on either listener, the service never asked, rather than answered for this host; on TCP a caller
 * without a valid token is told that first.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { authSetup, bearer } from './auth-setup.js';

test('a daemon refuses a target host with NOT_A_CLUSTER, after auth, and asks no service', async () => {
  const s = await authSetup();
  try {
    for (const [app, headers] of [[s.unix, {}], [s.tcp, bearer(s.secret.admin)]] as const) {
      for (const [method, url] of [['GET', '/v1/images'], ['GET', '/v1/instances'], ['POST', '/v1/volumes'], ['GET', '/v1/host']] as const) {
        s.calls.length = 0;
        const r = await app.inject({ method, url, headers: { ...headers, 'x-corral-target': 'a1' }, ...(method === 'POST' ? { payload: { name: 'v1', size: '64M' } } : {}) });
        assert.equal(r.statusCode, 400, `${method} ${url}`);
        const e = r.json().error;
        assert.deepEqual([e.code, e.target], ['NOT_A_CLUSTER', 'a1']);
        assert.match(e.message, /^this is a corral daemon, not a cluster controller: it serves its own host only, and no target host \("a1"\) can be named to it; drop --target/);
        assert.deepEqual(s.calls, []);
      }
    }
    const anon = await s.tcp.inject({ method: 'GET', url: '/v1/images', headers: { 'x-corral-target': 'a1' } });
    assert.equal(anon.json().error.code, 'UNAUTHORIZED');
    // without the header, as before
    assert.equal((await s.unix.inject({ method: 'GET', url: '/v1/images' })).statusCode, 200);
  } finally {
    await s.close();
  }
});
