/**
 * A cluster's named API tokens in PostgreSQL, as two controllers (two pools) see them: made on one, good on the
 * other; only the secret's SHA-256 is stored; an expired (on the database's clock) or revoked token is refused
 * saying so, everywhere at once; a revoked name can be reused, a live one not (of controllers racing for it, one
 * wins); a controller's own token file is an admin named "token-file"; the last use is written once a minute.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { isCorralError } from '../../../src/core/errors.js';
import { ClusterStore } from '../../../src/cluster/cluster-store.js';
import { ClusterTokens } from '../../../src/cluster/cluster-tokens.js';
import { openClusterDb, type ClusterDb } from '../../../src/cluster/db.js';
import { startPostgres, type TestPostgres } from '../postgres.js';

let server: TestPostgres;
let dbs: ClusterDb[];
/** the token services of two controllers */
let one: ClusterTokens;
let two: ClusterTokens;

before(async () => {
  server = await startPostgres();
  dbs = [await openClusterDb(server.url), await openClusterDb(server.url)];
  [one, two] = dbs.map((d) => new ClusterTokens(d.pool)) as [ClusterTokens, ClusterTokens];
});
after(async () => {
  for (const d of dbs ?? []) await d.close();
  await server?.stop();
});

const sql = async (text: string, params: unknown[] = []): Promise<any[]> => (await dbs[0]!.pool.query(text, params)).rows;

function refused(code: string, message: RegExp): (e: unknown) => boolean {
  return (e) => {
    assert.ok(isCorralError(e), String(e));
    assert.equal(e.code, code);
    assert.match(e.message, message);
    return true;
  };
}

test('a token made on one controller is good on the other, with its role; only its hash is stored', async () => {
  const t = await one.create({ name: 'ci', role: 'operator', expires: '30d' }, { who: 'token-file', role: 'admin' });
  assert.match(t.token, /^corral_[A-Za-z0-9_-]{43}$/);
  assert.equal(t.status, 'active');
  assert.equal(t.role, 'operator');
  const days = (Date.parse(t.expiresAt!) - Date.parse(t.createdAt)) / 86_400_000;
  assert.ok(Math.abs(days - 30) < 0.01, `expires 30 days after it was made: ${days}`);

  assert.deepEqual(await two.authenticate(t.token), { who: 'ci', role: 'operator' });
  assert.deepEqual((await two.list()).map((v) => [v.name, v.role, v.status]), [['ci', 'operator', 'active']]);

  const [row] = await sql('SELECT * FROM named_tokens WHERE name = $1', ['ci']);
  assert.equal(row.hash, createHash('sha256').update(t.token).digest('hex'));
  assert.equal(row.created_by, 'token-file');
  const stored = JSON.stringify(await sql('SELECT * FROM named_tokens'));
  assert.ok(!stored.includes(t.token) && !stored.includes(t.token.slice('corral_'.length)), 'the secret is nowhere in the table');
  assert.ok(!JSON.stringify(await two.list()).includes(row.hash), 'a list shows no hash');
});

test('an unknown secret, or none of ours, is UNAUTHORIZED; a controller\'s token file is an admin named token-file', async () => {
  await assert.rejects(one.authenticate('corral_nosuchsecretatall'), refused('UNAUTHORIZED', /not one of this cluster's/));
  await assert.rejects(one.authenticate('x'.repeat(64)), refused('UNAUTHORIZED', /not one of this cluster's/));
  const file = 'f'.repeat(64);
  await new ClusterStore(dbs[1]!.pool).registerApiToken('controller c2 127.0.0.1:1', createHash('sha256').update(file).digest('hex'));
  assert.deepEqual(await one.authenticate(file), { who: 'token-file', role: 'admin' });
  assert.ok(!(await one.list()).some((v) => v.name.startsWith('controller')), 'the controllers\' tokens are not listed');
  await assert.rejects(one.revoke('controller c2 127.0.0.1:1'), refused('TOKEN_NOT_FOUND', /no token named/));
});

test('an expired token is refused on every controller, on the database\'s clock, and listed as expired', async () => {
  const t = await one.create({ name: 'brief', role: 'viewer', expires: '90m' }, null);
  assert.deepEqual(await two.authenticate(t.token), { who: 'brief', role: 'viewer' });
  await sql("UPDATE named_tokens SET expires_at = now() - interval '1 second' WHERE name = 'brief'");
  for (const c of [one, two]) await assert.rejects(c.authenticate(t.token), refused('UNAUTHORIZED', /^the bearer token expired at \S+; ask an admin for a new one$/));
  assert.equal((await two.list()).find((v) => v.name === 'brief')?.status, 'expired');
  // an expired token still holds its name until it is revoked
  await assert.rejects(one.create({ name: 'brief', role: 'viewer' }, null), refused('ALREADY_EXISTS', /token "brief" already exists \(expired\); revoke it first/));
});

test('a revoke on one controller refuses the token on the other at its next request; the name can then be reused', async () => {
  const t = await one.create({ name: 'gone', role: 'admin' }, null);
  assert.deepEqual(await two.authenticate(t.token), { who: 'gone', role: 'admin' });
  const v = await one.revoke('gone');
  assert.equal(v.status, 'revoked');
  assert.ok(v.revokedAt);
  await assert.rejects(two.authenticate(t.token), refused('UNAUTHORIZED', new RegExp(`^the bearer token was revoked at ${v.revokedAt}; ask an admin for a new one$`)));
  // again: nothing changes
  assert.deepEqual(await two.revoke('gone'), v);
  await assert.rejects(one.revoke('nosuch'), refused('TOKEN_NOT_FOUND', /no token named "nosuch"/));

  const again = await two.create({ name: 'gone', role: 'viewer' }, { who: 'ci', role: 'admin' });
  assert.deepEqual(await one.authenticate(again.token), { who: 'gone', role: 'viewer' });
  await assert.rejects(one.authenticate(t.token), refused('UNAUTHORIZED', /not one of this cluster's/), 'the old secret is forgotten');
  const [row] = await sql("SELECT created_by, revoked_at, last_used_at FROM named_tokens WHERE name = 'gone'");
  assert.deepEqual([row.created_by, row.revoked_at], ['ci', null]);
});

test('of controllers racing to make the same name, one does; the others are told it exists', async () => {
  const made = await Promise.allSettled([one, two, one, two].map((c, i) => c.create({ name: 'race', role: 'viewer', expires: `${i + 1}h` }, null)));
  assert.equal(made.filter((m) => m.status === 'fulfilled').length, 1);
  for (const m of made) if (m.status === 'rejected') refused('ALREADY_EXISTS', /token "race" already exists \(active\)/)(m.reason);
  assert.equal((await sql("SELECT count(*)::int AS n FROM named_tokens WHERE name = 'race'"))[0].n, 1);
});

test('bad requests are INVALID_SPEC naming the field, and make nothing', async () => {
  const before = await sql('SELECT name FROM named_tokens ORDER BY name');
  await assert.rejects(one.create({ name: 'Bad_Name', role: 'viewer' }, null), (e: unknown) => isCorralError(e) && e.code === 'INVALID_SPEC' && e.details.field === 'name');
  await assert.rejects(one.create({ name: 'token-file', role: 'viewer' }, null), (e: unknown) => isCorralError(e) && e.code === 'INVALID_SPEC' && /reserved/.test(e.message));
  await assert.rejects(one.create({ name: 'ok', role: 'root' }, null), (e: unknown) => isCorralError(e) && e.code === 'INVALID_SPEC' && e.details.field === 'role');
  await assert.rejects(one.create({ name: 'ok', role: 'viewer', expires: '2001-01-01' }, null), (e: unknown) => isCorralError(e) && e.code === 'INVALID_SPEC' && e.details.field === 'expires');
  assert.deepEqual(await sql('SELECT name FROM named_tokens ORDER BY name'), before);
});

test('the last use is written, at most once a minute', async () => {
  const t = await one.create({ name: 'used', role: 'viewer' }, null);
  assert.equal((await one.list()).find((v) => v.name === 'used')?.lastUsedAt, null);
  await two.authenticate(t.token);
  const first = (await one.list()).find((v) => v.name === 'used')?.lastUsedAt;
  assert.ok(first);
  await two.authenticate(t.token);
  assert.equal((await one.list()).find((v) => v.name === 'used')?.lastUsedAt, first, 'not written again within the minute');
  await sql("UPDATE named_tokens SET last_used_at = now() - interval '2 minutes' WHERE name = 'used'");
  await one.authenticate(t.token);
  const later = (await one.list()).find((v) => v.name === 'used')!.lastUsedAt!;
  assert.ok(Date.parse(later) >= Date.parse(first!), `${later} after ${first}`);
});
