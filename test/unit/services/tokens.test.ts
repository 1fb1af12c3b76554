/**
 * Named API tokens over the real SQLite store: the secret is shown once and only its SHA-256 reaches the database
 * file; a revoked or expired token is refused saying why; names are unique until revoked.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CorralError } from '../../../src/core/errors.js';
import { SqliteStore } from '../../../src/store/sqlite.js';
import { TokenService } from '../../../src/services/tokens.js';

interface Setup { dir: string; file: string; store: SqliteStore; svc: TokenService; clock: { now: Date } }

function setup(): Setup {
  const dir = mkdtempSync(join(tmpdir(), 'corral-tokens-'));
  const file = join(dir, 'corral.db');
  const store = new SqliteStore(file);
  const clock = { now: new Date('2026-11-30T13:00:00.000Z') };
  return { dir, file, store, svc: new TokenService(store, { now: () => clock.now }), clock };
}

function withSetup(fn: (s: Setup) => void | Promise<void>): () => Promise<void> {
  return async () => {
    const s = setup();
    try {
      await fn(s);
    } finally {
      s.store.close();
      rmSync(s.dir, { recursive: true, force: true });
    }
  };
}

function coded(fn: () => unknown, code: string, message: RegExp, details: Record<string, unknown> = {}): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof CorralError, String(e));
    assert.equal(e.code, code);
    assert.match(e.message, message);
    for (const [k, v] of Object.entries(details)) assert.deepEqual(e.details[k], v, k);
    return true;
  });
}

/** Every byte SQLite holds for the store: the database file and its write-ahead log. */
function dbBytes(file: string): string {
  return [file, `${file}-wal`].filter(existsSync).map((f) => readFileSync(f).toString('latin1')).join('');
}

test('create shows a corral_ secret once; the database holds its SHA-256 and never the secret', withSetup(({ file, store, svc }) => {
  const t = svc.create({ name: 'ci', role: 'operator' });
  assert.match(t.token, /^corral_[A-Za-z0-9_-]{43}$/);
  assert.deepEqual({ ...t, token: undefined }, {
    name: 'ci', role: 'operator', status: 'active', createdAt: '2026-11-30T13:00:00.000Z', expiresAt: null, lastUsedAt: null, revokedAt: null, token: undefined,
  });
  const hash = createHash('sha256').update(t.token).digest('hex');
  assert.equal(store.getToken('ci')?.hash, hash);
  const bytes = dbBytes(file);
  assert.ok(bytes.includes(hash), 'the hash is in the database');
  assert.ok(!bytes.includes(t.token), 'the secret is not');
  assert.ok(!bytes.includes(t.token.slice('corral_'.length)), 'nor its random part');
  // listed without secret or hash
  const listed = svc.list();
  assert.deepEqual(listed.map((x) => Object.keys(x).sort()), [['createdAt', 'expiresAt', 'lastUsedAt', 'name', 'revokedAt', 'role', 'status']]);
  assert.ok(!JSON.stringify(listed).includes(hash));
  // two tokens never share a secret
  assert.notEqual(svc.create({ name: 'ci2', role: 'viewer' }).token, t.token);
}));

test('authenticate: the secret names its token and role; anything else is UNAUTHORIZED without a name', withSetup(({ svc, clock }) => {
  const t = svc.create({ name: 'ci', role: 'viewer' });
  assert.deepEqual(svc.authenticate(t.token), { name: 'ci', role: 'viewer' });
  coded(() => svc.authenticate(`${t.token.slice(0, -1)}x`), 'UNAUTHORIZED', /^the bearer token is not valid: it is not a token this daemon issued$/);
  coded(() => svc.authenticate('x'.repeat(64)), 'UNAUTHORIZED', /not a token this daemon issued/);
  // last used: written at first use, then at most once a minute
  assert.equal(svc.list()[0]!.lastUsedAt, '2026-11-30T13:00:00.000Z');
  clock.now = new Date('2026-11-30T13:00:30.000Z');
  svc.authenticate(t.token);
  assert.equal(svc.list()[0]!.lastUsedAt, '2026-11-30T13:00:00.000Z');
  clock.now = new Date('2026-11-30T13:01:05.000Z');
  svc.authenticate(t.token);
  assert.equal(svc.list()[0]!.lastUsedAt, '2026-11-30T13:01:05.000Z');
}));

test('an expired token is refused saying when it expired; it is listed as expired', withSetup(({ svc, clock }) => {
  const t = svc.create({ name: 'temp', role: 'admin', expires: '12h' });
  assert.equal(t.expiresAt, '2026-12-01T01:00:00.000Z');
  clock.now = new Date('2026-12-01T00:59:59.000Z');
  assert.deepEqual(svc.authenticate(t.token), { name: 'temp', role: 'admin' });
  clock.now = new Date('2026-12-01T01:00:00.000Z');
  coded(() => svc.authenticate(t.token), 'UNAUTHORIZED', /^the bearer token expired at 2026-12-01T01:00:00\.000Z; ask an admin for a new one$/, { reason: 'expired' });
  assert.equal(svc.list()[0]!.status, 'expired');
  // its name stays taken until it is revoked
  coded(() => svc.create({ name: 'temp', role: 'viewer' }), 'ALREADY_EXISTS', /token "temp" already exists \(expired\); revoke it first/, { field: 'name' });
}));

test('a revoked token is refused saying when; revoking again changes nothing; its name can be used again', withSetup(({ svc, clock }) => {
  const t = svc.create({ name: 'ci', role: 'operator' });
  clock.now = new Date('2026-11-30T14:00:00.000Z');
  const r = svc.revoke('ci');
  assert.equal(r.status, 'revoked');
  assert.equal(r.revokedAt, '2026-11-30T14:00:00.000Z');
  coded(() => svc.authenticate(t.token), 'UNAUTHORIZED', /^the bearer token was revoked at 2026-11-30T14:00:00\.000Z/, { reason: 'revoked' });
  clock.now = new Date('2026-11-30T15:00:00.000Z');
  assert.equal(svc.revoke('ci').revokedAt, '2026-11-30T14:00:00.000Z');
  coded(() => svc.revoke('nope'), 'TOKEN_NOT_FOUND', /^no token named "nope"$/);
  const again = svc.create({ name: 'ci', role: 'viewer' });
  assert.equal(again.status, 'active');
  assert.deepEqual(svc.authenticate(again.token), { name: 'ci', role: 'viewer' });
  // the old secret is no token's now
  coded(() => svc.authenticate(t.token), 'UNAUTHORIZED', /not a token this daemon issued/);
}));

test('a taken name is ALREADY_EXISTS; a bad name, role or expiry is INVALID_SPEC on its field, and nothing is stored', withSetup(({ svc }) => {
  svc.create({ name: 'ci', role: 'operator' });
  coded(() => svc.create({ name: 'ci', role: 'admin' }), 'ALREADY_EXISTS', /^token "ci" already exists \(active\)/, { field: 'name' });
  coded(() => svc.create({ name: 'Bad Name', role: 'viewer' }), 'INVALID_SPEC', /^name: /, { field: 'name' });
  coded(() => svc.create({ name: 'x', role: 'root' }), 'INVALID_SPEC', /^role: "root" is not a role/, { field: 'role' });
  coded(() => svc.create({ name: 'x', role: 'viewer', expires: 'soon' }), 'INVALID_SPEC', /^expires: "soon" is neither/, { field: 'expires' });
  coded(() => svc.create({ name: 'x', role: 'viewer', expires: '2020-01-01' }), 'INVALID_SPEC', /not in the future/, { field: 'expires' });
  assert.deepEqual(svc.list().map((t) => t.name), ['ci']);
}));

test('tokens outlive the daemon: a new store on the same file knows them', withSetup(({ file, svc }) => {
  const t = svc.create({ name: 'ci', role: 'operator' });
  const other = new SqliteStore(file);
  try {
    assert.deepEqual(new TokenService(other).authenticate(t.token), { name: 'ci', role: 'operator' });
  } finally {
    other.close();
  }
}));
