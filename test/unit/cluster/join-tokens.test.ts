/**
 * The cluster CA and join tokens in PostgreSQL: of controllers racing to make the CA exactly one does; a join
 * token works once (of 20 racing uses exactly one wins), is refused when used, expired (on the database's clock)
 * or given with a wrong secret, which does not tell that the token exists.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { isCorralError } from '../../../src/core/errors.js';
import { ClusterStore } from '../../../src/cluster/cluster-store.js';
import { openClusterDb, type ClusterDb } from '../../../src/cluster/db.js';
import { startPostgres, type TestPostgres } from '../postgres.js';

let server: TestPostgres;
let db: ClusterDb;
let store: ClusterStore;
before(async () => {
  server = await startPostgres();
  db = await openClusterDb(server.url, { maxConnections: 25 });
  store = new ClusterStore(db.pool);
});
after(async () => {
  await db?.close();
  await server?.stop();
});

const sha = (s: string): string => createHash('sha256').update(s).digest('hex');

test('controllers racing to make the cluster CA: exactly one makes it, and every one reads that one', async () => {
  assert.equal(await store.getCa(), null);
  const others = await Promise.all([1, 2, 3].map(() => openClusterDb(server.url)));
  try {
    const stores = [store, ...others.map((o) => new ClusterStore(o.pool))];
    const made = await Promise.all(stores.flatMap((s, i) => [0, 1, 2].map((j) => s.initCa({ certPem: `cert-${i}-${j}`, keyPem: `key-${i}-${j}` }))));
    assert.equal(made.filter(Boolean).length, 1);
    const ca = await store.getCa();
    const winner = made.indexOf(true);
    const [i, j] = [Math.floor(winner / 3), winner % 3];
    assert.deepEqual(ca, { certPem: `cert-${i}-${j}`, keyPem: `key-${i}-${j}` });
    for (const s of stores) assert.deepEqual(await s.getCa(), ca);
    assert.equal(await store.initCa({ certPem: 'late', keyPem: 'late' }), false);
    assert.deepEqual(await store.getCa(), ca);
  } finally {
    await Promise.all(others.map((o) => o.close()));
  }
});

test('a join token works once, for the host that used it; a second use is "used"', async () => {
  const { expiresAt } = await store.insertJoinToken({ id: 'tok1', secretHash: sha('s1'), ttlSeconds: 600 });
  const r = await db.pool.query<{ ttl: number; expires_at: Date }>(
    'SELECT extract(epoch FROM expires_at - created_at)::float8 AS ttl, expires_at FROM join_tokens WHERE id = $1', ['tok1']);
  assert.equal(r.rows[0]!.ttl, 600, 'expiry is now() + ttl on the database clock');
  assert.equal(r.rows[0]!.expires_at.toISOString(), expiresAt);

  assert.equal(await store.consumeJoinToken('tok1', sha('s1'), 'host-a'), 'ok');
  assert.equal(await store.consumeJoinToken('tok1', sha('s1'), 'host-b'), 'used');
  const row = await db.pool.query<{ used_by: string; used: boolean }>('SELECT used_by, used_at IS NOT NULL AS used FROM join_tokens WHERE id = $1', ['tok1']);
  assert.deepEqual(row.rows[0], { used_by: 'host-a', used: true });
});

test('a wrong secret is "unknown", as is an unknown id; the token still works with the right one', async () => {
  await store.insertJoinToken({ id: 'tok2', secretHash: sha('right'), ttlSeconds: 600 });
  assert.equal(await store.consumeJoinToken('tok2', sha('wrong'), 'host-a'), 'unknown');
  assert.equal(await store.consumeJoinToken('no-such-token', sha('right'), 'host-a'), 'unknown');
  assert.equal(await store.consumeJoinToken('tok2', sha('right'), 'host-a'), 'ok');
  // once used, a wrong secret still says nothing about it
  assert.equal(await store.consumeJoinToken('tok2', sha('wrong'), 'host-a'), 'unknown');
});

test('an expired token is "expired", by the database clock', async () => {
  await store.insertJoinToken({ id: 'tok3', secretHash: sha('s3'), ttlSeconds: 0 });
  assert.equal(await store.consumeJoinToken('tok3', sha('s3'), 'host-a'), 'expired');
  await store.insertJoinToken({ id: 'tok4', secretHash: sha('s4'), ttlSeconds: 3600 });
  await db.pool.query("UPDATE join_tokens SET expires_at = now() - interval '1 second' WHERE id = 'tok4'");
  assert.equal(await store.consumeJoinToken('tok4', sha('s4'), 'host-a'), 'expired');
  const row = await db.pool.query<{ used: boolean }>("SELECT bool_or(used_at IS NOT NULL) AS used FROM join_tokens WHERE id IN ('tok3', 'tok4')");
  assert.equal(row.rows[0]!.used, false);
});

test('20 concurrent uses of one token: exactly one is "ok", the others "used"', async () => {
  await store.insertJoinToken({ id: 'tok5', secretHash: sha('s5'), ttlSeconds: 600 });
  const results = await Promise.all(Array.from({ length: 20 }, (_, i) => store.consumeJoinToken('tok5', sha('s5'), `host-${i}`)));
  assert.equal(results.filter((r) => r === 'ok').length, 1);
  assert.equal(results.filter((r) => r === 'used').length, 19);
  const row = await db.pool.query<{ used_by: string }>("SELECT used_by FROM join_tokens WHERE id = 'tok5'");
  assert.equal(row.rows[0]!.used_by, `host-${results.indexOf('ok')}`);
});

test('a taken token id is ALREADY_EXISTS; a secret hash that is no SHA-256 hex is INVALID_SPEC', async () => {
  await store.insertJoinToken({ id: 'tok6', secretHash: sha('s6'), ttlSeconds: 600 });
  await assert.rejects(store.insertJoinToken({ id: 'tok6', secretHash: sha('other'), ttlSeconds: 600 }),
    (e: unknown) => isCorralError(e) && e.code === 'ALREADY_EXISTS' && e.status === 409 && e.message.includes('tok6'));
  await assert.rejects(store.insertJoinToken({ id: 'tok7', secretHash: 'plain-secret', ttlSeconds: 600 }),
    (e: unknown) => isCorralError(e) && e.code === 'INVALID_SPEC');
  assert.equal(await store.consumeJoinToken('tok6', sha('s6'), 'host-a'), 'ok', 'the first token is unchanged');
});

test('peeking at a token says what a use would say, and uses nothing', async () => {
  await store.insertJoinToken({ id: 'peek1', secretHash: sha('s6'), ttlSeconds: 600 });
  await store.insertJoinToken({ id: 'peek2', secretHash: sha('s7'), ttlSeconds: 0 });
  assert.equal(await store.peekJoinToken('peek1', sha('s6')), 'ok');
  assert.equal(await store.peekJoinToken('peek1', sha('s6')), 'ok', 'twice: still unused');
  assert.equal(await store.peekJoinToken('peek1', sha('wrong')), 'unknown');
  assert.equal(await store.peekJoinToken('peek2', sha('s7')), 'expired');
  assert.equal(await store.consumeJoinToken('peek1', sha('s6'), 'host-a'), 'ok');
  assert.equal(await store.peekJoinToken('peek1', sha('s6')), 'used');
});
