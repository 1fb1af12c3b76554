import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MiB, GiB } from '../../../src/core/units.js';
import { PressureController, planBalloons, pressureConfigFrom, type PressureVm } from '../../../src/services/pressure.js';

const cfg = { threshold: 2 * GiB, hysteresis: 256 * MiB, step: 128 * MiB, margin: 64 * MiB, floor: 64 * MiB };
const vm = (name: string, actual: number, available: number | null, used: number | null, ceiling = GiB): PressureVm => ({ name, actual, ceiling, available, used });

test('under pressure: take first from the guest with the most available memory, one step each', () => {
  const p = planBalloons(2 * GiB - 100 * MiB, cfg, [vm('a', GiB, 300 * MiB, 600 * MiB), vm('b', GiB, 800 * MiB, 150 * MiB)]);
  assert.equal(p.kind, 'inflate');
  assert.deepEqual(p.targets, [{ name: 'b', from: GiB, to: GiB - 100 * MiB }]);
  const big = planBalloons(GiB, cfg, [vm('a', GiB, 300 * MiB, 600 * MiB), vm('b', GiB, 800 * MiB, 150 * MiB)]);
  assert.deepEqual(big.targets, [{ name: 'b', from: GiB, to: GiB - 128 * MiB }, { name: 'a', from: GiB, to: GiB - 128 * MiB }]);
});

test('never below what the guest uses plus the margin; guests without statistics are left alone', () => {
  const p = planBalloons(GiB, cfg, [vm('a', 700 * MiB, 500 * MiB, 600 * MiB), vm('b', GiB, null, null)]);
  assert.deepEqual(p.targets, [{ name: 'a', from: 700 * MiB, to: 664 * MiB }]);
  assert.equal(planBalloons(GiB, cfg, [vm('a', 664 * MiB, 500 * MiB, 600 * MiB)]).kind, 'none');
  assert.equal(planBalloons(GiB, cfg, [vm('a', GiB, 40 * MiB, 100 * MiB)]).kind, 'none', 'available below the margin');
});

test('between the threshold and threshold + hysteresis nothing moves; above it balloons deflate back to their ceiling', () => {
  assert.equal(planBalloons(2 * GiB + 100 * MiB, cfg, [vm('a', 512 * MiB, 400 * MiB, 50 * MiB)]).kind, 'none');
  const p = planBalloons(8 * GiB, cfg, [vm('a', 512 * MiB, 400 * MiB, 50 * MiB), vm('b', 1000 * MiB, 400 * MiB, 50 * MiB), vm('c', GiB, 1, 1)]);
  assert.equal(p.kind, 'deflate');
  assert.deepEqual(p.targets, [{ name: 'a', from: 512 * MiB, to: 640 * MiB }, { name: 'b', from: 1000 * MiB, to: GiB }]);
  const tight = planBalloons(2 * GiB + 300 * MiB, cfg, [vm('a', 512 * MiB, 400 * MiB, 50 * MiB)]);
  assert.deepEqual(tight.targets, [{ name: 'a', from: 512 * MiB, to: 556 * MiB }], 'gives back no more than the room above the hysteresis');
});

test('configuration from the environment', () => {
  const d = pressureConfigFrom({}, 24 * GiB);
  assert.equal(d.interval, 5);
  assert.equal(d.threshold, Math.floor((24 * GiB) / 10 / MiB) * MiB);
  const e = pressureConfigFrom({ CORRAL_PRESSURE_INTERVAL: '1', CORRAL_PRESSURE_THRESHOLD: '100G', CORRAL_PRESSURE_STEP: '64M' }, 24 * GiB);
  assert.deepEqual([e.interval, e.threshold, e.step], [1, 100 * GiB, 64 * MiB]);
  assert.throws(() => pressureConfigFrom({ CORRAL_PRESSURE_INTERVAL: 'x' }, GiB), /CORRAL_PRESSURE_INTERVAL/);
  assert.throws(() => pressureConfigFrom({ CORRAL_PRESSURE_THRESHOLD: '1Q' }, GiB), /unit/);
});

test('the controller reads the injected host memory, moves balloons, publishes events, and cools down', async () => {
  const published: Array<{ type: string; instance: string | null; data: Record<string, unknown> }> = [];
  const moves: Array<[string, number]> = [];
  let available = GiB;
  const rows = [{ name: 'a', uuid: 'u-a', state: 'running' }] as never[];
  let actual = GiB;
  const c = new PressureController({ ...cfg, interval: 1, cooldownMs: 5000 }, {
    events: { publish: (type: string, instance: string | null, data: Record<string, unknown>) => { published.push({ type, instance, data }); } } as never,
    instances: () => rows,
    snapshot: async () => ({ name: 'a', uuid: 'u-a', actual, ceiling: GiB, available: 800 * MiB, used: 100 * MiB }),
    setBalloon: async (name, bytes) => { moves.push([name, bytes]); actual = bytes; },
    memInfo: () => ({ total: 24 * GiB, available }),
    log: { warn: () => {} },
  });
  const r1 = await c.tick(1_000_000);
  assert.equal(r1.kind, 'inflate');
  assert.deepEqual(moves, [['a', GiB - 128 * MiB]]);
  assert.equal(published[0]?.type, 'memory.pressure');
  assert.equal(published[0]?.instance, 'a');
  assert.equal(published[0]?.data.bytes, 128 * MiB);
  assert.equal((await c.tick(1_002_000)).kind, 'none', 'cooling down');
  available = 8 * GiB;
  const r3 = await c.tick(1_010_000);
  assert.equal(r3.kind, 'deflate');
  assert.deepEqual(moves.at(-1), ['a', GiB]);
  assert.equal(published.at(-1)?.type, 'memory.released');
});

test('ballooning not enough: rounds in a row below the threshold that take nothing say memory.unrelieved, once in a while', async () => {
  const published: Array<{ type: string; instance: string | null; data: Record<string, unknown> }> = [];
  let available = GiB;
  let guestAvailable = 800 * MiB;
  const c = new PressureController({ ...cfg, interval: 1, cooldownMs: 0, unrelievedRounds: 3, unrelievedEveryMs: 60_000 }, {
    events: { publish: (type: string, instance: string | null, data: Record<string, unknown>) => { published.push({ type, instance, data }); } } as never,
    instances: () => [{ name: 'a', uuid: 'u-a', state: 'running' }] as never[],
    snapshot: async () => ({ name: 'a', uuid: 'u-a', actual: GiB, ceiling: GiB, available: guestAvailable, used: 100 * MiB }),
    setBalloon: async () => undefined,
    memInfo: () => ({ total: 24 * GiB, available }),
    log: { warn: () => {} },
  });
  const unrelieved = (): typeof published => published.filter((p) => p.type === 'memory.unrelieved');
  // the balloon takes: pressure, but relieved as far as it goes
  for (let t = 0; t < 5; t++) await c.tick(1_000_000 + t * 1000);
  assert.deepEqual(unrelieved(), [], 'rounds that take something are not a shortfall');
  // the guest has nothing left to give: three rounds in a row take nothing
  guestAvailable = 10 * MiB;
  await c.tick(1_010_000);
  await c.tick(1_011_000);
  assert.deepEqual(unrelieved(), []);
  await c.tick(1_012_000);
  assert.equal(unrelieved().length, 1);
  assert.equal(unrelieved()[0]!.instance, null, 'the host\'s own event');
  assert.deepEqual([unrelieved()[0]!.data.hostAvailable, unrelieved()[0]!.data.threshold, unrelieved()[0]!.data.short], [GiB, 2 * GiB, GiB]);
  // not again within a minute, then again
  for (let t = 0; t < 10; t++) await c.tick(1_013_000 + t * 1000);
  assert.equal(unrelieved().length, 1);
  for (let t = 0; t < 3; t++) await c.tick(1_080_000 + t * 1000);
  assert.equal(unrelieved().length, 2);
  // above the threshold: nothing
  available = 3 * GiB;
  for (let t = 0; t < 5; t++) await c.tick(1_200_000 + t * 1000);
  assert.equal(unrelieved().length, 2);
});
