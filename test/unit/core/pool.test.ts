import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DEFAULT_POOL_CONFIG, admit, admitOrThrow, poolCapacity, poolView, validatePoolConfig } from '../../../src/core/pool.js';
import type { PoolConfig } from '../../../src/core/pool.js';
import { CorralError } from '../../../src/core/errors.js';
import { GiB, MiB } from '../../../src/core/units.js';

const host = { cpus: 8, memory: 16 * GiB };
const defaults: PoolConfig = { ...DEFAULT_POOL_CONFIG };

function invalid(fn: () => unknown, field: string, text?: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof CorralError, String(e));
    assert.equal(e.code, 'INVALID_SPEC');
    assert.equal(e.status, 400);
    assert.equal(e.details.field, field);
    if (text) assert.match(e.message, text);
    return true;
  });
}

test('defaults: 4 vCPUs a thread, memory 1:1, 512 MiB kept for the host', () => {
  assert.deepEqual(defaults, { cpuRatio: 4, memoryRatio: 1, reservedMemory: 512 * MiB });
  const v = poolView(host, defaults, []);
  assert.deepEqual(v.capacity, { cpus: 32, memory: 16 * GiB - 512 * MiB });
  assert.deepEqual(v.allocated, { cpus: 0, memory: 0, instances: 0 });
  assert.deepEqual(v.free, v.capacity);
  assert.deepEqual(v.ratios, { cpu: 4, memory: 1 });
  assert.equal(v.reservedMemory, 512 * MiB);
});

test('capacity applies the ratios, rounds down and takes the reserve off after the memory ratio', () => {
  assert.deepEqual(poolCapacity({ cpus: 3, memory: 1000 }, { cpuRatio: 1.5, memoryRatio: 1.5, reservedMemory: 100 }), { cpus: 4, memory: 1400 });
  assert.deepEqual(poolCapacity({ cpus: 1, memory: 3 }, { cpuRatio: 0.5, memoryRatio: 0.5, reservedMemory: 0 }), { cpus: 0, memory: 1 });
  // A reserve larger than the host leaves nothing, never a negative capacity.
  assert.deepEqual(poolCapacity({ cpus: 2, memory: 256 * MiB }, defaults), { cpus: 8, memory: 0 });
  assert.equal(poolView({ cpus: 2, memory: 256 * MiB }, defaults, []).free.memory, 0);
});

test('allocations add up; free is capacity less allocated', () => {
  const allocs = [
    { name: 'a', cpus: 4, memory: 2 * GiB },
    { name: 'b', cpus: 2, memory: 512 * MiB },
    { name: 'c', cpus: 1, memory: 256 * MiB },
  ];
  const v = poolView(host, defaults, allocs);
  assert.deepEqual(v.allocated, { cpus: 7, memory: 2 * GiB + 768 * MiB, instances: 3 });
  assert.deepEqual(v.free, { cpus: 25, memory: 16 * GiB - 512 * MiB - 2 * GiB - 768 * MiB });
});

test('overcommit: more vCPUs than threads fit under the CPU ratio; an overfull pool has nothing free', () => {
  const v = poolView({ cpus: 2, memory: 4 * GiB }, defaults, [{ name: 'big', cpus: 8, memory: GiB }]);
  assert.equal(v.capacity.cpus, 8);
  assert.equal(v.free.cpus, 0);
  assert.equal(admit(v, { cpus: 1, memory: MiB }).ok, false);
  // The ratio lowered after the fact: allocated exceeds capacity, free stays at zero.
  const lowered = poolView({ cpus: 2, memory: 4 * GiB }, { ...defaults, cpuRatio: 1 }, [{ name: 'big', cpus: 8, memory: GiB }]);
  assert.equal(lowered.allocated.cpus, 8);
  assert.equal(lowered.free.cpus, 0);
  // Memory overcommit 1.5x: 6 GiB of guest memory on a 4 GiB host (less the reserve).
  const mem = poolView({ cpus: 2, memory: 4 * GiB }, { ...defaults, memoryRatio: 1.5 }, []);
  assert.equal(mem.capacity.memory, 6 * GiB - 512 * MiB);
});

test('admit: a request that fits exactly is admitted', () => {
  const v = poolView(host, defaults, []);
  assert.deepEqual(admit(v, { cpus: 32, memory: v.free.memory }), { ok: true });
  assert.doesNotThrow(() => admitOrThrow(v, { cpus: 1, memory: GiB }));
});

test('admit: short memory says requested, free and short by, in binary units', () => {
  const v = poolView({ cpus: 4, memory: GiB }, defaults, []);
  const r = admit(v, { cpus: 1, memory: GiB });
  assert.equal(r.ok, false);
  if (r.ok) return;
  assert.deepEqual(r.short, [{ resource: 'memory', requested: GiB, free: 512 * MiB, shortBy: 512 * MiB }]);
  assert.equal(r.message, 'not enough memory in the pool: requested 1 GiB, free 512 MiB (short by 512 MiB)');
});

test('admit: short CPUs, and both at once', () => {
  const v = poolView({ cpus: 1, memory: 2 * GiB }, defaults, [{ name: 'a', cpus: 3, memory: GiB }]);
  const cpu = admit(v, { cpus: 2, memory: MiB });
  assert.ok(!cpu.ok);
  assert.deepEqual(cpu.short, [{ resource: 'cpus', requested: 2, free: 1, shortBy: 1 }]);
  assert.equal(cpu.message, 'not enough CPUs in the pool: requested 2 vCPUs, free 1 vCPU (short by 1 vCPU)');
  const both = admit(v, { cpus: 4, memory: 1536 * MiB });
  assert.ok(!both.ok);
  assert.deepEqual(both.short.map((s) => [s.resource, s.shortBy]), [['cpus', 3], ['memory', GiB]]);
  assert.match(both.message, /CPUs .*short by 3 vCPUs\); not enough memory .*requested 1\.5 GiB, free 512 MiB \(short by 1 GiB\)$/);
});

test('admitOrThrow: INSUFFICIENT_RESOURCES 409 carrying the shortfalls', () => {
  const v = poolView({ cpus: 1, memory: GiB }, defaults, []);
  assert.throws(() => admitOrThrow(v, { cpus: 1, memory: GiB }), (e: unknown) => {
    assert.ok(e instanceof CorralError);
    assert.equal(e.code, 'INSUFFICIENT_RESOURCES');
    assert.equal(e.status, 409);
    assert.match(e.message, /short by 512 MiB/);
    assert.deepEqual(e.toJSON().error.short, [{ resource: 'memory', requested: GiB, free: 512 * MiB, shortBy: 512 * MiB }]);
    return true;
  });
});

test('validatePoolConfig: missing fields take the defaults; sizes may be strings', () => {
  assert.deepEqual(validatePoolConfig(undefined), defaults);
  assert.deepEqual(validatePoolConfig(null), defaults);
  assert.deepEqual(validatePoolConfig({}), defaults);
  assert.deepEqual(validatePoolConfig({ cpuRatio: 1 }), { ...defaults, cpuRatio: 1 });
  assert.deepEqual(validatePoolConfig({ cpuRatio: 64, memoryRatio: 0.5, reservedMemory: '2G' }), { cpuRatio: 64, memoryRatio: 0.5, reservedMemory: 2 * GiB });
  assert.equal(validatePoolConfig({ reservedMemory: 0 }).reservedMemory, 0);
  assert.equal(validatePoolConfig({ reservedMemory: '0' }).reservedMemory, 0);
  assert.equal(validatePoolConfig({ reservedMemory: '0M' }).reservedMemory, 0);
  assert.equal(validatePoolConfig({ reservedMemory: 1048576 }).reservedMemory, MiB);
});

test('validatePoolConfig: bad ratios, reserves and fields are INVALID_SPEC naming the field', () => {
  for (const bad of [0, -1, 64.5, 1000, Number.NaN, Infinity, '4', null, true]) {
    invalid(() => validatePoolConfig({ cpuRatio: bad }), 'cpuRatio');
    invalid(() => validatePoolConfig({ memoryRatio: bad }), 'memoryRatio');
  }
  invalid(() => validatePoolConfig({ cpuRatio: 0 }), 'cpuRatio', /greater than 0/);
  invalid(() => validatePoolConfig({ memoryRatio: 65 }), 'memoryRatio', /at most 64/);
  for (const bad of [-1, 1.5, '-512M', 'lots', '0Q', true, {}, null]) invalid(() => validatePoolConfig({ reservedMemory: bad }), 'reservedMemory');
  invalid(() => validatePoolConfig({ cpuratio: 2 }), 'cpuratio', /unknown field/);
  invalid(() => validatePoolConfig([]), 'pool');
  invalid(() => validatePoolConfig('4'), 'pool');
  invalid(() => validatePoolConfig({ cpuRatio: -2 }, 'pool.'), 'pool.cpuRatio');
});
