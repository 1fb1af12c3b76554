import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CorralError } from '../../../src/core/errors.js';
import type { RunAs } from '../../../src/host/run-as.js';
import { normalizeSpec } from '../../../src/core/spec.js';
import type { InstanceNic } from '../../../src/core/nics.js';
import { readPciDevice } from '../../../src/host/pci.js';
import { setVfCount, sriovState } from '../../../src/host/sriov.js';
import type { FsOps } from '../../../src/host/vfio.js';
import { buildArgv } from '../../../src/qemu/argv.js';
import type { InstanceHooks } from '../../../src/services/instance-hooks.js';
import { devicePaths } from '../../../src/services/device-paths.js';
import { PassthroughService, VF_AT_START, type BindingsRecord } from '../../../src/services/passthrough.js';
import type { LaunchExtras } from '../../../src/services/runtime.js';
import type { InstanceRow } from '../../../src/store/store.js';
import { FIXTURES } from '../fixtures.js';
import { copyPciFixture, fakeKernel, type FakeHost } from '../host/pci-fixture.js';

const MiB = 1024 * 1024;
let uuidSeq = 0;

function row(name: string, extra: { hostdevs?: string[]; vfs?: Array<{ pf: string; vlan?: number }> } = {}): InstanceRow {
  const uuid = `00000000-0000-4000-8000-${String(++uuidSeq).padStart(12, '0')}`;
  const spec = normalizeSpec({ image: 'tiny', cpus: 1, memory: 256 * MiB }, `52:54:00:00:00:${uuidSeq.toString(16).padStart(2, '0')}`);
  spec.hostdevs = (extra.hostdevs ?? []).map((address, i) => ({ id: `hostdev${i}`, address }));
  (extra.vfs ?? []).forEach((v, i) => {
    const nic: InstanceNic = { id: `net${i + 1}`, model: 'sriov', network: null, mac: `52:54:00:aa:${uuidSeq.toString(16).padStart(2, '0')}:0${i}`, queues: 1, sriov: { pf: v.pf, vlan: v.vlan ?? null } };
    spec.nics.push(nic);
  });
  const now = new Date().toISOString();
  return { uuid, name, spec, state: 'stopped', accel: null, pid: null, pidStart: null, mac: spec.nics[0]!.mac, createdAt: now, startedAt: null, lastError: null, updatedAt: now };
}

/** The instance service as the passthrough service sees it: rows, hooks, launch contributors. */
function fakeInstances(rows: InstanceRow[]) {
  const hooks: InstanceHooks[] = [];
  const contributors: Array<(r: InstanceRow) => Pick<LaunchExtras, 'hostdevs'>> = [];
  const rowOf = (name: string): InstanceRow => {
    const r = rows.find((x) => x.name === name);
    if (!r) throw new CorralError('INSTANCE_NOT_FOUND', `instance "${name}" not found`);
    return r;
  };
  return {
    hooks, contributors, rows,
    addHooks: (h: InstanceHooks) => void hooks.push(h),
    addLaunchContributor: (fn: (r: InstanceRow) => Pick<LaunchExtras, 'hostdevs'>) => void contributors.push(fn),
    withLock: <T>(_n: string, fn: () => Promise<T>) => fn(),
    rowOf,
    updateSpec: (name: string, patch: Partial<InstanceRow['spec']>) => {
      const r = rowOf(name);
      r.spec = { ...r.spec, ...patch };
      return r;
    },
    listRows: () => rows,
  };
}

interface Env {
  host: FakeHost;
  k: ReturnType<typeof fakeKernel>;
  dataDir: string;
  ran: string[][];
  events: string[];
  inst: ReturnType<typeof fakeInstances>;
  svc: PassthroughService;
  start(r: InstanceRow): Promise<void>;
  stop(r: InstanceRow): void;
  hostdevs(r: InstanceRow): NonNullable<LaunchExtras['hostdevs']>;
}

function setup(rows: InstanceRow[], opts: { host?: FakeHost; dataDir?: string; ops?: (k: ReturnType<typeof fakeKernel>) => FsOps; fail?: (rel: string, v: string) => boolean; vfs?: number; exec?: (argv: string[]) => Promise<void>; runAs?: RunAs } = {}): Env {
  const host = opts.host ?? copyPciFixture();
  const k = fakeKernel(host, opts.fail);
  if (!opts.host && opts.vfs !== 0) setVfCount(host.sys, '03:00.0', opts.vfs ?? 2, { ops: k });
  k.writes.length = 0;
  const dataDir = opts.dataDir ?? mkdtempSync(join(tmpdir(), 'corral-pt-'));
  const ran: string[][] = [];
  const events: string[] = [];
  const inst = fakeInstances(rows);
  const svc = new PassthroughService({
    instances: inst as never, dataDir, events: { publish: (t: string) => { events.push(t); return {} as never; } }, log: { warn: () => {} },
    sys: host.sys, dev: host.dev, ops: opts.ops ? opts.ops(k) : k, exec: opts.exec ?? (async (a) => void ran.push(a)), runAs: opts.runAs,
  });
  inst.addHooks(svc.hooks());
  const env: Env = {
    host, k, dataDir, ran, events, inst, svc,
    async start(r) {
      r.state = 'starting';
      try {
        for (const h of inst.hooks) await h.beforeLaunch?.(r, 'kvm');
        r.state = 'running';
      } catch (e) {
        for (const h of inst.hooks) h.exited?.(r);
        r.state = 'stopped';
        throw e;
      }
    },
    stop(r) {
      for (const h of inst.hooks) h.exited?.(r);
      r.state = 'stopped';
    },
    hostdevs: (r) => inst.contributors.flatMap((c) => c(r).hostdevs ?? []),
  };
  return env;
}

const driver = (e: Env, a: string): string | null => readPciDevice(e.host.sys, a).driver;
const recordOf = (e: Env, r: InstanceRow): BindingsRecord | null => {
  const p = join(e.dataDir, 'instances', r.uuid, 'bindings.json');
  return existsSync(p) ? (JSON.parse(readFileSync(p, 'utf8')) as BindingsRecord) : null;
};
async function rejectsWith(p: Promise<unknown> | (() => unknown), code: string, re?: RegExp): Promise<CorralError> {
  let err: CorralError | undefined;
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (e) {
    err = e as CorralError;
  }
  assert.ok(err, `expected ${code}, nothing was thrown`);
  assert.equal(err.code, code, err.message);
  if (re) assert.match(err.message, re);
  return err;
}

test('start binds the whole group and a VF (MAC and VLAN set on the PF); stop gives everything back', async () => {
  const vm = row('vm', { hostdevs: ['0000:05:00.0'], vfs: [{ pf: '0000:03:00.0', vlan: 100 }] });
  const e = setup([vm]);
  const nic = vm.spec.nics[1]!;
  await e.start(vm);

  assert.equal(driver(e, '05:00.0'), 'vfio-pci');
  assert.equal(driver(e, '05:00.1'), 'vfio-pci', 'the audio function of the group moves too');
  assert.equal(driver(e, '03:10.0'), 'vfio-pci');
  assert.equal(driver(e, '03:10.2'), 'ixgbevf', 'the other VF is untouched');
  assert.deepEqual(e.ran, [['ip', 'link', 'set', 'dev', 'enp3s0f0', 'vf', '0', 'mac', nic.mac, 'vlan', '100']]);
  assert.deepEqual(e.hostdevs(vm), [
    { id: 'hostdev0', address: '0000:05:00.0', kind: 'passthrough' },
    { id: 'net1', address: '0000:03:10.0', kind: 'sriov-vf', mac: nic.mac, pf: '0000:03:00.0' },
  ]);
  const rec = recordOf(e, vm)!;
  assert.deepEqual(rec.devices.map((d) => [d.id, d.kind, d.address, d.complete]), [['hostdev0', 'passthrough', '0000:05:00.0', true], ['net1', 'sriov-vf', '0000:03:10.0', true]]);
  assert.deepEqual(rec.devices[0]!.binding.members, [{ address: '0000:05:00.0', originalDriver: 'amdgpu' }, { address: '0000:05:00.1', originalDriver: 'pci-stub' }]);
  assert.deepEqual([...e.svc.inUse()].sort(), ['0000:03:10.0', '0000:05:00.0', '0000:05:00.1']);
  assert.deepEqual(e.svc.sriov('03:00.0').vfs.map((v) => v.free), [false, true]);
  assert.deepEqual(e.svc.list('vm').map((h) => [h.id, h.kind, h.address, h.bound, h.driver]), [
    ['hostdev0', 'passthrough', '0000:05:00.0', true, 'vfio-pci'], ['net1', 'sriov-vf', '0000:03:10.0', true, 'vfio-pci'],
  ]);

  // the command line QEMU gets
  const plan = JSON.parse(readFileSync(join(FIXTURES, 'argv', 'nics.plan.json'), 'utf8'));
  const argv = buildArgv({ ...plan, hostdevs: e.hostdevs(vm) });
  assert.ok(argv.includes('{"driver":"vfio-pci","host":"0000:05:00.0","id":"hostdev0"}'));
  assert.ok(argv.includes('{"driver":"vfio-pci","host":"0000:03:10.0","id":"net1"}'));

  e.ran.length = 0;
  e.stop(vm);
  assert.deepEqual([driver(e, '05:00.0'), driver(e, '05:00.1'), driver(e, '03:10.0')], ['amdgpu', 'pci-stub', 'ixgbevf']);
  assert.equal(readFileSync(join(e.host.sys, 'bus/pci/devices/0000:05:00.0/driver_override'), 'utf8').trim(), '', 'no override left behind');
  assert.equal(recordOf(e, vm), null);
  assert.deepEqual([...e.svc.inUse()], []);
  assert.deepEqual(sriovState(e.host.sys, '03:00.0', e.svc.inUse()).vfs.map((v) => v.free), [true, true]);
  assert.deepEqual(e.ran, [['ip', 'link', 'set', 'dev', 'enp3s0f0', 'vf', '0', 'mac', '00:00:00:00:00:00', 'vlan', '0']], 'the VF MAC and VLAN are cleared');
  assert.deepEqual(e.events, ['instance.hostdevs.bound', 'instance.hostdevs.released']);

  // a second start takes the same VF again (it is free), without a VLAN this time
  vm.spec.nics[1]!.sriov!.vlan = null;
  e.ran.length = 0;
  await e.start(vm);
  assert.deepEqual(e.ran, [['ip', 'link', 'set', 'dev', 'enp3s0f0', 'vf', '0', 'mac', nic.mac]]);
  e.stop(vm);
  assert.deepEqual(e.ran[1], ['ip', 'link', 'set', 'dev', 'enp3s0f0', 'vf', '0', 'mac', '00:00:00:00:00:00']);
});

test('each bound group\'s /dev/vfio node is QEMU\'s user\'s while the instance runs, root\'s after', { skip: process.getuid?.() === 0 ? false : 'needs root to chown' }, async () => {
  const vm = row('vm', { hostdevs: ['0000:05:00.0'] });
  const e = setup([vm], { runAs: { user: 'corral-qemu', uid: 4242, gid: 4343, groups: [] } });
  await e.start(vm);
  const group = recordOf(e, vm)!.devices[0]!.binding.group;
  const node = join(e.host.dev, 'vfio', String(group));
  let st = statSync(node);
  assert.deepEqual([st.uid, st.gid, st.mode & 0o777], [4242, 4343, 0o600], 'QEMU opens the group as corral-qemu');
  e.stop(vm);
  if (existsSync(node)) {
    st = statSync(node);
    assert.deepEqual([st.uid, st.gid, st.mode & 0o777], [0, 0, 0o600], 'a node left after the release is root\'s again');
  }
});

test('the record names each device before it is bound (a daemon dying midway still knows what to give back)', async () => {
  const vm = row('vm', { hostdevs: ['05:00.0'] });
  let seen: BindingsRecord | null | undefined;
  const e = setup([vm], {
    ops: (k) => ({ ...k, write: (p: string, v: string) => { if (seen === undefined) seen = recordOf(e, vm); k.write(p, v); } }),
  });
  await e.start(vm);
  assert.ok(seen, 'a record existed before the first sysfs write');
  assert.deepEqual(seen.devices.map((d) => [d.address, d.complete, d.binding.members.map((m) => `${m.address}=${m.originalDriver}`)]), [
    ['0000:05:00.0', false, ['0000:05:00.0=amdgpu', '0000:05:00.1=pci-stub']],
  ]);
  e.stop(vm);
});

test('a failure part-way through a start gives back what that start bound', async () => {
  // the second device fails to move: the first one's group goes back
  const vm = row('vm', { hostdevs: ['05:00.0', '06:00.0'] });
  const e = setup([vm], { fail: (rel, v) => rel === 'bus/pci/drivers_probe' && v === '0000:06:00.0' });
  const err = await rejectsWith(e.start(vm), 'INTERNAL', /0000:06:00\.0.*drivers_probe/);
  assert.equal(err.details.device, '0000:06:00.0');
  assert.deepEqual([driver(e, '05:00.0'), driver(e, '05:00.1'), driver(e, '06:00.0')], ['amdgpu', 'pci-stub', null]);
  assert.equal(recordOf(e, vm), null);
  assert.deepEqual([...e.svc.inUse()], []);

  // the VF's MAC cannot be set: the passthrough device already bound goes back
  const vm2 = row('vm2', { hostdevs: ['05:00.0'], vfs: [{ pf: '03:00.0' }] });
  const e2 = setup([vm2], { exec: async () => { throw new Error('RTNETLINK answers: Operation not permitted'); } });
  await rejectsWith(e2.start(vm2), 'INTERNAL', /ip link set dev enp3s0f0 vf 0 mac .* failed: RTNETLINK/);
  assert.deepEqual([driver(e2, '05:00.0'), driver(e2, '05:00.1'), driver(e2, '03:10.0')], ['amdgpu', 'pci-stub', 'ixgbevf']);
  assert.equal(recordOf(e2, vm2), null);
});

test('a group that is not viable is refused, naming the device on a host driver; nothing written', async () => {
  const vm = row('vm');
  const e = setup([vm]);
  const err = await rejectsWith(e.svc.attach('vm', '04:00.0'), 'IOMMU_GROUP_NOT_VIABLE', /0000:04:00\.1 \(NVMe controller\) is in use by the host driver nvme/);
  assert.equal(err.details.device, '0000:04:00.1');
  assert.deepEqual(vm.spec.hostdevs, []);
  // and at start, for a spec that has it anyway (the host changed since the attach)
  vm.spec.hostdevs = [{ id: 'hostdev0', address: '0000:04:00.0' }];
  await rejectsWith(e.start(vm), 'IOMMU_GROUP_NOT_VIABLE', /0000:04:00\.1/);
  assert.deepEqual(e.k.writes, []);
  assert.equal(driver(e, '04:00.0'), 'nouveau');
  assert.equal(recordOf(e, vm), null);
});

test('the devices of one group, all on host drivers, are given together (one attach) and move together', async () => {
  const vm = row('vm');
  const e = setup([vm]);
  await rejectsWith(e.svc.attach('vm', '04:00.1'), 'IOMMU_GROUP_NOT_VIABLE', /0000:04:00\.0 \(VGA controller\) is in use by the host driver nouveau.*attach them together: corral passthrough attach vm 0000:04:00\.1 0000:04:00\.0/);
  const list = await e.svc.attach('vm', ['04:00.0', '0000:04:00.1']);
  assert.deepEqual(list.map((h) => [h.id, h.address]), [['hostdev0', '0000:04:00.0'], ['hostdev1', '0000:04:00.1']]);
  await rejectsWith(e.svc.attach('vm', ['06:00.0', '06:00.0']), 'ALREADY_EXISTS');
  await rejectsWith(e.svc.attach('vm', ['06:00.0', '09:00.0']), 'PCI_DEVICE_NOT_FOUND');
  await rejectsWith(e.svc.attach('vm', []), 'INVALID_SPEC');
  assert.equal(e.inst.rowOf('vm').spec.hostdevs.length, 2, 'a refused attach of several adds none');
  await e.start(vm);
  assert.deepEqual([driver(e, '04:00.0'), driver(e, '04:00.1')], ['vfio-pci', 'vfio-pci']);
  assert.deepEqual(recordOf(e, vm)!.devices.map((d) => d.binding.members.length), [2, 0], 'the first device moved the group');
  assert.deepEqual(e.hostdevs(vm).map((h) => h.id), ['hostdev0', 'hostdev1']);
  e.stop(vm);
  assert.deepEqual([driver(e, '04:00.0'), driver(e, '04:00.1')], ['nouveau', 'nvme']);
});

test('a device (or its IOMMU group) given to one instance is DEVICE_IN_USE for another, at attach and at start', async () => {
  const a = row('a');
  const b = row('b');
  const e = setup([a, b]);
  await e.svc.attach('a', '05:00.0');
  assert.deepEqual(a.spec.hostdevs, [{ id: 'hostdev0', address: '0000:05:00.0' }]);
  let err = await rejectsWith(e.svc.attach('b', '0000:05:00.0'), 'DEVICE_IN_USE', /0000:05:00\.0 is given to instance "a"/);
  assert.equal(err.details.instance, 'a');
  err = await rejectsWith(e.svc.attach('b', '05:00.1'), 'DEVICE_IN_USE', /0000:05:00\.0 \(it shares IOMMU group 3 with 0000:05:00\.1\) is given to instance "a"/);
  assert.equal(err.details.device, '0000:05:00.0');
  // the same instance may take both functions of the group
  await e.svc.attach('a', '05:00.1');
  await e.start(a);
  assert.deepEqual(e.hostdevs(a).map((h) => h.address), ['0000:05:00.0', '0000:05:00.1']);

  // at start: b's spec names a's device (as after an edit behind the API's back): refused, a keeps it
  b.spec.hostdevs = [{ id: 'hostdev0', address: '0000:05:00.1' }];
  await rejectsWith(e.start(b), 'DEVICE_IN_USE', /instance "a"/);
  assert.equal(driver(e, '05:00.1'), 'vfio-pci');
  assert.equal(recordOf(e, a)?.devices.length, 2);
  e.stop(b); // the exited hooks of b's failed start do not touch a's devices
  assert.equal(driver(e, '05:00.0'), 'vfio-pci');

  // a PF whose VF an instance holds cannot be passed through
  const c = row('c', { vfs: [{ pf: '03:00.0' }] });
  e.inst.rows.push(c);
  await e.start(c);
  await rejectsWith(e.svc.attach('b', '03:00.0'), 'DEVICE_IN_USE', /VF 0000:03:10\.0 is given to instance "c"/);

  e.stop(a);
  e.stop(c);
  assert.deepEqual([driver(e, '05:00.0'), driver(e, '05:00.1'), driver(e, '03:10.0')], ['amdgpu', 'pci-stub', 'ixgbevf']);
});

test('VF pool exhausted: INSUFFICIENT_RESOURCES, and the starting instance keeps nothing', async () => {
  const a = row('a', { vfs: [{ pf: '03:00.0' }] });
  const b = row('b', { hostdevs: ['06:00.0'], vfs: [{ pf: '0000:03:00.0' }] });
  const e = setup([a, b], { vfs: 1 });
  await e.start(a);
  const err = await rejectsWith(e.start(b), 'INSUFFICIENT_RESOURCES', /no free VF on 0000:03:00\.0/);
  assert.equal(err.status, 409);
  assert.equal(driver(e, '06:00.0'), null, 'the USB controller b bound first went back (to no driver)');
  assert.equal(driver(e, '03:10.0'), 'vfio-pci', 'a keeps its VF');
  assert.equal(recordOf(e, b), null);
  e.stop(a);
  await e.start(b);
  assert.equal(e.hostdevs(b)[1]!.address, '0000:03:10.0');
  e.stop(b);

  // two VFs on one instance take two different VFs
  const c = row('c', { vfs: [{ pf: '03:00.0' }, { pf: '03:00.0', vlan: 7 }] });
  const e2 = setup([c]);
  await e2.start(c);
  assert.deepEqual(e2.hostdevs(c).map((h) => [h.id, h.address]), [['net1', '0000:03:10.0'], ['net2', '0000:03:10.2']]);
  assert.deepEqual(e2.ran.map((a) => a.slice(5).join(' ')), [`vf 0 mac ${c.spec.nics[1]!.mac}`, `vf 1 mac ${c.spec.nics[2]!.mac} vlan 7`]);
  e2.stop(c);
});

test('the record survives a daemon restart: the new service knows what is in use and gives it back at stop', async () => {
  const vm = row('vm', { hostdevs: ['05:00.0'], vfs: [{ pf: '03:00.0' }] });
  const other = row('other', { vfs: [{ pf: '03:00.0' }] });
  const e1 = setup([vm, other]);
  await e1.start(vm);

  // a new daemon: new service, same data dir and host
  const e2 = setup([vm, other], { host: e1.host, dataDir: e1.dataDir });
  assert.deepEqual([...e2.svc.inUse()].sort(), ['0000:03:10.0', '0000:05:00.0', '0000:05:00.1'], 'known before any adoption');
  for (const h of e2.inst.hooks) await h.adopted?.(vm, { pid: 1234 } as never);
  assert.deepEqual(e2.hostdevs(vm).map((h) => h.address), ['0000:05:00.0', '0000:03:10.0']);
  await e2.start(other);
  assert.equal(e2.hostdevs(other)[0]!.address, '0000:03:10.2', 'the VF vm holds is not taken again');
  e2.stop(vm);
  e2.stop(other);
  assert.deepEqual([driver(e2, '05:00.0'), driver(e2, '05:00.1'), driver(e2, '03:10.0'), driver(e2, '03:10.2')], ['amdgpu', 'pci-stub', 'ixgbevf', 'ixgbevf']);
  assert.equal(recordOf(e2, vm), null);

  // QEMU died while the daemon was down: reconcile runs exited without adopted, and it still releases
  await e2.start(vm);
  const e3 = setup([vm], { host: e1.host, dataDir: e1.dataDir });
  e3.stop(vm);
  assert.deepEqual([driver(e3, '05:00.0'), driver(e3, '03:10.0')], ['amdgpu', 'ixgbevf']);
  assert.deepEqual([...e3.svc.inUse()], []);
});

test('attach checks: malformed and absent addresses, bridges, no IOMMU group, duplicates, a running instance; detach', async () => {
  const vm = row('vm');
  const e = setup([vm]);
  assert.deepEqual(vm.spec.hostdevs, []);
  const bad = await rejectsWith(e.svc.attach('vm', 'zz:00.0'), 'INVALID_SPEC', /not a PCI address/);
  assert.equal(bad.details.field, 'address');
  await rejectsWith(e.svc.attach('vm', '0000:03:00.0,x=1'), 'INVALID_SPEC');
  await rejectsWith(e.svc.attach('vm', ''), 'INVALID_SPEC');
  await rejectsWith(e.svc.attach('vm', '0000:09:00.0'), 'PCI_DEVICE_NOT_FOUND', /no PCI device 0000:09:00\.0/);
  await rejectsWith(e.svc.attach('vm', '00:01.0'), 'INVALID_SPEC', /0000:00:01\.0 is a PCI bridge/);
  await rejectsWith(e.svc.attach('vm', '00:00.0'), 'INVALID_SPEC', /Host bridge/);
  await rejectsWith(e.svc.attach('vm', '07:00.0'), 'IOMMU_GROUP_NOT_VIABLE', /no IOMMU group.*intel_iommu=on/);
  await rejectsWith(e.svc.attach('nope', '06:00.0'), 'INSTANCE_NOT_FOUND');
  assert.deepEqual(vm.spec.hostdevs, []);

  const list = await e.svc.attach('vm', '06:00.0');
  assert.deepEqual(list.map((h) => [h.id, h.address, h.className, h.driver, h.iommuGroup, h.bound]), [['hostdev0', '0000:06:00.0', 'USB controller', null, 4, false]]);
  await rejectsWith(e.svc.attach('vm', '0000:06:00.0'), 'ALREADY_EXISTS', /already given to instance "vm" \(hostdev0\)/);
  await e.svc.attach('vm', '05:00.0');
  assert.deepEqual(e.inst.rowOf('vm').spec.hostdevs.map((h) => h.id), ['hostdev0', 'hostdev1']);

  vm.state = 'running';
  await rejectsWith(e.svc.attach('vm', '05:00.1'), 'INVALID_STATE', /running: PCI devices are attached while it is stopped/);
  await rejectsWith(e.svc.detach('vm', 'hostdev0'), 'INVALID_STATE');
  vm.state = 'stopped';

  await rejectsWith(e.svc.detach('vm', 'hostdev7'), 'HOSTDEV_NOT_FOUND');
  await rejectsWith(e.svc.detach('vm', '0000:04:00.0'), 'HOSTDEV_NOT_FOUND');
  assert.deepEqual((await e.svc.detach('vm', '06:00.0')).map((h) => h.id), ['hostdev1']);
  assert.deepEqual((await e.svc.detach('vm', 'hostdev1')).map((h) => h.id), []);
  assert.deepEqual(e.events, ['instance.hostdev.attached', 'instance.hostdev.attached', 'instance.hostdev.detached', 'instance.hostdev.detached']);
  assert.deepEqual(e.k.writes, [], 'attach and detach write nothing to sysfs');
});

test('a PF for an SR-IOV NIC is checked and given in full form', () => {
  const e = setup([]);
  assert.equal(e.svc.checkPf('03:00.0'), '0000:03:00.0');
  assert.throws(() => e.svc.checkPf('04:00.1'), /does not support SR-IOV/);
  assert.throws(() => e.svc.checkPf('03:10.0'), /is itself a VF/);
  assert.throws(() => e.svc.checkPf('09:00.0'), /no PCI device/);
  assert.throws(() => e.svc.checkPf('x'), (err: CorralError) => err.code === 'INVALID_SPEC' && err.details.field === 'pf');
});

test('a stopped instance: its devices in the plan as the next start will bind them (the VF chosen at start)', () => {
  const vm = row('vm', { hostdevs: ['0000:05:00.0'], vfs: [{ pf: '0000:03:00.0' }] });
  const e = setup([vm]);
  const hd = e.hostdevs(vm);
  assert.deepEqual(hd, [
    { id: 'hostdev0', address: '0000:05:00.0', kind: 'passthrough' },
    { id: 'net1', address: VF_AT_START, kind: 'sriov-vf', mac: vm.spec.nics[1]!.mac, pf: '0000:03:00.0' },
  ]);
  const plan = JSON.parse(readFileSync(join(FIXTURES, 'argv', 'tiny-kernel.plan.json'), 'utf8'));
  const devs = devicePaths({ ...plan, hostdevs: hd });
  const by = (id: string) => devs.find((d) => d.id === id)!;
  assert.deepEqual([by('hostdev0').approach, by('hostdev0').qemuDevice], ['passthrough', 'vfio-pci']);
  assert.deepEqual([by('net1').approach, by('net1').qemuDevice, by('net1').kind], ['sriov-vf', 'vfio-pci', 'nic']);
  assert.match(by('net1').dataPath, /a free VF, taken at start.* of 0000:03:00\.0/);
  assert.deepEqual(e.svc.list('vm').map((h) => [h.id, h.kind, h.address, h.bound]), [['hostdev0', 'passthrough', '0000:05:00.0', false], ['net1', 'sriov-vf', null, false]]);
  // the placeholder can never reach QEMU
  assert.throws(() => buildArgv({ ...plan, hostdevs: hd }), /not a PCI address/);
});

test('a VF count change waits for a start binding a VF of that PF, then is refused (the VF is in use); afterwards it goes through', async () => {
  const vm = row('vm', { vfs: [{ pf: '0000:03:00.0' }] });
  const e = setup([vm]);
  const started = e.start(vm);
  const change = e.svc.setVfCount('03:00.0', 0); // asked while the start is binding: it waits for the bind lock
  await started;
  await rejectsWith(change, 'DEVICE_IN_USE', /03:10\.0/);
  assert.equal(driver(e, '03:10.0'), 'vfio-pci', 'the started instance keeps its VF');
  e.stop(vm);
  const after = await e.svc.setVfCount('03:00.0', 1);
  assert.equal(after.numVfs, 1);
  assert.deepEqual(e.svc.pciDevices().filter((d) => d.address.startsWith('0000:03:10.')).map((d) => d.address), ['0000:03:10.0']);
});
