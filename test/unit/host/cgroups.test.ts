import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cgroupVersionFromMounts, parseCgroupMounts, readCgroups } from '../../../src/host/cgroups.js';
import { parseCpuInfo, readCpuInfo, readCpuTopology } from '../../../src/host/cpu.js';
import { parseBracketChoice, parseNodeMemInfo } from '../../../src/host/memory.js';

const HYBRID_MOUNTS = `tmpfs /sys/fs/cgroup tmpfs rw,relatime,mode=755 0 0
cgroup /sys/fs/cgroup/cpu cgroup rw,relatime,cpu 0 0
cgroup /sys/fs/cgroup/memory cgroup rw,relatime,memory 0 0
cgroup /sys/fs/cgroup/systemd cgroup rw,relatime,name=systemd 0 0
cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0
`;

function tree(files: Record<string, string>): string {
  const root = mkdtempSync(join(tmpdir(), 'corral-host-'));
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(join(root, path, '..'), { recursive: true });
    writeFileSync(join(root, path), text);
  }
  return root;
}

test('mount table: cgroup v1 controllers, named hierarchies, cgroup2 mount points, octal escapes', () => {
  const m = parseCgroupMounts(`${HYBRID_MOUNTS}cgroup2 /mnt/with\\040space cgroup2 rw 0 0\n`);
  assert.deepEqual(m.v1, [
    { path: '/sys/fs/cgroup/cpu', controllers: ['cpu'] },
    { path: '/sys/fs/cgroup/memory', controllers: ['memory'] },
    { path: '/sys/fs/cgroup/systemd', controllers: [] },
  ]);
  assert.deepEqual(m.v2, ['/sys/fs/cgroup/unified', '/mnt/with space']);
  assert.equal(cgroupVersionFromMounts(m), 'hybrid');
  assert.equal(cgroupVersionFromMounts(parseCgroupMounts('cgroup2 /sys/fs/cgroup cgroup2 rw 0 0')), 'v2');
  assert.equal(cgroupVersionFromMounts(parseCgroupMounts('cgroup /sys/fs/cgroup/pids cgroup rw,pids 0 0')), 'v1');
  assert.equal(cgroupVersionFromMounts(parseCgroupMounts('proc /proc proc rw 0 0')), 'none');
  assert.equal(cgroupVersionFromMounts(parseCgroupMounts('cgroup2 /cg cgroup2 rw 0 0'), '/cg/'), 'v2');
});

test('hybrid: v1 controller dirs plus a v2 hierarchy at unified/', () => {
  const root = tree({ 'cpu/tasks': '', 'memory/tasks': '', 'systemd/tasks': '', 'unified/cgroup.controllers': 'hugetlb\n' });
  const cg = readCgroups(root, { mounts: HYBRID_MOUNTS });
  assert.equal(cg.version, 'hybrid');
  assert.deepEqual(cg.controllers, ['cpu', 'hugetlb', 'memory']);
  assert.deepEqual(cg.unified, { path: join(root, 'unified'), controllers: ['hugetlb'] });
  assert.deepEqual(Object.keys(cg.v1).sort(), ['cpu', 'memory']);
  assert.equal(cg.confirmedByMounts, true);
});

test('a plain controller directory wins over a combined one; no cgroup at all is none', () => {
  const root = tree({ 'cpu,cpuacct/tasks': '', 'cpu/tasks': '', 'cpuacct/tasks': '' });
  const cg = readCgroups(root);
  assert.equal(cg.v1['cpu'], join(root, 'cpu'));
  assert.equal(cg.v1['cpuacct'], join(root, 'cpuacct'));
  const empty = readCgroups(join(root, 'missing'), { mounts: '' });
  assert.equal(empty.version, 'none');
  assert.deepEqual(empty.controllers, []);
  assert.equal(empty.confirmedByMounts, true);
});

test('topology falls back to /proc/cpuinfo physical id and core id without sysfs topology', () => {
  const block = (n: number, pkg: number, core: number): string =>
    `processor\t: ${n}\nvendor_id\t: GenuineIntel\nphysical id\t: ${pkg}\ncore id\t\t: ${core}\nflags\t\t: fpu vmx\n`;
  const root = tree({
    'sys/devices/system/cpu/online': '0-3\n',
    'proc/cpuinfo': [block(0, 0, 0), block(1, 0, 0), block(2, 1, 0), block(3, 1, 0)].join('\n'),
  });
  const t = readCpuTopology(join(root, 'sys'), join(root, 'proc'));
  assert.equal(t.sockets, 2);
  assert.equal(t.coresPerSocket, 1);
  assert.equal(t.threadsPerCore, 2);
  assert.deepEqual(t.cpus[3], { cpu: 3, socket: 1, core: 0, siblings: [2, 3] });
  assert.equal(readCpuInfo(join(root, 'proc')).model, 'unknown');
});

test('a missing cpuinfo gives an unknown CPU with no flags', () => {
  const c = readCpuInfo(join(tmpdir(), 'corral-no-such-proc'));
  assert.deepEqual(c, { vendor: 'unknown', model: 'unknown', flags: [], virtualization: null, hypervisor: false });
});

test('small parsers: cpuinfo blocks, node meminfo, bracketed choice', () => {
  assert.equal(parseCpuInfo('processor : 0\na : 1\n\nprocessor : 1\n').length, 2);
  assert.deepEqual(parseNodeMemInfo('Node 3 MemTotal:  1024 kB\nNode 3 MemFree:   512 kB\n'), { memTotal: 1048576, memFree: 524288 });
  assert.equal(parseBracketChoice('always defer [defer+madvise] madvise never'), 'defer+madvise');
  assert.equal(parseBracketChoice('always madvise never'), null);
});
