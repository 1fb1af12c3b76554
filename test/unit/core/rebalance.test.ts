import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  DEFAULT_MAX_MOVES, dominantShare, formatShare, planRebalance, planRelief, spreadOf, type RebalanceHost, type RebalanceInstance,
} from '../../../src/core/rebalance.js';
import { CorralError } from '../../../src/core/errors.js';
import { GiB, MiB } from '../../../src/core/units.js';
import { rng } from '../rng.js';

function host(name: string, cpus: number, memGiB: number, extra: Partial<RebalanceHost> = {}): RebalanceHost {
  return { name, capacity: { cpus, memory: memGiB * GiB }, allocated: { cpus: 0, memory: 0 }, sharedPool: true, ...extra };
}

function vm(name: string, on: string, cpus: number, memMiB: number, extra: Partial<RebalanceInstance> = {}): RebalanceInstance {
  return { name, host: on, cpus, memory: memMiB * MiB, shared: true, movable: true, ...extra };
}

/** The hosts with each one's allocation summed from the instances on it. */
function withAllocations(hosts: RebalanceHost[], vms: RebalanceInstance[]): RebalanceHost[] {
  return hosts.map((h) => {
    const on = vms.filter((v) => v.host === h.name);
    return { ...h, allocated: { cpus: on.reduce((s, v) => s + v.cpus, 0), memory: on.reduce((s, v) => s + v.memory, 0) } };
  });
}

test('a host\'s load is its dominant share: the larger of its vCPU and memory allocation over capacity', () => {
  assert.equal(dominantShare({ capacity: { cpus: 8, memory: 16 * GiB }, allocated: { cpus: 2, memory: 8 * GiB } }), 0.5);
  assert.equal(dominantShare({ capacity: { cpus: 8, memory: 16 * GiB }, allocated: { cpus: 6, memory: 1 * GiB } }), 0.75);
  assert.equal(spreadOf([host('a', 8, 16, { allocated: { cpus: 4, memory: 0 } }), host('b', 8, 16)]), 0.5);
  assert.equal(spreadOf([host('a', 8, 16, { allocated: { cpus: 4, memory: 0 } })]), 0, 'one host is even');
  assert.equal(formatShare(0.375), '37.5%');
  assert.equal(formatShare(0), '0.0%');
});

test('three guests on one host and another empty: one moves, to the empty host, and a second would not help', () => {
  const vms = [vm('g1', 'a2', 1, 128), vm('g2', 'a2', 1, 64), vm('g3', 'a2', 1, 96)];
  const hosts = withAllocations([host('a1', 8, 23), host('a2', 8, 23)], vms);
  const p = planRebalance(hosts, vms);
  assert.equal(p.moves.length, 1);
  const m = p.moves[0]!;
  assert.deepEqual([m.from, m.to], ['a2', 'a1']);
  assert.equal(m.instance, 'g2', 'of equals, the smallest guest moves (the least to copy)');
  assert.deepEqual(m.capacity, { from: { cpus: 8, memory: 23 * GiB }, to: { cpus: 8, memory: 23 * GiB } });
  assert.deepEqual(m.before.from, { cpus: 3, memory: 288 * MiB, share: 3 / 8 });
  assert.deepEqual(m.before.to, { cpus: 0, memory: 0, share: 0 });
  assert.deepEqual(m.after.from, { cpus: 2, memory: 224 * MiB, share: 2 / 8 });
  assert.deepEqual(m.after.to, { cpus: 1, memory: 64 * MiB, share: 1 / 8 });
  assert.equal(m.spreadBefore, 3 / 8);
  assert.equal(m.spreadAfter, 1 / 8);
  assert.equal(p.spreadBefore, 3 / 8);
  assert.equal(p.spreadAfter, 1 / 8);
  // the plan's picture is the pool after the move
  assert.equal(p.instances.find((i) => i.name === 'g2')!.host, 'a1');
  assert.deepEqual(p.hosts.find((h) => h.name === 'a1')!.allocated, { cpus: 1, memory: 64 * MiB });
  // the inputs are untouched
  assert.equal(vms[1]!.host, 'a2');
  assert.deepEqual(hosts[0]!.allocated, { cpus: 0, memory: 0 });
});

test('never into a host that takes no part (maintenance, down), nor out of one', () => {
  const vms = [vm('g1', 'a2', 1, 64), vm('g2', 'a2', 1, 64), vm('g3', 'a2', 1, 64), vm('m1', 'a3', 2, 64)];
  const hosts = withAllocations([host('a1', 8, 16), host('a2', 8, 16), host('a3', 8, 16, { eligible: false })], vms);
  const p = planRebalance(hosts, vms, { maxMoves: 10 });
  assert.ok(p.moves.length >= 1);
  for (const m of p.moves) {
    assert.notEqual(m.to, 'a3');
    assert.notEqual(m.instance, 'm1', 'an instance of a host in maintenance is the evacuation\'s, not the rebalance\'s');
  }
  // a3's load does not count: a1 and a2 alone make the spread
  assert.equal(p.spreadBefore, 3 / 8);
});

test('never a move that makes things worse; an even pool moves nothing', () => {
  // 2 and 1 vCPUs: moving one guest either way only swaps the imbalance
  const vms = [vm('g1', 'a1', 1, 64), vm('g2', 'a1', 1, 64), vm('g3', 'a2', 1, 64)];
  const p = planRebalance(withAllocations([host('a1', 8, 16), host('a2', 8, 16)], vms), vms, { tolerance: 0 });
  assert.deepEqual(p.moves, []);
  assert.equal(p.even, false, 'not even, but nothing would make it more even');
  // within the tolerance: even, nothing moves
  const q = planRebalance(withAllocations([host('a1', 8, 16), host('a2', 8, 16)], vms), vms, { tolerance: 0.2 });
  assert.deepEqual(q.moves, []);
  assert.equal(q.even, true);
});

test('the limit on moves holds, and each move is strictly more even than the one before', () => {
  const vms = Array.from({ length: 12 }, (_, k) => vm(`g${k}`, 'a1', 1, 64));
  const hosts = withAllocations([host('a1', 16, 16), host('a2', 16, 16), host('a3', 16, 16), host('a4', 16, 16)], vms);
  assert.equal(planRebalance(hosts, vms).moves.length, DEFAULT_MAX_MOVES);
  const all = planRebalance(hosts, vms, { maxMoves: 100, tolerance: 0 });
  assert.equal(all.moves.length, 9, '12 guests over 4 hosts: 3 each');
  for (const m of all.moves) assert.ok(m.spreadAfter <= m.spreadBefore + 1e-12, JSON.stringify(m));
  assert.equal(all.spreadAfter, 0);
  for (const h of all.hosts) assert.equal(h.allocated.cpus, 3);
});

test('memory can be the dominant resource', () => {
  // CPUs are plenty; memory is what a1 is full of
  const vms = [vm('big', 'a1', 1, 5 * 1024), vm('mid', 'a1', 1, 2 * 1024), vm('small', 'a1', 1, 1024)];
  const p = planRebalance(withAllocations([host('a1', 64, 10), host('a2', 64, 10)], vms), vms);
  assert.equal(p.moves.length, 1);
  assert.equal(p.moves[0]!.instance, 'big', 'moving the big one evens memory most (8/10 and 0 -> 3/10 and 5/10)');
  assert.ok(Math.abs(p.spreadAfter - 0.2) < 1e-12, String(p.spreadAfter));
});

test('constraints: host labels, the shared pool, anti-affinity, room, and what is not movable', () => {
  const base = [host('a1', 8, 16), host('a2', 8, 16, { labels: { disk: 'ssd' } }), host('a3', 8, 16, { sharedPool: false })];
  // labels: only a2 carries disk=ssd; a3 mounts no shared pool
  let vms = [vm('l1', 'a1', 2, 64, { hostLabels: { disk: 'ssd' } }), vm('l2', 'a1', 2, 64, { hostLabels: { disk: 'ssd' } })];
  let p = planRebalance(withAllocations(base, vms), vms, { maxMoves: 5 });
  assert.deepEqual(p.moves.map((m) => m.to), ['a2']);
  // the shared pool: nothing goes to a3; a local-disk instance may go anywhere with room
  vms = [vm('s1', 'a1', 2, 64), vm('s2', 'a1', 2, 64), vm('s3', 'a1', 2, 64)];
  p = planRebalance(withAllocations(base, vms), vms, { maxMoves: 5 });
  assert.ok(p.moves.every((m) => m.to === 'a2'), JSON.stringify(p.moves));
  vms = [vm('x1', 'a1', 2, 64, { shared: false }), vm('x2', 'a1', 2, 64, { shared: false })];
  p = planRebalance(withAllocations([host('a1', 8, 16), host('a3', 8, 16, { sharedPool: false })], vms), vms);
  assert.deepEqual(p.moves.map((m) => m.to), ['a3']);
  // anti-affinity: a member never joins another member of its group
  vms = [vm('w1', 'a1', 2, 64, { group: 'web', antiAffinity: true }), vm('w2', 'a1', 2, 64, { group: 'web' }), vm('w3', 'a2', 1, 64, { group: 'web' })];
  p = planRebalance(withAllocations([host('a1', 8, 16), host('a2', 8, 16)], vms), vms, { maxMoves: 5, tolerance: 0 });
  assert.deepEqual(p.moves, [], 'a2 holds w3 already: the group is anti-affine as soon as one member says so');
  // room: a guest bigger than any free room stays
  vms = [vm('huge', 'a1', 6, 64), vm('tiny', 'a1', 1, 64)];
  p = planRebalance(withAllocations([host('a1', 8, 16), host('a2', 4, 16)], vms), vms);
  assert.deepEqual(p.moves.map((m) => m.instance), ['tiny']);
  // not movable, or excluded: stays
  vms = [vm('n1', 'a1', 2, 64, { movable: false }), vm('n2', 'a1', 2, 64)];
  p = planRebalance(withAllocations([host('a1', 8, 16), host('a2', 8, 16)], vms), vms, { exclude: new Set(['n2']) });
  assert.deepEqual(p.moves, []);
});

test('a host that reported no capacity takes no part', () => {
  const vms = [vm('g1', 'a1', 1, 64), vm('g2', 'a1', 1, 64)];
  const p = planRebalance(withAllocations([host('a1', 8, 16), host('a2', 0, 0)], vms), vms);
  assert.deepEqual(p.moves, []);
  assert.equal(p.spreadBefore, 0);
});

test('bad options are INVALID_SPEC naming the field', () => {
  for (const [o, field] of [[{ maxMoves: 0 }, 'maxMoves'], [{ maxMoves: 1.5 }, 'maxMoves'], [{ maxMoves: 101 }, 'maxMoves'], [{ tolerance: -1 }, 'tolerance'], [{ tolerance: Number.NaN }, 'tolerance']] as const) {
    assert.throws(() => planRebalance([], [], o), (e: CorralError) => e.code === 'INVALID_SPEC' && e.details.field === field);
  }
  assert.throws(() => planRebalance([host('a', 1, 1), host('a', 1, 1)], []), (e: CorralError) => e.code === 'INVALID_SPEC');
});

test('relief: a guest leaves the host under pressure even when the pool gets less even; the larger guest, not to a host to avoid', () => {
  // a1 is the emptier host by allocation, but its real memory is short
  const vms = [vm('p1', 'a1', 1, 256), vm('p2', 'a1', 1, 512), vm('o1', 'a2', 4, 64), vm('o2', 'a3', 4, 64)];
  const hosts = withAllocations([host('a1', 8, 16), host('a2', 8, 16), host('a3', 8, 16)], vms);
  const m = planRelief(hosts, vms, 'a1');
  assert.ok(m);
  assert.equal(m.from, 'a1');
  assert.equal(m.instance, 'p2', 'of guests whose moves are as even, the larger relieves more');
  assert.ok(m.spreadAfter > m.spreadBefore, 'made although the pool is less even');
  const avoid = planRelief(hosts, vms, 'a1', { avoid: new Set([m.to]) });
  assert.ok(avoid && avoid.to !== m.to);
  assert.equal(planRelief(hosts, vms, 'a1', { exclude: new Set(['p1', 'p2']) }), null, 'nothing movable');
  assert.equal(planRelief(hosts, vms, 'nowhere'), null);
  assert.equal(planRelief(withAllocations([host('a1', 8, 16), host('a2', 8, 16, { eligible: false })], vms), vms, 'a1'), null, 'nowhere to go');
});

/** The smallest spread one move can reach, by brute force: every movable instance to every host that could take it. */
function bestSpreadOfOneMove(hosts: RebalanceHost[], vms: RebalanceInstance[]): number | null {
  const part = (h: RebalanceHost): boolean => h.eligible !== false && h.capacity.cpus > 0 && h.capacity.memory > 0;
  const anti = new Set(vms.filter((v) => v.group && v.antiAffinity).map((v) => v.group));
  let best: number | null = null;
  for (const i of vms) {
    const from = hosts.find((h) => h.name === i.host)!;
    if (!i.movable || !part(from)) continue;
    for (const to of hosts) {
      if (to === from || !part(to) || (i.shared && !to.sharedPool)) continue;
      if (i.hostLabels && Object.entries(i.hostLabels).some(([k, v]) => to.labels?.[k] !== v)) continue;
      if (i.group && anti.has(i.group) && vms.some((o) => o !== i && o.group === i.group && o.host === to.name)) continue;
      if (to.capacity.cpus - to.allocated.cpus < i.cpus || to.capacity.memory - to.allocated.memory < i.memory) continue;
      const after = hosts.map((h) => (h === from ? { ...h, allocated: { cpus: h.allocated.cpus - i.cpus, memory: h.allocated.memory - i.memory } }
        : h === to ? { ...h, allocated: { cpus: h.allocated.cpus + i.cpus, memory: h.allocated.memory + i.memory } } : h));
      const sp = spreadOf(after);
      if (best === null || sp < best) best = sp;
    }
  }
  return best;
}

test('property: every plan respects capacity, takes each move only if it is strictly more even, and never exceeds the limit', () => {
  const r = rng(12);
  let moved = 0;
  for (let round = 0; round < 300; round++) {
    const nHosts = 2 + Math.floor(r() * 5);
    const hosts: RebalanceHost[] = Array.from({ length: nHosts }, (_, k) => host(`h${k}`, 4 + Math.floor(r() * 13), 4 + Math.floor(r() * 29), {
      eligible: r() > 0.15, sharedPool: r() > 0.1, ...(r() < 0.3 ? { labels: { zone: r() < 0.5 ? 'a' : 'b' } } : {}),
    }));
    const vms: RebalanceInstance[] = [];
    for (let k = 0; k < Math.floor(r() * 20); k++) {
      const on = hosts[Math.floor(r() * nHosts)]!;
      const cpus = 1 + Math.floor(r() * 3);
      const mem = 64 * (1 + Math.floor(r() * 32));
      const used = vms.filter((v) => v.host === on.name);
      if (used.reduce((s, v) => s + v.cpus, 0) + cpus > on.capacity.cpus || used.reduce((s, v) => s + v.memory, 0) + mem * MiB > on.capacity.memory) continue;
      vms.push(vm(`v${k}`, on.name, cpus, mem, {
        movable: r() > 0.2, shared: r() > 0.2, ...(r() < 0.2 ? { hostLabels: { zone: 'a' } } : {}), ...(r() < 0.3 ? { group: 'g', antiAffinity: r() < 0.5 } : {}),
      }));
    }
    const start = withAllocations(hosts, vms);
    const maxMoves = 1 + Math.floor(r() * 6);
    const p = planRebalance(start, vms, { maxMoves, tolerance: r() * 0.1 });
    moved += p.moves.length;
    assert.ok(p.moves.length <= maxMoves);
    assert.equal(new Set(p.moves.map((m) => m.instance)).size, p.moves.length, 'an instance moves at most once');
    // the first move reaches the smallest spread any one move can (when that is an improvement)
    const ref = bestSpreadOfOneMove(start, vms);
    if (p.moves.length > 0) assert.ok(Math.abs(p.moves[0]!.spreadAfter - ref!) < 1e-9, `first move spread ${p.moves[0]!.spreadAfter}, best possible ${ref}`);
    else if (ref !== null && p.spreadBefore > 0.1) assert.ok(ref >= p.spreadBefore - 1e-9, `no move proposed, but one reaches ${ref} from ${p.spreadBefore}`);
    let prev = p.spreadBefore;
    for (const m of p.moves) {
      assert.ok(m.spreadAfter <= prev + 1e-9, `move ${JSON.stringify(m)} after spread ${prev}`);
      prev = m.spreadAfter;
      const i = vms.find((v) => v.name === m.instance)!;
      assert.ok(i.movable, 'only movable instances move');
      const to = start.find((h) => h.name === m.to)!;
      assert.notEqual(to.eligible, false, 'never into a host that takes no part');
      if (i.shared) assert.ok(to.sharedPool, 'a shared-pool disk goes only to a host that mounts it');
      if (i.hostLabels) assert.equal(to.labels?.zone, 'a');
    }
    assert.ok(p.spreadAfter <= p.spreadBefore + 1e-9);
    for (const h of p.hosts) {
      assert.ok(h.allocated.cpus <= h.capacity.cpus && h.allocated.memory <= h.capacity.memory, `host ${h.name} over capacity`);
      const on = p.instances.filter((v) => v.host === h.name);
      assert.equal(h.allocated.cpus, on.reduce((s, v) => s + v.cpus, 0));
    }
    // replayed: a member of an anti-affine group never joins another member
    const anti = vms.some((v) => v.group === 'g' && v.antiAffinity);
    const where = new Map(vms.map((v) => [v.name, v.host]));
    for (const m of p.moves) {
      const i = vms.find((v) => v.name === m.instance)!;
      if (anti && i.group === 'g') assert.ok(!vms.some((o) => o !== i && o.group === 'g' && where.get(o.name) === m.to), `${i.name} joined its group on ${m.to}`);
      where.set(i.name, m.to);
    }
  }
  assert.ok(moved > 100, `the rounds moved ${moved} guests in all: too few to test anything`);
});
