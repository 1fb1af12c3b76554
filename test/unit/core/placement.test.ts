import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Placer, place, placeMany } from '../../../src/core/placement.js';
import type { HostState, PlacementRequest, Policy } from '../../../src/core/placement.js';
import { CorralError } from '../../../src/core/errors.js';
import { GiB } from '../../../src/core/units.js';
import { rng } from '../rng.js';

function host(name: string, cpus: number, memGiB: number, extra: Partial<HostState> = {}): HostState {
  return { name, capacity: { cpus, memory: memGiB * GiB }, allocated: { cpus: 0, memory: 0 }, ...extra };
}

const req = (cpus: number, memGiB: number, labels?: Record<string, string>): PlacementRequest =>
  (labels ? { cpus, memory: memGiB * GiB, labels } : { cpus, memory: memGiB * GiB });

/** Both the reference and the Placer give this answer. */
function both(hosts: HostState[], r: PlacementRequest, policy: Policy): string | null {
  const a = place(hosts, r, policy);
  const b = new Placer(hosts, policy).place(r);
  assert.deepEqual(b, a);
  return a.host;
}

const hosts = [host('a', 16, 64), host('b', 32, 256), host('c', 8, 128)];

test('spread takes the host with the most free memory; pack the least that still fits', () => {
  assert.equal(both(hosts, req(4, 32), 'spread'), 'b');
  assert.equal(both(hosts, req(4, 32), 'pack'), 'a');
  assert.equal(both(hosts, req(4, 100), 'pack'), 'c');
  assert.equal(both(hosts, req(12, 100), 'pack'), 'b');
});

test('free is capacity less allocated', () => {
  const h = [host('a', 16, 64), { ...host('b', 32, 256), allocated: { cpus: 0, memory: 250 * GiB } }];
  assert.equal(both(h, req(1, 8), 'spread'), 'a');
  assert.equal(both(h, req(1, 4), 'pack'), 'b');
  assert.equal(both(h, req(1, 7), 'pack'), 'a');
});

test('ties: spread by most free CPUs then name; pack by least free CPUs then name', () => {
  const h = [host('d', 8, 64), host('b', 16, 64), host('c', 16, 64), host('a', 8, 64)];
  assert.equal(both(h, req(1, 1), 'spread'), 'b');
  assert.equal(both(h, req(1, 1), 'pack'), 'a');
  assert.equal(both(h, req(9, 1), 'pack'), 'b');
});

test('labels: every requested label must be on the host with the same value', () => {
  const h = [
    host('a', 16, 512, { labels: { zone: 'a' } }),
    host('b', 16, 128, { labels: { zone: 'b', disk: 'ssd' } }),
    host('c', 16, 256, { labels: { zone: 'b' } }),
  ];
  assert.equal(both(h, req(1, 1, { zone: 'b' }), 'spread'), 'c');
  assert.equal(both(h, req(1, 1, { zone: 'b', disk: 'ssd' }), 'spread'), 'b');
  assert.equal(both(h, req(1, 1, {}), 'spread'), 'a');
  const r = place(h, req(1, 1, { zone: 'c' }), 'spread');
  assert.deepEqual(r, { host: null, reason: 'no host fits 1 vCPU and 1 GiB with labels "zone=c": 3 hosts: 3 lack the labels' });
  assert.deepEqual(new Placer(h, 'pack').place(req(1, 1, { toString: 'x' })).host, null);
});

test('unschedulable hosts take nothing', () => {
  const h = [host('a', 16, 512, { schedulable: false }), host('b', 16, 64, { schedulable: true })];
  assert.equal(both(h, req(1, 1), 'spread'), 'b');
  assert.equal(both(h, req(1, 100), 'spread'), null);
  assert.match((place(h, req(1, 100), 'spread') as { reason: string }).reason, /2 hosts: 1 unschedulable, 1 lack memory$/);
});

test('one host; no hosts', () => {
  const one = [host('only', 4, 8)];
  assert.equal(both(one, req(4, 8), 'spread'), 'only');
  assert.equal(both(one, req(4, 8), 'pack'), 'only');
  assert.deepEqual(place(one, req(5, 9), 'pack'), { host: null, reason: 'no host fits 5 vCPUs and 9 GiB: 1 host: 1 lack memory and CPUs' });
  assert.deepEqual(place([], req(1, 1), 'pack'), { host: null, reason: 'no host fits 1 vCPU and 1 GiB: there are no hosts' });
  assert.deepEqual(new Placer([], 'spread').place(req(1, 1)).host, null);
});

test('the failure reason counts why each host does not fit', () => {
  const h: HostState[] = [];
  for (let i = 0; i < 10_000; i++) h.push(i < 9000 ? host(`h${i}`, 64, 16) : host(`h${i}`, 2, 512));
  const r = place(h, req(4, 32), 'spread');
  assert.deepEqual(r, { host: null, reason: 'no host fits 4 vCPUs and 32 GiB: 10000 hosts: 9000 lack memory, 1000 lack CPUs' });
  assert.deepEqual(new Placer(h, 'spread').place(req(4, 32)), r);
});

test('a Placer allocates each placement and release gives it back', () => {
  const p = new Placer([host('a', 4, 8), host('b', 4, 8)], 'spread');
  assert.deepEqual(['a', 'b', 'a', 'b'].map(() => p.place(req(2, 4)).host), ['a', 'b', 'a', 'b']);
  const full = p.place(req(1, 1));
  assert.equal(full.host, null);
  assert.match((full as { reason: string }).reason, /2 hosts: 2 lack memory and CPUs/);
  p.release('a', 2, 4 * GiB);
  assert.equal(p.place(req(2, 4)).host, 'a');
  assert.deepEqual(p.snapshot().map((s) => s.allocated), [{ cpus: 4, memory: 8 * GiB }, { cpus: 4, memory: 8 * GiB }]);
  assert.deepEqual(placeMany([host('x', 2, 2)], [req(1, 1), req(1, 1), req(1, 1)], 'pack').map((r) => r.host), ['x', 'x', null]);
});

test('bad input: duplicate host names, negative or NaN requests, unknown host on release', () => {
  const isSpec = (e: unknown): boolean => e instanceof CorralError && e.code === 'INVALID_SPEC';
  assert.throws(() => new Placer([host('a', 1, 1), host('a', 1, 1)], 'spread'), isSpec);
  assert.throws(() => place(hosts, { cpus: -1, memory: 1 }, 'spread'), isSpec);
  assert.throws(() => new Placer(hosts, 'pack').place({ cpus: 1, memory: Number.NaN }), isSpec);
  assert.throws(() => new Placer(hosts, 'pack').release('zz', 1, 1), isSpec);
  assert.throws(() => new Placer(hosts, 'pack').release('a', -1, 1), isSpec);
});

test('property: the Placer picks exactly the host the reference picks (1000 random cases)', () => {
  const zones = ['a', 'b', 'c'];
  for (let seed = 1; seed <= 1000; seed++) {
    const r = rng(seed);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
    const policy: Policy = seed % 2 ? 'spread' : 'pack';
    const n = seed % 50 === 0 ? 300 : 1 + Math.floor(r() * 40); // now and then a deeper tree
    const hs: HostState[] = [];
    for (let i = 0; i < n; i++) {
      // Few distinct sizes so that ties are common; names in random order.
      const h = host(`h${Math.floor(r() * 1e6)}-${i}`, pick([4, 8, 16]), pick([8, 16, 32]));
      h.allocated = { cpus: pick([0, 0, 2, 6]), memory: pick([0, 0, 4, 12]) * GiB };
      if (r() < 0.5) h.labels = r() < 0.7 ? { zone: pick(zones) } : { zone: pick(zones), disk: 'ssd' };
      if (r() < 0.1) h.schedulable = false;
      hs.push(h);
    }
    const fast = new Placer(hs, policy);
    const ref = hs.map((h) => ({ ...h, allocated: { ...h.allocated } }));
    for (let k = 0; k < 60; k++) {
      const rq = req(pick([1, 2, 4, 8]), pick([1, 2, 4, 8, 16]), r() < 0.3 ? { zone: pick(zones) } : undefined);
      const want = place(ref, rq, policy);
      const got = fast.place(rq);
      assert.deepEqual(got, want, `seed ${seed} request ${k}`);
      if (want.host !== null) {
        const h = ref.find((x) => x.name === want.host)!;
        h.allocated.cpus += rq.cpus;
        h.allocated.memory += rq.memory;
      } else if (r() < 0.5) {
        // Free something at random to exercise release.
        const h = pick(ref);
        const c = Math.min(h.allocated.cpus, 2), m = Math.min(h.allocated.memory, 4 * GiB);
        h.allocated.cpus -= c;
        h.allocated.memory -= m;
        fast.release(h.name, c, m);
      }
    }
    assert.deepEqual(fast.snapshot(), ref, `seed ${seed} final state`);
  }
});
