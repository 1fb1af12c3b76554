import { test } from 'node:test';
import assert from 'node:assert/strict';
import { normalizeSpec, validateCreate, validateName } from '../../../src/core/spec.js';
import { applySpecChange } from '../../../src/core/spec-change.js';
import { checkMemoryLimit, qemuOverhead } from '../../../src/core/spec-compute.js';
import { parseSize, MiB, GiB } from '../../../src/core/units.js';
import { CorralError } from '../../../src/core/errors.js';

const host = { cpus: 4, memory: 8 * GiB, cpuList: [0, 1, 2, 3] };

function invalid(fn: () => unknown, field: string): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof CorralError, String(e));
    assert.equal(e.code, 'INVALID_SPEC');
    assert.equal(e.status, 400);
    assert.equal(e.details.field, field);
    return true;
  });
}

test('names must be DNS labels', () => {
  assert.equal(validateName('name', 'web-1'), 'web-1');
  for (const bad of ['a,b', 'a b', 'a/b', '..', 'a\nb', 'Web', '-a', 'a-', '', 'x'.repeat(64), 'a.b', 'é']) {
    invalid(() => validateName('name', bad), 'name');
  }
});

test('sizes parse with binary units and refuse nonsense', () => {
  assert.equal(parseSize('memory', '512M'), 512 * MiB);
  assert.equal(parseSize('memory', '1G'), GiB);
  assert.equal(parseSize('memory', '1.5GiB'), 1.5 * GiB);
  assert.equal(parseSize('memory', 1048576), MiB);
  for (const bad of ['-1G', '0', '0M', 'lots', '12Q', '', -5, 0, 1.5, null]) invalid(() => parseSize('memory', bad), 'memory');
});

test('memory below 64 MiB, above the host, or not a size is refused', () => {
  invalid(() => validateCreate({ name: 'a', image: 'tiny', memory: '32M' }, host), 'memory');
  invalid(() => validateCreate({ name: 'a', image: 'tiny', memory: '64G' }, host), 'memory');
  invalid(() => validateCreate({ name: 'a', image: 'tiny', memory: 'big' }, host), 'memory');
  invalid(() => validateCreate({ name: 'a', image: 'tiny', memory: '-256M' }, host), 'memory');
});

test('cpus must be a positive integer within the host', () => {
  invalid(() => validateCreate({ name: 'a', image: 'tiny', cpus: 0 }, host), 'cpus');
  invalid(() => validateCreate({ name: 'a', image: 'tiny', cpus: 5 }, host), 'cpus');
  invalid(() => validateCreate({ name: 'a', image: 'tiny', cpus: 1.5 }, host), 'cpus');
});

test('defaults: 1 vCPU, 256 MiB, BIOS, user network, automatic accelerator', () => {
  const { name, spec } = validateCreate({ name: 'vm1', image: 'tiny' }, host);
  assert.equal(name, 'vm1');
  assert.deepEqual(spec, {
    image: 'tiny', cpus: 1, memory: 256 * MiB, disk: null, firmware: 'bios', accel: 'auto',
    topology: { sockets: 1, cores: 1, threads: 1 }, maxCpus: 1, cpuModel: 'auto', pin: null, cpuWeight: null, cpuLimit: null,
    maxMemory: null, memoryLimit: null, prealloc: false, hugepages: null, balloon: true, disks: [], rootBus: 'virtio-blk', nics: [], hostdevs: [], agent: true,
  });
});

test('the guest agent channel: on by default, off with agent: false, kept by a change, and read as on from a spec stored before it', () => {
  assert.equal(validateCreate({ name: 'a', image: 'tiny', agent: false }, host).spec.agent, false);
  invalid(() => validateCreate({ name: 'a', image: 'tiny', agent: 'no' as unknown as boolean }, host), 'agent');
  const off = validateCreate({ name: 'a', image: 'tiny', agent: false }, host).spec;
  assert.equal(applySpecChange(off, { cpus: 2 }, host).agent, false);
  assert.equal(applySpecChange(off, { agent: true }, host).agent, true);
  const { agent: _agent, ...before } = validateCreate({ name: 'a', image: 'tiny' }, host).spec;
  assert.equal(normalizeSpec(before).agent, true);
  assert.equal(normalizeSpec({ ...before, agent: false }).agent, false);
});

test('the display: none by default and stored as no field (as every record made before it); vnc kept, changed and cleared by set', () => {
  assert.equal('display' in validateCreate({ name: 'a', image: 'tiny' }, host).spec, false);
  assert.equal('display' in validateCreate({ name: 'a', image: 'tiny', display: 'none' }, host).spec, false);
  const vnc = validateCreate({ name: 'a', image: 'tiny', display: 'vnc' }, host).spec;
  assert.equal(vnc.display, 'vnc');
  invalid(() => validateCreate({ name: 'a', image: 'tiny', display: 'sdl' as never }, host), 'display');
  invalid(() => validateCreate({ name: 'a', image: 'tiny', display: true as never }, host), 'display');
  assert.equal(applySpecChange(vnc, { cpus: 2 }, host).display, 'vnc', 'another change keeps the display');
  assert.equal('display' in applySpecChange(vnc, { display: null }, host), false, 'null (set display=none) takes it away');
  assert.equal('display' in applySpecChange(vnc, { display: 'none' }, host), false);
  const none = validateCreate({ name: 'a', image: 'tiny' }, host).spec;
  assert.equal(applySpecChange(none, { display: 'vnc' }, host).display, 'vnc');
  assert.equal('display' in normalizeSpec(none), false, 'a stored spec without the field reads as no display');
});

test('topology must multiply out to the vCPUs (or to maxCpus)', () => {
  const ok = validateCreate({ name: 'a', image: 'tiny', cpus: 4, sockets: 2, cores: 2, threads: 1 }, host).spec;
  assert.deepEqual(ok.topology, { sockets: 2, cores: 2, threads: 1 });
  invalid(() => validateCreate({ name: 'a', image: 'tiny', cpus: 4, sockets: 2, cores: 3 }, host), 'sockets');
  invalid(() => validateCreate({ name: 'a', image: 'tiny', cpus: 3, sockets: 2 }, host), 'sockets');
  const hot = validateCreate({ name: 'a', image: 'tiny', cpus: 1, maxCpus: 4 }, host).spec;
  assert.deepEqual([hot.maxCpus, hot.topology.cores], [4, 4]);
  invalid(() => validateCreate({ name: 'a', image: 'tiny', cpus: 2, maxCpus: 1 }, host), 'maxCpus');
});

test('pin lists must name CPUs the host has', () => {
  assert.deepEqual(validateCreate({ name: 'a', image: 'tiny', cpus: 2, pin: '2-3' }, host).spec.pin, [2, 3]);
  invalid(() => validateCreate({ name: 'a', image: 'tiny', cpus: 1, pin: '7' }, host), 'pin');
  invalid(() => validateCreate({ name: 'a', image: 'tiny', cpus: 1, pin: 'x-y' }, host), 'pin');
  invalid(() => validateCreate({ name: 'a', image: 'tiny', cpus: 1, pin: '1,1' }, host), 'pin');
  // found by fuzzing: these were expanded CPU by CPU (past 2^53 forever) until the daemon ran out of memory
  invalid(() => validateCreate({ name: 'a', image: 'tiny', cpus: 1, pin: '9007199254740993' }, host), 'pin');
  invalid(() => validateCreate({ name: 'a', image: 'tiny', cpus: 1, pin: '0-4294967296' }, host), 'pin');
});

test('memory hotplug, limits, hugepages and CPU caps are checked', () => {
  const s = validateCreate({ name: 'a', image: 'tiny', memory: '512M', maxMemory: '1G', memoryLimit: '1536M', cpuLimit: 1.5, cpuWeight: 200 }, host).spec;
  assert.deepEqual([s.maxMemory, s.memoryLimit, s.cpuLimit, s.cpuWeight], [GiB, 1536 * MiB, 1.5, 200]);
  invalid(() => validateCreate({ name: 'a', image: 'tiny', memory: '512M', maxMemory: '256M' }, host), 'maxMemory');
  invalid(() => validateCreate({ name: 'a', image: 'tiny', memory: '512M', maxMemory: '513M' }, host), 'maxMemory');
  invalid(() => validateCreate({ name: 'a', image: 'tiny', memory: '512M', memoryLimit: '256M' }, host), 'memoryLimit');
  invalid(() => validateCreate({ name: 'a', image: 'tiny', memory: '101M', hugepages: '2M' }, host), 'memory');
  invalid(() => validateCreate({ name: 'a', image: 'tiny', hugepages: '4M' as '2M' }, host), 'hugepages');
  invalid(() => validateCreate({ name: 'a', image: 'tiny', cpuLimit: 0 }, host), 'cpuLimit');
  invalid(() => validateCreate({ name: 'a', image: 'tiny', cpuLimit: 9 }, host), 'cpuLimit');
  invalid(() => validateCreate({ name: 'a', image: 'tiny', cpuWeight: 0 }, host), 'cpuWeight');
  invalid(() => validateCreate({ name: 'a', image: 'tiny', cpuModel: 'a,b' }, host), 'cpuModel');
});

test('a memory limit must hold the guest (maxMemory if set) plus QEMU overhead under its accelerator', () => {
  const base = { memory: 256 * MiB, maxMemory: null, maxCpus: 1 };
  assert.equal(qemuOverhead('tcg', 1), 296 * MiB);
  assert.equal(qemuOverhead('kvm', 4), 128 * MiB);
  checkMemoryLimit({ ...base, memoryLimit: null }, 'tcg');
  checkMemoryLimit({ ...base, memoryLimit: 552 * MiB }, 'tcg');
  checkMemoryLimit({ ...base, memoryLimit: 360 * MiB }, 'kvm');
  invalid(() => checkMemoryLimit({ ...base, memoryLimit: 257 * MiB }, 'tcg'), 'memoryLimit');
  invalid(() => checkMemoryLimit({ ...base, memoryLimit: 551 * MiB }, 'tcg'), 'memoryLimit');
  invalid(() => checkMemoryLimit({ ...base, memoryLimit: 359 * MiB }, 'kvm'), 'memoryLimit');
  // virtio-mem can plug up to maxMemory: the limit must hold that
  invalid(() => checkMemoryLimit({ ...base, maxMemory: GiB, memoryLimit: 600 * MiB }, 'kvm'), 'memoryLimit');
  assert.throws(() => checkMemoryLimit({ ...base, memoryLimit: 257 * MiB }, 'tcg'), /257 MiB is too small: the guest's 256 MiB plus QEMU's own 296 MiB under TCG needs at least 552 MiB/);
});

test('rootBus vhost-user-blk is refused with the reason', () => {
  invalid(() => validateCreate({ name: 'a', image: 'tiny', rootBus: 'vhost-user-blk' }, host), 'rootBus');
  assert.equal(validateCreate({ name: 'a', image: 'tiny', rootBus: 'sata' }, host).spec.rootBus, 'sata');
});
