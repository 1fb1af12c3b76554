import { test } from 'node:test';
import assert from 'node:assert/strict';
import { validateCreate, type InstanceSpec } from '../../../src/core/spec.js';
import { applySpecChange, changedFields } from '../../../src/core/spec-change.js';
import { CorralError } from '../../../src/core/errors.js';
import { GiB, MiB } from '../../../src/core/units.js';

const host = { cpus: 8, memory: 16 * GiB, cpuList: [0, 1, 2, 3, 4, 5, 6, 7] };
const stored = (req: Record<string, unknown> = {}): InstanceSpec => {
  const spec = validateCreate({ name: 'a', image: 'tiny', ...req }, host).spec;
  return { ...spec, disks: [{ volume: 'data1', bus: 'sata' }], nics: [{ id: 'net0', model: 'e1000', network: 'default', mac: '52:54:00:00:00:01', queues: 1 }] };
};
const invalid = (fn: () => unknown, field: string): void => {
  assert.throws(fn, (e: unknown) => e instanceof CorralError && e.code === 'INVALID_SPEC' && e.details.field === field);
};

test('a change is validated as a create is, and keeps disks, NICs and what it does not name', () => {
  const s = applySpecChange(stored({ cpus: 1, memory: '256M' }), { cpus: 4, memory: '1G', cpuWeight: 300 }, host);
  assert.equal(s.cpus, 4);
  assert.equal(s.memory, GiB);
  assert.deepEqual(s.topology, { sockets: 1, cores: 4, threads: 1 }, 'cores follow the vCPU count');
  assert.equal(s.maxCpus, 4);
  assert.equal(s.cpuWeight, 300);
  assert.deepEqual(s.disks, [{ volume: 'data1', bus: 'sata' }]);
  assert.equal(s.nics[0]?.model, 'e1000');
  assert.deepEqual(changedFields(stored({ cpus: 1, memory: '256M' }), s), ['cpus', 'memory', 'topology', 'maxCpus', 'cpuWeight']);
});

test('a change keeps the root disk\'s pool and HA (a shared-pool instance stays on the shared pool)', () => {
  const s = applySpecChange(stored({ pool: 'shared', ha: true }), { cpus: 2 }, host);
  assert.equal(s.rootPool, 'shared');
  assert.equal(s.ha, true);
  assert.deepEqual(changedFields(stored({ pool: 'shared', ha: true }), s), ['cpus', 'topology', 'maxCpus']);
  const local = applySpecChange(stored(), { cpus: 2 }, host);
  assert.equal(local.rootPool, undefined);
  assert.equal(local.ha, undefined);
});

test('hotplug room stays unless changed; null clears optional fields', () => {
  const base = stored({ cpus: 1, maxCpus: 4, pin: '0-1', memoryLimit: '2G', maxMemory: '1G' });
  const s = applySpecChange(base, { cpus: 2 }, host);
  assert.equal(s.maxCpus, 4);
  assert.equal(s.cpus, 2);
  const cleared = applySpecChange(base, { pin: null, memoryLimit: null, maxMemory: null }, host);
  assert.deepEqual([cleared.pin, cleared.memoryLimit, cleared.maxMemory], [null, null, null]);
  assert.equal(applySpecChange(base, { maxCpus: null, cpus: 3 }, host).maxCpus, 3);
  // grown to its maxCpus and back: the room is kept
  const full = applySpecChange(base, { cpus: 4 }, host);
  assert.deepEqual([full.cpus, full.maxCpus], [4, 4]);
  const back = applySpecChange(full, { cpus: 1 }, host);
  assert.deepEqual([back.cpus, back.maxCpus, back.topology.cores], [1, 4, 4]);
});

test('bad changes are refused with the field, as at create', () => {
  const base = stored({ memory: '512M', maxMemory: '1G' });
  invalid(() => applySpecChange(base, { memory: '2G' }, host), 'maxMemory');
  invalid(() => applySpecChange(base, { memory: '32M' }, host), 'memory');
  invalid(() => applySpecChange(base, { cpus: 99 }, host), 'cpus');
  invalid(() => applySpecChange(base, { memoryLimit: '256M' }, host), 'memoryLimit');
  invalid(() => applySpecChange(base, { pin: '9' }, host), 'pin');
  invalid(() => applySpecChange(base, { image: 'x' } as never, host), 'image');
  invalid(() => applySpecChange(base, {}, host), '');
  assert.equal(applySpecChange(base, { memory: 768 * MiB }, host).memory, 768 * MiB);
});
