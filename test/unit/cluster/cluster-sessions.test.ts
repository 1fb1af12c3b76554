/**
 * A cluster's web console sessions in PostgreSQL, as two controllers (two pools, two stores) see them: made on one,
 * taken by the other and by a restarted one; only the SHA-256 of the id and of the token are stored; a logout on
 * one ends it on both, and what the other holds open is cut at its sweep; a revoked or expired token's sessions are
 * refused on both at once; idle, too old and too many end sessions; the sweep deletes rows an hour after they ended.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { CorralError } from '../../../src/core/errors.js';
import { ClusterSessions } from '../../../src/cluster/cluster-sessions.js';
import { ClusterStore } from '../../../src/cluster/cluster-store.js';
import { ClusterTokens } from '../../../src/cluster/cluster-tokens.js';
import { openClusterDb, type ClusterDb } from '../../../src/cluster/db.js';
import type { SessionToken } from '../../../src/services/sessions.js';
import { startPostgres, type TestPostgres } from '../postgres.js';

let server: TestPostgres;
let dbs: ClusterDb[];
/** the session stores of two controllers */
let one: ClusterSessions;
let two: ClusterSessions;
let tokens: ClusterTokens;

const sha = (s: string): string => createHash('sha256').update(s).digest('hex');
const FILE_TOKEN = 'f'.repeat(64);
const fileToken: SessionToken = { hash: sha(FILE_TOKEN), check: () => undefined };
const admin = { who: 'token-file', role: 'admin' as const };

before(async () => {
  server = await startPostgres();
  dbs = [await openClusterDb(server.url), await openClusterDb(server.url)];
  [one, two] = dbs.map((d) => new ClusterSessions(d.pool)) as [ClusterSessions, ClusterSessions];
  tokens = new ClusterTokens(dbs[0]!.pool);
  await new ClusterStore(dbs[0]!.pool).registerApiToken('controller test', sha(FILE_TOKEN));
});
after(async () => {
  one?.stop();
  two?.stop();
  for (const d of dbs ?? []) await d.close();
  await server?.stop();
});

const sql = async (text: string, params: unknown[] = []): Promise<any[]> => (await dbs[0]!.pool.query(text, params)).rows;

async function ended(p: Promise<unknown>, why: RegExp): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof CorralError, String(e));
    assert.equal(e.code, 'UNAUTHORIZED');
    assert.match(e.message, why);
    return true;
  });
}

async function named(name: string, role: 'viewer' | 'operator' = 'viewer'): Promise<{ secret: string; token: SessionToken }> {
  const secret = (await tokens.create({ name, role }, null)).token;
  return { secret, token: { hash: sha(secret), check: () => undefined } };
}

test('a session made on one controller is taken by the other and by a restarted one; only hashes are stored', async () => {
  const v = await named('web-a');
  const s = await one.create({ who: 'web-a', role: 'viewer' }, v.token);
  assert.match(s.id, /^[A-Za-z0-9_-]{43}$/);
  assert.equal(s.maxAgeS, 12 * 3600);
  const life = Date.parse(s.info.expiresAt) - Date.parse(s.info.createdAt);
  assert.equal(life, 3600_000, 'it ends after an hour unused');
  const used = await two.use(s.id);
  assert.deepEqual([used.who, used.role, used.csrf], ['web-a', 'viewer', s.info.csrf]);

  const [row] = await sql('SELECT * FROM web_sessions');
  assert.equal(row.id_hash, sha(s.id));
  assert.equal(row.token_hash, sha(v.secret));
  assert.equal(row.csrf, s.info.csrf);
  assert.deepEqual([row.who, row.role, row.ended_at], ['web-a', 'viewer', null]);
  const stored = JSON.stringify(await sql('SELECT * FROM web_sessions'));
  assert.ok(!stored.includes(s.id) && !stored.includes(v.secret), 'neither the session id nor the token is in the table');

  // a controller's restart: a new store over a new pool takes it, and its stop ended nothing
  one.stop();
  const db3 = await openClusterDb(server.url);
  try {
    assert.equal((await new ClusterSessions(db3.pool).use(s.id)).who, 'web-a');
  } finally {
    await db3.close();
  }
  await ended(two.use('not-a-session'), /^the browser session has ended \(logged out or expired\): log in again$/);
});

test('a refused request (admit throws) does not use the session; a use writes the last use once a minute', async () => {
  const v = await named('web-b');
  const s = await one.create({ who: 'web-b', role: 'viewer' }, v.token);
  await sql(`UPDATE web_sessions SET last_seen = now() - interval '10 minutes', expires_at = now() + interval '50 minutes' WHERE id_hash = $1`, [sha(s.id)]);
  await assert.rejects(two.use(s.id, () => {
    throw new CorralError('CSRF_REFUSED', 'forged');
  }), /forged/);
  const [before] = await sql('SELECT last_seen, expires_at FROM web_sessions WHERE id_hash = $1', [sha(s.id)]);
  assert.ok(Date.now() - before.last_seen.getTime() > 9 * 60_000, 'a refused request is no use');
  const info = await two.use(s.id);
  const [after] = await sql('SELECT s.last_seen, s.expires_at, n.last_used_at FROM web_sessions s JOIN named_tokens n ON n.hash = s.token_hash WHERE s.id_hash = $1', [sha(s.id)]);
  assert.ok(Date.now() - after.last_seen.getTime() < 10_000, 'the use was written');
  assert.equal(info.expiresAt, after.expires_at.toISOString());
  assert.ok(after.expires_at.getTime() - after.last_seen.getTime() === 3600_000, 'the idle limit moved on');
  assert.ok(after.last_used_at !== null && Date.now() - after.last_used_at.getTime() < 10_000, 'the token\'s last use too');
  // within the minute, a use reads only
  await two.use(s.id);
  const [again] = await sql('SELECT last_seen FROM web_sessions WHERE id_hash = $1', [sha(s.id)]);
  assert.equal(again.last_seen.getTime(), after.last_seen.getTime());
});

test('logout on one controller ends the session on both: a listener here at once, there at its sweep', async () => {
  const s = await two.create(admin, fileToken);
  const here: string[] = [];
  const there: string[] = [];
  one.onEnd(s.id, (why) => there.push(why));
  two.onEnd(s.id, (why) => here.push(why));
  const off = two.onEnd(s.id, (why) => here.push(`cancelled: ${why}`));
  off();
  assert.equal(await two.end(s.id), true);
  assert.deepEqual(here, ['logged out']);
  assert.equal(await two.end(s.id), false, 'ended already');
  assert.deepEqual(there, [], 'not yet told');
  assert.equal(await one.sweep(), 1);
  assert.deepEqual(there, ['logged out']);
  assert.equal(await one.sweep(), 0, 'told once');
  await ended(one.use(s.id), /has ended \(logged out\)/);
  // a use that finds the session ended cuts what is held under it at once
  const s2 = await two.create(admin, fileToken);
  const held: string[] = [];
  one.onEnd(s2.id, (why) => held.push(why));
  await two.end(s2.id);
  await ended(one.use(s2.id), /logged out/);
  assert.deepEqual(held, ['logged out']);
});

test('a revoked or expired token\'s sessions are refused on both controllers at their next use, and cut at the sweep', async () => {
  const v = await named('web-c', 'operator');
  const a = await one.create({ who: 'web-c', role: 'operator' }, v.token);
  const b = await two.create({ who: 'web-c', role: 'operator' }, v.token);
  const cut: string[] = [];
  one.onEnd(b.id, (why) => cut.push(why));
  await one.use(a.id);
  const revoked = await tokens.revoke('web-c');
  const why = new RegExp(`^the browser session has ended \\(the bearer token was revoked at ${revoked.revokedAt!.replace(/\./g, '\\.')}\\): log in again$`);
  await ended(two.use(a.id), why);
  await ended(one.use(a.id), why);
  assert.equal(await one.sweep(), 1);
  assert.deepEqual(cut, [`the bearer token was revoked at ${revoked.revokedAt}`]);
  await ended(two.use(b.id), /revoked/);

  const e = await named('web-d');
  const s = await one.create({ who: 'web-d', role: 'viewer' }, e.token);
  await sql(`UPDATE named_tokens SET expires_at = now() - interval '1 second' WHERE name = 'web-d'`);
  await ended(two.use(s.id), /\(the bearer token expired at \d{4}-/);
  // the name given to another token (its hash changes): the old token's sessions are refused too
  const f = await named('web-e');
  const t = await one.create({ who: 'web-e', role: 'viewer' }, f.token);
  await sql(`UPDATE named_tokens SET hash = $1 WHERE name = 'web-e'`, [sha('another secret')]);
  await ended(two.use(t.id), /no longer one of the cluster's/);
});

test('a session ends idle too long and at its longest life; the sweep deletes rows an hour after they ended', async () => {
  const idle = await one.create(admin, fileToken);
  const old = await one.create(admin, fileToken);
  const gone = await one.create(admin, fileToken);
  await sql(`UPDATE web_sessions SET expires_at = now() - interval '1 second' WHERE id_hash = $1`, [sha(idle.id)]);
  await sql(`UPDATE web_sessions SET created_at = now() - interval '12 hours' WHERE id_hash = $1`, [sha(old.id)]);
  await ended(two.use(idle.id), /\(idle too long\)/);
  await ended(two.use(idle.id), /\(idle too long\)/); // asked again, it still says why
  await ended(two.use(old.id), /\(it reached its longest life\)/);
  await two.end(gone.id);
  await sql(`UPDATE web_sessions SET ended_at = now() - interval '61 minutes' WHERE id_hash = $1`, [sha(gone.id)]);
  const live = await one.create(admin, fileToken);
  await one.sweep();
  const left = (await sql('SELECT id_hash FROM web_sessions')).map((r) => r.id_hash);
  assert.ok(!left.includes(sha(gone.id)), 'a row ended over an hour ago is deleted');
  assert.ok(left.includes(sha(idle.id)) && left.includes(sha(live.id)), 'newer ones are kept');
  await ended(one.use(gone.id), /\(logged out or expired\)/);
});

test('past the most sessions kept, a login ends the one idle the longest, on every controller', async () => {
  await sql('DELETE FROM web_sessions');
  const capped = new ClusterSessions(dbs[0]!.pool, { max: 3 });
  const ids: string[] = [];
  for (let i = 0; i < 3; i++) {
    ids.push((await capped.create(admin, fileToken)).id);
    await sql(`UPDATE web_sessions SET last_seen = now() - $2 * interval '1 minute' WHERE id_hash = $1`, [sha(ids[i]!), 10 - i]);
  }
  await capped.create(admin, fileToken);
  await ended(two.use(ids[0]!), /has ended \(too many sessions: the one idle the longest was ended\)/);
  await two.use(ids[1]!);
  await two.use(ids[2]!);
});

test('a session needs the hash of its token', async () => {
  await assert.rejects(one.create(admin, { hash: null, check: () => undefined }), (e: unknown) => e instanceof CorralError && e.code === 'INTERNAL');
});
