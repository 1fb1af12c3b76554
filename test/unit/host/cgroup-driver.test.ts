import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readCgroups } from '../../../src/host/cgroups.js';
import { addProcess, createVmCgroup, readVmCgroup, removeVmCgroup, vmCgroupPaths, weightToShares } from '../../../src/host/cgroup-driver.js';
import { CorralError } from '../../../src/core/errors.js';

function tree(files: Record<string, string>): string {
  const root = mkdtempSync(join(tmpdir(), 'corral-cg-'));
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(join(root, path, '..'), { recursive: true });
    writeFileSync(join(root, path), text);
  }
  return root;
}
const read = (p: string): string => readFileSync(p, 'utf8');
const GiB = 1024 ** 3;

test('v2: the group under ROOT/corral, controllers enabled in the parents, cpu.weight, cpu.max, memory.max', () => {
  const root = tree({ 'cgroup.controllers': 'cpuset cpu io memory pids\n', 'cgroup.subtree_control': '' });
  const layout = readCgroups(root);
  const g = createVmCgroup(layout, 'corral/u1', { cpuWeight: 50, cpuLimit: 1.5, memoryLimit: GiB });
  const dir = join(root, 'corral/u1');
  assert.deepEqual(g, { version: 'v2', name: 'corral/u1', dirs: { cpu: dir, memory: dir } });
  assert.equal(read(join(root, 'cgroup.subtree_control')), '+cpu +memory');
  assert.equal(read(join(root, 'corral/cgroup.subtree_control')), '+cpu +memory');
  assert.equal(read(join(dir, 'cpu.weight')), '50');
  assert.equal(read(join(dir, 'cpu.max')), '150000 100000');
  assert.equal(read(join(dir, 'memory.max')), String(GiB));
  addProcess(g, 4242);
  assert.equal(read(join(dir, 'cgroup.procs')), '4242\n');
  // what the kernel would show
  writeFileSync(join(dir, 'cpu.stat'), 'usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\n');
  writeFileSync(join(dir, 'memory.current'), '123456\n');
  const r = readVmCgroup(g);
  assert.deepEqual({ w: r.cpuWeight, c: r.cpuLimit, m: r.memoryLimit, cu: r.cpuUsage, mu: r.memoryUsage, p: r.pids }, { w: 50, c: 1.5, m: GiB, cu: 2.5, mu: 123456, p: [4242] });
  assert.equal(removeVmCgroup(g), true);
  assert.equal(existsSync(dir), false);
  assert.equal(existsSync(join(root, 'corral')), true); // the parent stays for the other VMs
  assert.equal(removeVmCgroup(g), false);
});

test('v2: no limits asked leaves the kernel defaults ("max" reads as none)', () => {
  const root = tree({ 'cgroup.controllers': 'cpu memory\n', 'cgroup.subtree_control': '' });
  const g = createVmCgroup(readCgroups(root), 'corral/u2', { cpuWeight: null, cpuLimit: null, memoryLimit: null });
  assert.equal(existsSync(join(g.dirs.cpu, 'cpu.max')), false);
  writeFileSync(join(g.dirs.cpu, 'cpu.max'), 'max 100000\n');
  writeFileSync(join(g.dirs.cpu, 'memory.max'), 'max\n');
  const r = readVmCgroup(g);
  assert.equal(r.cpuLimit, null);
  assert.equal(r.memoryLimit, null);
  assert.equal(r.cpuUsage, null);
});

test('v2 without the memory controller is a clear error', () => {
  const root = tree({ 'cgroup.controllers': 'cpu pids\n', 'cgroup.subtree_control': '' });
  assert.throws(() => createVmCgroup(readCgroups(root), 'corral/u3', { cpuWeight: 10, cpuLimit: null, memoryLimit: null }),
    (e: CorralError) => e instanceof CorralError && /lacks the memory controller/.test(e.message));
});

test('v1 (hybrid): cpu, cpuacct and memory groups; shares, CFS quota and period, limit_in_bytes', () => {
  const root = tree({ 'cpu/tasks': '', 'cpuacct/tasks': '', 'memory/tasks': '', 'systemd/tasks': '', 'unified/cgroup.controllers': '' });
  const layout = readCgroups(root);
  assert.equal(layout.version, 'hybrid');
  const g = createVmCgroup(layout, 'corral/u4', { cpuWeight: 50, cpuLimit: 0.5, memoryLimit: 768 * 1024 * 1024 });
  assert.deepEqual(g.dirs, { cpu: join(root, 'cpu/corral/u4'), cpuacct: join(root, 'cpuacct/corral/u4'), memory: join(root, 'memory/corral/u4') });
  assert.equal(read(join(root, 'cpu/corral/u4/cpu.shares')), '512');
  assert.equal(read(join(root, 'cpu/corral/u4/cpu.cfs_period_us')), '100000');
  assert.equal(read(join(root, 'cpu/corral/u4/cpu.cfs_quota_us')), '50000');
  assert.equal(read(join(root, 'memory/corral/u4/memory.limit_in_bytes')), String(768 * 1024 * 1024));
  addProcess(g, 99);
  for (const c of ['cpu', 'cpuacct', 'memory']) assert.equal(read(join(root, c, 'corral/u4/cgroup.procs')), '99\n');
  writeFileSync(join(root, 'cpuacct/corral/u4/cpuacct.usage'), '1500000000\n');
  writeFileSync(join(root, 'memory/corral/u4/memory.usage_in_bytes'), '2048\n');
  const r = readVmCgroup(g);
  assert.deepEqual({ w: r.cpuWeight, c: r.cpuLimit, m: r.memoryLimit, cu: r.cpuUsage, mu: r.memoryUsage }, { w: 50, c: 0.5, m: 768 * 1024 * 1024, cu: 1.5, mu: 2048 });
  removeVmCgroup(g);
  for (const c of ['cpu', 'cpuacct', 'memory']) assert.equal(existsSync(join(root, c, 'corral/u4')), false);
});

test('v1: unlimited quota and memory read as null; shares map back to the weight', () => {
  const root = tree({ 'cpu,cpuacct/tasks': '', 'memory/tasks': '' });
  const g = createVmCgroup(readCgroups(root), 'corral/u5', { cpuWeight: null, cpuLimit: null, memoryLimit: null });
  assert.equal(g.dirs.cpu, g.dirs.cpuacct); // one combined hierarchy
  writeFileSync(join(g.dirs.cpu, 'cpu.shares'), '1024\n');
  writeFileSync(join(g.dirs.cpu, 'cpu.cfs_quota_us'), '-1\n');
  writeFileSync(join(g.dirs.memory!, 'memory.limit_in_bytes'), '9223372036854771712\n');
  const r = readVmCgroup(g);
  assert.deepEqual([r.cpuWeight, r.cpuLimit, r.memoryLimit], [100, null, null]);
  assert.equal(weightToShares(1), 10);
  assert.equal(weightToShares(10000), 102400);
});

test('v1 without a memory hierarchy refuses a memory limit; bad names and missing layouts are errors', () => {
  const root = tree({ 'cpu/tasks': '' });
  const layout = readCgroups(root);
  assert.throws(() => createVmCgroup(layout, 'corral/u6', { cpuWeight: null, cpuLimit: null, memoryLimit: GiB }), /memory controller/);
  assert.throws(() => createVmCgroup(layout, 'corral/../../etc', { cpuWeight: 1, cpuLimit: null, memoryLimit: null }), /not a cgroup name/);
  assert.throws(() => vmCgroupPaths(readCgroups(join(root, 'missing')), 'corral/x'), /no cgroup hierarchy/);
  assert.throws(() => readVmCgroup(vmCgroupPaths(layout, 'corral/never')), /does not exist/);
  assert.throws(() => addProcess(vmCgroupPaths(layout, 'corral/u7'), 0), /bad pid/);
});
