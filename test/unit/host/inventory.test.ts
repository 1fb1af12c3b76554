import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { readCpuInfo, readCpuTopology } from '../../../src/host/cpu.js';
import { readHostInventory } from '../../../src/host/inventory.js';
import { readHugepages, readKsm, readNumaNodes, readTransparentHugepages } from '../../../src/host/memory.js';
import { readCgroups } from '../../../src/host/cgroups.js';
import { FIXTURES } from '../fixtures.js';

const V1 = join(FIXTURES, 'host/v1-2socket');
const V2 = join(FIXTURES, 'host/v2-1socket');
const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

test('2-socket Intel host: topology, sockets x cores x threads, offline CPU left out', () => {
  const t = readCpuTopology(join(V1, 'sys'), join(V1, 'proc'));
  assert.equal(t.cpus.length, 8);
  assert.equal(t.sockets, 2);
  assert.equal(t.coresPerSocket, 2);
  assert.equal(t.threadsPerCore, 2);
  assert.deepEqual(t.cpus[0], { cpu: 0, socket: 0, core: 0, siblings: [0, 4] });
  assert.deepEqual(t.cpus[6], { cpu: 6, socket: 1, core: 0, siblings: [2, 6] });
  assert.ok(!t.cpus.some((c) => c.cpu === 8), 'cpu8 is not online');
});

test('2-socket Intel host: model, flags, vmx', () => {
  const c = readCpuInfo(join(V1, 'proc'));
  assert.equal(c.vendor, 'GenuineIntel');
  assert.equal(c.model, 'Intel(R) Xeon(R) Gold 6130 CPU @ 2.10GHz');
  assert.equal(c.virtualization, 'vmx');
  assert.equal(c.hypervisor, false);
  assert.ok(c.flags.includes('ept') && c.flags.includes('avx2'));
});

test('2-socket Intel host: NUMA nodes with memory and per-node hugepages', () => {
  const nodes = readNumaNodes(join(V1, 'sys'));
  assert.deepEqual(nodes, [
    {
      id: 0,
      cpus: [0, 1, 4, 5],
      memTotal: 16 * GiB,
      memFree: 12 * GiB,
      hugepages: [
        { size: 2 * MiB, total: 512, free: 500 },
        { size: GiB, total: 2, free: 2 },
      ],
    },
    {
      id: 1,
      cpus: [2, 3, 6, 7],
      memTotal: 16 * GiB,
      memFree: 8 * GiB,
      hugepages: [
        { size: 2 * MiB, total: 512, free: 400 },
        { size: GiB, total: 2, free: 1 },
      ],
    },
  ]);
});

test('2-socket Intel host: hugepage pools, KSM, THP', () => {
  const sys = join(V1, 'sys');
  assert.deepEqual(readHugepages(sys), [
    { size: 2 * MiB, total: 1024, free: 900 },
    { size: GiB, total: 4, free: 3 },
  ]);
  assert.deepEqual(readKsm(sys), { available: true, run: 1, pagesShared: 100, pagesSharing: 400, pagesUnshared: 50 });
  assert.equal(readTransparentHugepages(sys), 'madvise');
});

test('2-socket Intel host: cgroup v1 controller directories, confirmed by its mount table', () => {
  const root = join(V1, 'sys/fs/cgroup');
  const cg = readCgroups(root);
  assert.equal(cg.version, 'v1');
  assert.deepEqual(cg.controllers, [
    'blkio', 'cpu', 'cpuacct', 'cpuset', 'devices', 'freezer', 'hugetlb', 'memory', 'net_cls', 'net_prio', 'pids',
  ]);
  assert.equal(cg.v1['cpu'], join(root, 'cpu,cpuacct'));
  assert.equal(cg.v1['memory'], join(root, 'memory'));
  assert.equal(cg.v1['systemd'], undefined, 'a named hierarchy is not a controller');
  assert.equal(cg.unified, null);
  assert.equal(cg.confirmedByMounts, null);
});

test('2-socket Intel host: the whole inventory', () => {
  const inv = readHostInventory({ sys: join(V1, 'sys'), proc: join(V1, 'proc') });
  assert.equal(inv.cpu.virtualization, 'vmx');
  assert.equal(inv.cpu.topology.sockets, 2);
  assert.equal(inv.numa.length, 2);
  assert.equal(inv.memory.total, 32768000 * 1024);
  assert.equal(inv.memory.available, 24000000 * 1024);
  assert.equal(inv.memory.hugepages.length, 2);
  assert.equal(inv.memory.ksm.available, true);
  assert.equal(inv.cgroups.version, 'v1');
  assert.equal(inv.cgroups.mountsVersion, 'v1');
  assert.equal(inv.cgroups.confirmedByMounts, true);
  assert.deepEqual(JSON.parse(JSON.stringify(inv)), inv, 'JSON-serialisable');
});

test('1-socket AMD host: svm, no NUMA dir, 2M pool only, no KSM, cgroup v2', () => {
  const inv = readHostInventory({ sys: join(V2, 'sys'), proc: join(V2, 'proc') });
  assert.equal(inv.cpu.vendor, 'AuthenticAMD');
  assert.equal(inv.cpu.model, 'AMD Ryzen 7 5800X 8-Core Processor');
  assert.equal(inv.cpu.virtualization, 'svm');
  assert.equal(inv.cpu.topology.sockets, 1);
  assert.equal(inv.cpu.topology.coresPerSocket, 4);
  assert.equal(inv.cpu.topology.threadsPerCore, 2);
  assert.deepEqual(inv.cpu.topology.cpus[5], { cpu: 5, socket: 0, core: 1, siblings: [1, 5] });
  assert.deepEqual(inv.numa, []);
  assert.deepEqual(inv.memory.hugepages, [{ size: 2 * MiB, total: 0, free: 0 }]);
  assert.deepEqual(inv.memory.ksm, { available: false });
  assert.equal(inv.memory.transparentHugepages, 'always');
  assert.equal(inv.cgroups.version, 'v2');
  assert.deepEqual(inv.cgroups.controllers, ['cpu', 'cpuset', 'io', 'memory', 'pids']);
  assert.deepEqual(inv.cgroups.unified, { path: join(V2, 'sys/fs/cgroup'), controllers: ['cpuset', 'cpu', 'io', 'memory', 'pids'] });
  assert.deepEqual(inv.cgroups.v1, {});
  assert.equal(inv.cgroups.confirmedByMounts, true);
});

test('an explicit cgroup root overrides SYS/fs/cgroup', () => {
  const inv = readHostInventory({ sys: join(V2, 'sys'), proc: join(V2, 'proc'), cgroup: join(V1, 'sys/fs/cgroup') });
  assert.equal(inv.cgroups.version, 'v1');
  assert.equal(inv.cgroups.mountsVersion, 'v2');
  assert.equal(inv.cgroups.confirmedByMounts, false, 'the v2 mount table disagrees with v1 directories');
});

test('the real host reads without throwing', () => {
  const inv = readHostInventory();
  assert.ok(inv.cpu.topology.cpus.length >= 1);
  assert.ok(inv.cpu.topology.sockets >= 1 && inv.cpu.topology.threadsPerCore >= 1);
  assert.ok(inv.memory.total > 0);
  assert.ok(['vmx', 'svm', null].includes(inv.cpu.virtualization));
  assert.ok(['v1', 'v2', 'hybrid', 'none'].includes(inv.cgroups.version));
  assert.deepEqual(JSON.parse(JSON.stringify(inv)), inv);
  // This build machine: cgroup v1 controllers, KSM, no vmx/svm advertised. Checked only where the facts say so.
  if (existsSync('/sys/fs/cgroup/memory') && !existsSync('/sys/fs/cgroup/cgroup.controllers')) {
    assert.ok(['v1', 'hybrid'].includes(inv.cgroups.version));
    assert.ok(inv.cgroups.controllers.includes('memory'));
    assert.equal(inv.cgroups.confirmedByMounts, true);
  }
  if (existsSync('/sys/kernel/mm/ksm/run')) assert.equal(inv.memory.ksm.available, true);
});
