/**
 * A migration destination's memory backing (core/migration-checks.ts) over made-up memory reports: hugepages of the
 * guest's size free there, a preallocated guest's memory available there, and the order of the checks (CPU first).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { destinationProblem, memoryBackingProblem, type MemoryReport } from '../../../src/core/migration-checks.js';
import { hugepageNeed } from '../../../src/core/spec-compute.js';
import type { CpuReport } from '../../../src/core/cpu-models.js';

const MiB = 1024 ** 2;
const GiB = 1024 * MiB;
const spec = { memory: GiB, maxMemory: null, hugepages: null, prealloc: false } as const;
const mem = (available: number, hugepages: MemoryReport['hugepages'] = []): MemoryReport => ({ available, hugepages });

test('a hugepage-backed guest needs its pages free in the destination\'s pool of that size', () => {
  const two = { ...spec, hugepages: '2M' as const };
  assert.deepEqual(hugepageNeed(two, [{ size: 2 * MiB, total: 1024, free: 600 }]), { need: 512, free: 600, total: 1024 });
  assert.deepEqual(hugepageNeed({ ...two, maxMemory: 2 * GiB }, []), { need: 1024, free: 0, total: null }, 'hotpluggable memory too');
  assert.equal(hugepageNeed(spec, []), null);

  assert.equal(memoryBackingProblem(two, mem(8 * GiB, [{ size: 2 * MiB, total: 1024, free: 512 }]), 'h2'), null);
  assert.equal(memoryBackingProblem(two, mem(8 * GiB, [{ size: 2 * MiB, total: 1024, free: 511 }]), 'h2'),
    'the guest\'s memory is backed by 2M hugepages: it needs 512, host h2 has 511 free of 1024');
  assert.match(memoryBackingProblem({ ...two, hugepages: '1G' }, mem(8 * GiB, [{ size: 2 * MiB, total: 1024, free: 1024 }]), 'h2')!, /needs 1, host h2 has 0 free \(no 1G hugepage pool\)/);
});

test('a preallocated guest needs its memory available on the destination; a host that reported nothing is left to its agent', () => {
  const pre = { ...spec, prealloc: true };
  assert.equal(memoryBackingProblem(pre, mem(2 * GiB), 'h2'), null);
  assert.match(memoryBackingProblem(pre, mem(512 * MiB), 'h2')!, /preallocated: its 1 GiB must be allocated at once on host h2, which has 512 MiB available/);
  assert.equal(memoryBackingProblem(spec, mem(1), 'h2'), null, 'memory allocated on demand: the pool\'s admission is enough');
  assert.equal(memoryBackingProblem(pre, null, 'h2'), null);
  // prealloc of hugepages: the pages are the check
  assert.equal(memoryBackingProblem({ ...pre, hugepages: '2M' }, mem(1, [{ size: 2 * MiB, total: 512, free: 512 }]), 'h2'), null);
});

test('the destination\'s problem: the CPU first (NOT_MIGRATABLE), then memory (INSUFFICIENT_RESOURCES)', () => {
  const cpu: CpuReport = { accel: 'kvm', qemuVersion: '7.2.22', models: ['Haswell-v4'], hostCpu: { vendor: 'GenuineIntel', model: 'Xeon', flags: [] } };
  const inst = { spec: { ...spec, prealloc: true, cpuModel: 'Haswell-v4' }, accel: 'kvm' as const };
  const src = { name: 'h1', cpu };
  assert.equal(destinationProblem(inst, src, { name: 'h2', cpu, memory: mem(2 * GiB) }), null);
  assert.deepEqual(destinationProblem(inst, src, { name: 'h2', cpu, memory: mem(MiB) })?.code, 'INSUFFICIENT_RESOURCES');
  const both = destinationProblem({ ...inst, spec: { ...inst.spec, cpuModel: 'Skylake-Server-v4' } }, src, { name: 'h2', cpu, memory: mem(MiB) });
  assert.equal(both?.code, 'NOT_MIGRATABLE');
  assert.equal(both?.kind, 'cpu');
  assert.match(both!.why, /host h2 cannot run the CPU model Skylake-Server-v4/);
});
