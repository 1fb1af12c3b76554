/** The web console's sessions in memory: made, used, ended by logout, idleness, age, a revoked token, or too many. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CorralError } from '../../../src/core/errors.js';
import { SessionStore } from '../../../src/services/sessions.js';

function clocked(opts: { idleMs?: number; maxAgeMs?: number; max?: number } = {}): { store: SessionStore; clock: { t: number } } {
  const clock = { t: Date.parse('2026-12-01T10:00:00Z') };
  return { store: new SessionStore({ now: () => clock.t, ...opts }), clock };
}

const ended = (fn: () => unknown, why: RegExp): void => {
  assert.throws(fn, (e: unknown) => e instanceof CorralError && e.code === 'UNAUTHORIZED' && why.test(e.message));
};

test('a session has a random id and CSRF token, says who and when it ends, and is used by its id', () => {
  const { store, clock } = clocked({ idleMs: 60_000, maxAgeMs: 600_000 });
  const a = store.create({ who: 'ci', role: 'operator' });
  const b = store.create({ who: 'ci', role: 'operator' });
  assert.match(a.id, /^[A-Za-z0-9_-]{43}$/);
  assert.notEqual(a.id, b.id);
  assert.notEqual(a.info.csrf, b.info.csrf);
  assert.notEqual(a.id, a.info.csrf);
  assert.equal(a.maxAgeS, 600);
  assert.deepEqual({ who: a.info.who, role: a.info.role }, { who: 'ci', role: 'operator' });
  assert.equal(a.info.expiresAt, '2026-12-01T10:01:00.000Z');
  clock.t += 30_000;
  assert.equal(store.use(a.id).expiresAt, '2026-12-01T10:01:30.000Z', 'each use moves the idle limit on');
  ended(() => store.use('not-a-session'), /logged out, expired, or the daemon restarted/);
  assert.equal(store.size, 2);
});

test('a session ends when idle too long, and at its longest life however busy', () => {
  const { store, clock } = clocked({ idleMs: 60_000, maxAgeMs: 150_000 });
  const idle = store.create({ who: 'a', role: 'viewer' });
  const busy = store.create({ who: 'b', role: 'viewer' });
  for (let i = 0; i < 2; i++) {
    clock.t += 50_000;
    store.use(busy.id);
  }
  ended(() => store.use(idle.id), /idle too long/);
  ended(() => store.use(idle.id), /\(idle too long\)/); // asked again, it still says why
  clock.t += 50_000;
  ended(() => store.use(busy.id), /longest life/);
  assert.equal(store.size, 0);
});

test('a session whose token was revoked (or expired) ends at its next use, or at the sweep, and says why', () => {
  const { store } = clocked();
  let revoked = false;
  const check = (): void => {
    if (revoked) throw new CorralError('UNAUTHORIZED', 'the bearer token was revoked at 2026-12-01T10:00:00.000Z; ask an admin for a new one');
  };
  const a = store.create({ who: 'ops', role: 'operator' }, { hash: null, check });
  const b = store.create({ who: 'ops', role: 'operator' }, { hash: null, check });
  const cut: string[] = [];
  store.onEnd(b.id, (why) => cut.push(why));
  store.use(a.id);
  revoked = true;
  ended(() => store.use(a.id), /^the browser session has ended \(the bearer token was revoked at 2026-12-01T10:00:00\.000Z\): log in again$/);
  ended(() => store.use(a.id), /\(the bearer token was revoked/); // and again, from another request
  assert.deepEqual(cut, []);
  assert.equal(store.sweep(), 1);
  assert.deepEqual(cut, ['the bearer token was revoked at 2026-12-01T10:00:00.000Z'], 'what b held open is cut');
});

test('logout ends a session and tells who holds its connections; a cancelled listener is not told', () => {
  const { store } = clocked();
  const s = store.create({ who: 'token-file', role: 'admin' });
  const told: string[] = [];
  store.onEnd(s.id, (why) => told.push(`1:${why}`));
  const off = store.onEnd(s.id, (why) => told.push(`2:${why}`));
  off();
  assert.equal(store.end(s.id), true);
  assert.deepEqual(told, ['1:logged out']);
  assert.equal(store.end(s.id), false);
  ended(() => store.use(s.id), /has ended \(logged out\)/);
  let late = '';
  store.onEnd(s.id, (why) => { late = why; });
  assert.equal(late, 'the session is gone', 'a listener for an ended session is told at once');
});

test('past the most sessions kept, a login ends the one idle the longest', () => {
  const { store, clock } = clocked({ max: 3 });
  const ids = [1, 2, 3].map((i) => {
    clock.t += 1000;
    return store.create({ who: `t${i}`, role: 'viewer' }).id;
  });
  clock.t += 1000;
  store.use(ids[0]!);
  store.create({ who: 't4', role: 'viewer' });
  assert.equal(store.size, 3);
  ended(() => store.use(ids[1]!), /has ended \(too many sessions: the one idle the longest was ended\)/);
  store.use(ids[0]!);
  store.use(ids[2]!);
});

test('stop ends every session', () => {
  const { store } = clocked();
  const s = store.create({ who: 'x', role: 'viewer' });
  let why = '';
  store.onEnd(s.id, (w) => { why = w; });
  store.start();
  store.stop();
  assert.equal(why, 'the daemon is stopping');
  assert.equal(store.size, 0);
});
