/**
 * Auto-rebalance on memory pressure (cluster/pressure-rebalance.ts): a host's memory.unrelieved event makes the
 * controller move one guest off it, not to another host under pressure, at most once per host per cooldown (the
 * claim, on a private PostgreSQL: of claims racing, one wins), with events saying what came of it.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { claimPressureMove, PressureRebalancer } from '../../../src/cluster/pressure-rebalance.js';
import type { MoveOutcome, Skipped } from '../../../src/cluster/rebalance.js';
import type { NewEvent } from '../../../src/cluster/cluster-events.js';
import { openClusterDb, type ClusterDb } from '../../../src/cluster/db.js';
import type { StoredEvent } from '../../../src/store/store.js';
import { startPostgres, type TestPostgres } from '../postgres.js';

let server: TestPostgres;
let db: ClusterDb;

before(async () => {
  server = await startPostgres();
  db = await openClusterDb(server.url);
});
after(async () => {
  await db?.close();
  await server?.stop();
});

function harness(o: { claims?: boolean[]; move?: MoveOutcome | null; skipped?: Skipped[] } = {}) {
  let listener: ((ev: StoredEvent) => void) | null = null;
  const relieved: Array<{ host: string; avoid: string[] }> = [];
  const events: NewEvent[] = [];
  const claims = [...(o.claims ?? [true, true, true])];
  let release: (() => void) | null = null;
  let clock = 1_000_000;
  const p = new PressureRebalancer({
    feed: { subscribe: (fn) => { listener = fn; return () => { listener = null; }; } },
    claim: async () => claims.shift() ?? false,
    rebalancer: {
      relieve: async (host: string, avoid: ReadonlySet<string>, skipped: Skipped[] = []) => {
        relieved.push({ host, avoid: [...avoid].sort() });
        skipped.push(...(o.skipped ?? []));
        if (release === null) await new Promise<void>((r) => { release = r; setImmediate(r); });
        return o.move === undefined ? { instance: 'g1', from: host, to: 'a2', outcome: 'migrated', totalMs: 1, downtimeMs: 1 } as MoveOutcome : o.move;
      },
    },
    events: { record: async (e: NewEvent) => { events.push(e); } },
    log: { info: () => undefined, warn: () => undefined },
    cooldownMs: 60_000,
    now: () => clock,
  });
  return {
    p, relieved, events,
    emit: (type: string, host: string) => listener?.({ id: 1, time: '', type, instance: null, data: { host, short: 1024 } }),
    listening: () => listener !== null,
    tick: (ms: number) => { clock += ms; },
  };
}

test('memory.unrelieved from a host: one guest moves off it, not to a host that reported pressure lately; events say so', async () => {
  const h = harness();
  h.p.start();
  assert.ok(h.listening());
  await h.p.onPressure('a3');
  h.tick(1000);
  const r = await h.p.onPressure('a1', { short: 512 });
  assert.ok(typeof r === 'object' && r.move?.outcome === 'migrated');
  assert.deepEqual(h.relieved.at(-1), { host: 'a1', avoid: ['a3'] }, 'a3 reported pressure a second ago: nothing goes there');
  const done = h.events.at(-1)!;
  assert.equal(done.type, 'host.pressure-rebalanced');
  assert.equal(done.host, 'a1');
  assert.deepEqual([done.data!.moved, done.data!.instance, done.data!.to], [true, 'g1', 'a2']);
  // long after, a3 is no longer avoided
  h.tick(120_000);
  await h.p.onPressure('a1');
  assert.deepEqual(h.relieved.at(-1)!.avoid, []);
  h.p.stop();
  assert.ok(!h.listening());
});

test('other events are not pressure; the cooldown claim refused: nothing moves', async () => {
  const h = harness({ claims: [false] });
  h.p.start();
  h.emit('memory.pressure', 'a1');
  h.emit('host.maintenance', 'a1');
  assert.deepEqual(h.relieved, []);
  assert.equal(await h.p.onPressure('a1'), 'cooling down');
  assert.deepEqual(h.relieved, []);
  assert.deepEqual(h.events, []);
});

test('one move at a time per host: a report while it runs is busy', async () => {
  const h = harness();
  const first = h.p.onPressure('a1');
  assert.equal(await h.p.onPressure('a1'), 'busy');
  await first;
  assert.equal(h.relieved.length, 1);
});

test('no guest can move: recorded as such, with what was skipped', async () => {
  const h = harness({ move: null, skipped: [{ instance: 'p1', host: 'a1', code: 'NOT_MIGRATABLE', reason: 'PCI passthrough' }] });
  const r = await h.p.onPressure('a1');
  assert.ok(typeof r === 'object' && r.move === null);
  assert.deepEqual(h.events.at(-1)!.data, { moved: false, skipped: [{ instance: 'p1', code: 'NOT_MIGRATABLE' }], reason: 'no guest on it can move to another host now' });
});

test('the claim on PostgreSQL: once per host per cooldown, one winner among claims racing', async () => {
  const pool = db.pool;
  const results = await Promise.all(Array.from({ length: 6 }, () => claimPressureMove(pool, 'h1', 60_000, { reason: 'test' })));
  assert.equal(results.filter(Boolean).length, 1, 'one of the racing claims wins');
  assert.equal(await claimPressureMove(pool, 'h1', 60_000, {}), false, 'within the cooldown');
  assert.equal(await claimPressureMove(pool, 'h2', 60_000, {}), true, 'another host has its own');
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(await claimPressureMove(pool, 'h1', 10, {}), true, 'past a (short) cooldown');
  const n = (await pool.query("SELECT count(*)::int AS n FROM events WHERE type = 'host.pressure-rebalance'")).rows[0].n;
  assert.equal(n, 3);
});
