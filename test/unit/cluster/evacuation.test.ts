/**
 * `corral host evacuate` on the controller (cluster/evacuation.ts) against stand-ins: the host goes into maintenance
 * before anything moves; running instances go through the Migrator, a few at a time; stopped ones on the shared pool
 * have their record moved; what cannot move is left with its code; the events say how many of each.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CorralError } from '../../../src/core/errors.js';
import { Evacuator, evacuateRequest, type EvacuationLine } from '../../../src/cluster/evacuation.js';
import type { HostRow } from '../../../src/cluster/cluster-store.js';
import type { NewEvent } from '../../../src/cluster/cluster-events.js';

const a1 = { name: 'a1', state: 'up', address: 'https://10.0.0.11:8444' } as HostRow;
const shared = { rootPool: 'shared', disks: [], nics: [], hostdevs: [] };
const local = { ...shared, rootPool: 'local' };

interface Guest { state: string; spec?: object; prepare?: CorralError; run?: CorralError; unreachable?: boolean }

function harness(guests: Record<string, Guest>, o: { host?: HostRow | null } = {}) {
  const calls: string[] = [];
  const events: NewEvent[] = [];
  let inFlight = 0;
  let maxInFlight = 0;
  const store = {
    getHost: async (name: string) => (o.host === undefined ? (name === 'a1' ? a1 : null) : o.host),
    setMaintenance: async (name: string, on: boolean) => { calls.push(`maintenance ${name} ${on}`); return { ...a1, maintenance: on, state: 'maintenance' } as HostRow; },
  };
  const instances = { list: async () => [...Object.keys(guests).map((name) => ({ name, host: 'a1' })), { name: 'elsewhere', host: 'a2' }] };
  const agents = {
    json: async (_h: HostRow, _m: string, path: string) => {
      const name = decodeURIComponent(path.split('/').pop()!);
      const g = guests[name]!;
      if (g.unreachable) throw new CorralError('HOST_UNAVAILABLE', 'host "a1" cannot be reached', { host: 'a1' });
      return { state: g.state, uuid: 'u', spec: g.spec ?? shared };
    },
  };
  const migrator = {
    prepare: async (name: string) => {
      calls.push(`prepare ${name}`);
      const g = guests[name]!;
      if (g.prepare) throw g.prepare;
      if (g.state !== 'running') throw new CorralError('NOT_MIGRATABLE', `instance "${name}" is ${g.state}: only a running instance is live-migrated`);
      return {} as never;
    },
    run: async (name: string, _r: unknown, _p: unknown, progress: (f: never) => void) => {
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      await new Promise((r) => setTimeout(r, 5));
      progress({ status: 'active' } as never);
      inFlight--;
      calls.push(`migrated ${name}`);
      if (guests[name]!.run) throw guests[name]!.run;
      return { instance: name, from: 'a1', to: 'a2', totalMs: 700, downtimeMs: 30 } as never;
    },
  };
  const cold = {
    move: async (name: string, from: HostRow) => { calls.push(`cold ${name} from ${from.name}`); return { instance: name, from: from.name, to: 'a3' }; },
  };
  const quiet = { info: () => undefined, warn: () => undefined };
  const e = new Evacuator({ store: store as never, instances: instances as never, agents: agents as never, events: { record: async (ev: NewEvent) => { events.push(ev); } }, migrator: migrator as never, cold, log: quiet });
  const lines: EvacuationLine[] = [];
  const run = async (parallel = 2) => e.evacuate(await e.begin('a1'), { parallel }, (l) => lines.push(l));
  return { calls, events, lines, run, e, maxInFlight: () => maxInFlight };
}

test('maintenance first; running ones live-migrated, stopped shared ones moved, the rest left with their codes; the events count them', async () => {
  const h = harness({
    r1: { state: 'running' },
    s1: { state: 'stopped' },
    c1: { state: 'crashed' },
    l1: { state: 'stopped', spec: local },
    p1: { state: 'paused' },
    full: { state: 'running', prepare: new CorralError('NO_HOST_FITS', 'no host can take 1 vCPU and 128 MiB: a2 lacks memory') },
    bad: { state: 'running', run: new CorralError('MIGRATION_FAILED', 'the migration of instance "bad" failed: it runs on host a1') },
    gone: { state: 'running', unreachable: true },
  });
  const r = await h.run();
  assert.equal(h.calls[0], 'maintenance a1 true', 'the host is in maintenance before anything moves');
  assert.deepEqual([r.host, r.maintenance, r.migrated, r.moved, r.left], ['a1', true, 1, 2, 5]);
  const by = Object.fromEntries(r.instances.map((i) => [i.instance, i]));
  assert.deepEqual(by.r1, { instance: 'r1', outcome: 'migrated', from: 'a1', to: 'a2', totalMs: 700, downtimeMs: 30 });
  assert.deepEqual(by.s1, { instance: 's1', outcome: 'moved', from: 'a1', to: 'a3' });
  assert.equal(by.c1!.outcome, 'moved', 'a crashed instance is not running either: its record moves');
  const code = (n: string): string => (by[n]!.outcome === 'left' ? (by[n] as { code: string }).code : by[n]!.outcome);
  assert.equal(code('l1'), 'NOT_MIGRATABLE');
  assert.match((by.l1 as { reason: string }).reason, /stopped and cannot move without its disks: root disk: on the host's local pool/);
  assert.equal(code('p1'), 'NOT_MIGRATABLE');
  assert.equal(code('full'), 'NO_HOST_FITS');
  assert.equal(code('bad'), 'MIGRATION_FAILED');
  assert.equal(code('gone'), 'HOST_UNAVAILABLE');
  assert.ok(!h.calls.includes('cold l1 from a1'), 'a local disk is never moved as a record');
  assert.ok(!r.instances.some((i) => i.instance === 'elsewhere'), 'only the host\'s own instances');
  // the events
  assert.deepEqual(h.events.map((e) => e.type), ['host.evacuating', 'host.evacuated']);
  assert.equal(h.events[0]!.data!.instances, 8);
  const end = h.events[1]!.data!;
  assert.deepEqual([end.migrated, end.moved, end.left], [1, 2, 5]);
  assert.deepEqual((end.leftBehind as Array<{ instance: string; code: string }>).map((x) => `${x.instance} ${x.code}`).sort(), ['bad MIGRATION_FAILED', 'full NO_HOST_FITS', 'gone HOST_UNAVAILABLE', 'l1 NOT_MIGRATABLE', 'p1 NOT_MIGRATABLE']);
  // the lines: first the count, then each instance's start and outcome, progress of live ones
  assert.deepEqual(h.lines[0], { type: 'evacuating', host: 'a1', instances: 8, parallel: 2 });
  assert.equal(h.lines.filter((l) => l.type === 'outcome').length, 8);
  assert.ok(h.lines.some((l) => l.type === 'start' && l.instance === 'r1' && l.how === 'live'));
  assert.ok(h.lines.some((l) => l.type === 'start' && l.instance === 's1' && l.how === 'stopped'));
  assert.ok(h.lines.some((l) => l.type === 'progress' && l.instance === 'r1'));
});

test('a few at a time: never more migrations at once than --parallel, and every one done', async () => {
  const guests = Object.fromEntries(Array.from({ length: 7 }, (_, k) => [`g${k}`, { state: 'running' }]));
  for (const n of [1, 3]) {
    const h = harness(guests);
    const r = await h.run(n);
    assert.equal(r.migrated, 7);
    assert.equal(h.maxInFlight(), n);
  }
});

test('an empty host: in maintenance, nothing to do, nothing left; an unknown host: HOST_NOT_FOUND and nothing changes', async () => {
  const h = harness({});
  const r = await h.run();
  assert.deepEqual([r.migrated, r.moved, r.left, r.instances], [0, 0, 0, []]);
  assert.deepEqual(h.calls, ['maintenance a1 true']);
  const none = harness({}, { host: null });
  await assert.rejects(none.e.begin('nope'), (e: CorralError) => e.code === 'HOST_NOT_FOUND');
  assert.deepEqual(none.calls, []);
});

test('the request: parallel from 1 to 16, default 2; anything else INVALID_SPEC naming the field', () => {
  assert.deepEqual(evacuateRequest(undefined), { parallel: 2 });
  assert.deepEqual(evacuateRequest({ parallel: 5 }), { parallel: 5 });
  for (const [b, field] of [[{ parallel: 0 }, 'parallel'], [{ parallel: 17 }, 'parallel'], [{ parallel: '2' }, 'parallel'], [{ parallel: 1.5 }, 'parallel'], [{ para: 1 }, 'para']] as const) {
    assert.throws(() => evacuateRequest(b), (e: CorralError) => e.code === 'INVALID_SPEC' && e.details.field === field);
  }
});
