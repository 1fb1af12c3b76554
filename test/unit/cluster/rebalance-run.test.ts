/**
 * `corral pool rebalance` on the controller (cluster/rebalance.ts) against stand-ins: the cluster's figures (up
 * hosts only, running shared-pool instances movable), a dry run that moves nothing, a run that moves through the
 * Migrator to the planned host and plans again from the figures after it, an instance its host says cannot move
 * skipped for the next best, a failed move reported and left out, the limit on moves.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CorralError } from '../../../src/core/errors.js';
import { poolFigures, rebalanceRequest, Rebalancer, type RebalanceLine } from '../../../src/cluster/rebalance.js';
import type { HostRow } from '../../../src/cluster/cluster-store.js';
import { MiB } from '../../../src/core/units.js';

interface Vm { name: string; host: string; cpus: number; memory: number; state: string; pool?: 'shared' | 'local'; migratingTo?: string | null; spec?: object }

function cluster(vms: Vm[], o: { maintenance?: string[]; failRun?: string[] } = {}) {
  const hostNames = ['a1', 'a2', 'a3'];
  const calls: string[] = [];
  const hostRow = (name: string): HostRow => {
    const on = vms.filter((v) => v.host === name);
    return {
      name, state: o.maintenance?.includes(name) ? 'maintenance' : 'up', labels: {}, sharedPool: '/shared', capacity: { cpus: 8, memory: 16384 * MiB },
      reserved: { cpus: on.reduce((s, v) => s + v.cpus, 0), memory: on.reduce((s, v) => s + v.memory, 0), instances: on.length },
    } as unknown as HostRow;
  };
  const store = { listHosts: async () => hostNames.map(hostRow), getHost: async (n: string) => (hostNames.includes(n) ? hostRow(n) : null) };
  const instances = {
    listWithStates: async () => vms.map((v) => ({
      name: v.name, host: v.host, cpus: v.cpus, memory: v.memory, group: null, antiAffinity: false, hostLabels: null, pool: v.pool ?? 'shared',
      state: v.state, migratingTo: v.migratingTo ?? null,
    })),
  };
  const agents = {
    json: async (h: HostRow, _m: string, path: string) => {
      const v = vms.find((x) => x.name === decodeURIComponent(path.split('/').pop()!))!;
      calls.push(`ask ${h.name} ${v.name}`);
      return { state: v.state, spec: v.spec ?? { rootPool: 'shared', disks: [], nics: [], hostdevs: [] } };
    },
  };
  const migrator = {
    prepare: async (name: string, req: { to?: string }) => { calls.push(`prepare ${name} to ${req.to}`); return { to: req.to } as never; },
    run: async (name: string, _r: unknown, p: { to: string }) => {
      if (o.failRun?.includes(name)) throw new CorralError('MIGRATION_FAILED', `the migration of instance "${name}" failed: it runs on host a1`);
      const v = vms.find((x) => x.name === name)!;
      calls.push(`migrated ${name} ${v.host}->${p.to}`);
      v.host = p.to;
      return { instance: name, from: 'a1', to: p.to, totalMs: 500, downtimeMs: 20 } as never;
    },
  };
  const r = new Rebalancer({ store: store as never, instances: instances as never, agents: agents as never, migrator: migrator as never, log: { info: () => undefined, warn: () => undefined } });
  const lines: RebalanceLine[] = [];
  return { r, calls, lines, vms, store, instances, emit: (l: RebalanceLine) => { lines.push(l); } };
}

const vm = (name: string, host: string, extra: Partial<Vm> = {}): Vm => ({ name, host, cpus: 1, memory: 128 * MiB, state: 'running', ...extra });

test('the figures: up hosts take part; running shared-pool instances with no migration under way are movable', async () => {
  const c = cluster([vm('r', 'a1'), vm('s', 'a1', { state: 'stopped' }), vm('l', 'a1', { pool: 'local' }), vm('m', 'a1', { migratingTo: 'a2' })], { maintenance: ['a3'] });
  const f = await poolFigures({ store: c.store as never, instances: c.instances as never });
  assert.deepEqual(f.hosts.map((h) => `${h.name} ${h.eligible} ${h.allocated.cpus}/${h.capacity.cpus}`), ['a1 true 4/8', 'a2 true 0/8', 'a3 false 0/8']);
  assert.deepEqual(f.instances.filter((i) => i.movable).map((i) => i.name), ['r']);
});

test('a dry run proposes one move from the loaded host to the empty one (not to the host in maintenance) and moves nothing', async () => {
  const c = cluster([vm('g1', 'a1'), vm('g2', 'a1'), vm('g3', 'a1')], { maintenance: ['a3'] });
  const res = await c.r.rebalance({ dryRun: true, maxMoves: 3 }, c.emit);
  assert.equal(res.moves.length, 1);
  const m = res.moves[0]!;
  assert.deepEqual([m.from, m.to, m.outcome], ['a1', 'a2', 'proposed']);
  assert.deepEqual([m.before.from.cpus, m.after.from.cpus, m.before.to.cpus, m.after.to.cpus], [3, 2, 0, 1]);
  assert.deepEqual([res.spreadBefore, res.spreadAfter, res.dryRun], [3 / 8, 1 / 8, true]);
  assert.ok(!c.calls.some((x) => x.startsWith('prepare') || x.startsWith('migrated')), 'nothing moved');
  assert.deepEqual(c.lines.map((l) => l.type), ['move']);
  assert.ok(c.vms.every((v) => v.host === 'a1'));
});

test('a run moves through the Migrator to the planned host, and plans the next from the figures after it', async () => {
  const c = cluster([vm('g1', 'a1'), vm('g2', 'a1'), vm('g3', 'a1'), vm('g4', 'a1')]);
  const res = await c.r.rebalance({ dryRun: false, maxMoves: 5 }, c.emit);
  // 4 guests over 3 hosts: 2, 1, 1
  assert.deepEqual(res.moves.map((m) => `${m.outcome} ${m.from}->${m.to}`), ['migrated a1->a2', 'migrated a1->a3']);
  assert.ok(c.calls.includes(`prepare ${res.moves[0]!.instance} to a2`), 'the Migrator is told the planned host');
  assert.deepEqual(c.vms.map((v) => v.host).sort(), ['a1', 'a1', 'a2', 'a3']);
  assert.equal(res.spreadAfter, 1 / 8);
  assert.deepEqual(c.lines.map((l) => l.type), ['move', 'outcome', 'move', 'outcome']);
});

test('an instance its host says cannot move is skipped with its code; the next best moves', async () => {
  const passthrough = { rootPool: 'shared', disks: [], nics: [], hostdevs: [{ id: 'hostdev0', address: '0000:01:00.0' }] };
  // g0 is the smallest (first choice) but has a passthrough device
  const c = cluster([vm('g0', 'a1', { memory: 64 * MiB, spec: passthrough }), vm('g1', 'a1'), vm('g2', 'a1')], { maintenance: ['a3'] });
  const res = await c.r.rebalance({ dryRun: false, maxMoves: 3 }, c.emit);
  assert.deepEqual(res.skipped.map((s) => `${s.instance} ${s.code}`), ['g0 NOT_MIGRATABLE']);
  assert.match(res.skipped[0]!.reason, /host device hostdev0 .*PCI passthrough/);
  assert.equal(res.moves.length, 1);
  assert.equal(res.moves[0]!.outcome, 'migrated');
  assert.notEqual(res.moves[0]!.instance, 'g0');
});

test('a failed move is reported with its code and its instance left out; the limit on moves counts it', async () => {
  const c = cluster(Array.from({ length: 6 }, (_, k) => vm(`g${k}`, 'a1')), { failRun: ['g0', 'g1', 'g2', 'g3', 'g4', 'g5'] });
  const res = await c.r.rebalance({ dryRun: false, maxMoves: 2 }, c.emit);
  assert.deepEqual(res.moves.map((m) => m.outcome), ['failed', 'failed']);
  assert.equal((res.moves[0] as { code: string }).code, 'MIGRATION_FAILED');
  assert.notEqual(res.moves[0]!.instance, res.moves[1]!.instance);
  assert.equal(res.spreadAfter, res.spreadBefore, 'nothing moved');
});

test('an even pool moves nothing', async () => {
  const c = cluster([vm('g1', 'a1'), vm('g2', 'a2'), vm('g3', 'a3')]);
  const res = await c.r.rebalance({ dryRun: false, maxMoves: 3 }, c.emit);
  assert.deepEqual([res.moves, res.even, res.spreadBefore], [[], true, 0]);
});

test('relief: a guest leaves the host under pressure, not to a host to avoid; null when none can', async () => {
  const c = cluster([vm('p1', 'a1', { memory: 512 * MiB }), vm('p2', 'a1'), vm('o1', 'a2', { cpus: 4 })]);
  const out = await c.r.relieve('a1', new Set(['a3']));
  assert.ok(out);
  assert.deepEqual([out.instance, out.from, out.to, out.outcome], ['p1', 'a1', 'a2', 'migrated']);
  const none = cluster([vm('s', 'a1', { state: 'stopped' })]);
  assert.equal(await none.r.relieve('a1', new Set()), null);
});

test('the request: dryRun and maxMoves (1 to 100, default 3); anything else INVALID_SPEC naming the field', () => {
  assert.deepEqual(rebalanceRequest(undefined), { dryRun: false, maxMoves: 3 });
  assert.deepEqual(rebalanceRequest({ dryRun: true, maxMoves: 7 }), { dryRun: true, maxMoves: 7 });
  for (const [b, field] of [[{ maxMoves: 0 }, 'maxMoves'], [{ maxMoves: 101 }, 'maxMoves'], [{ dryRun: 'yes' }, 'dryRun'], [{ max: 1 }, 'max']] as const) {
    assert.throws(() => rebalanceRequest(b), (e: CorralError) => e.code === 'INVALID_SPEC' && e.details.field === field);
  }
});
