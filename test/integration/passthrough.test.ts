/**
 * PCI passthrough and SR-IOV end to end, on a fake host: a real daemon whose sysfs and /dev are a copy of
 * test/fixtures/pci/host1 (CORRAL_SYSFS_ROOT, CORRAL_DEV_ROOT), with writes there behaving as the kernel's
 * (fake-kernel.ts, preloaded) and a stand-in `ip` on its PATH that records what it is asked. The API and CLI
 * refuse what they must with their codes; an attached device shows in `corral devices`; a start binds the
 * groups and a VF to vfio-pci and hands them to QEMU, which cannot open a fake VFIO device and fails with its
 * own message: then everything must be back on its original driver and the VF free again.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { readPciDevice } from '../../src/host/pci.js';
import { copyPciFixture, type FakeHost } from '../unit/host/pci-fixture.js';
import { Daemon, SKIP_NO_TINY, useDaemon, waitFor } from './harness.js';

const skip = SKIP_NO_TINY;
const PRELOAD = fileURLToPath(new URL('./fake-kernel.js', import.meta.url));
let d: Daemon;
let fake: FakeHost;
let ipLog: string;

useDaemon((x) => { d = x; }, {
  env: () => {
    fake = copyPciFixture();
    const bin = mkdtempSync(join(tmpdir(), 'corral-fake-ip-'));
    ipLog = join(bin, 'ip.log');
    writeFileSync(join(bin, 'ip'), `#!/bin/sh\necho "$*" >> '${ipLog}'\n`);
    chmodSync(join(bin, 'ip'), 0o755);
    return {
      CORRAL_SYSFS_ROOT: fake.sys,
      CORRAL_DEV_ROOT: fake.dev,
      CORRAL_FAKE_KERNEL_ROOT: fake.root,
      NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --import=${pathToFileURL(PRELOAD).href}`.trim(),
      PATH: `${bin}:${process.env.PATH ?? '/usr/bin:/bin'}`,
    };
  },
});

async function api(method: string, path: string, body?: unknown, status = 200): Promise<any> {
  const r = await d.api(method, path, body);
  assert.equal(r.status, status, `${method} ${path}: ${JSON.stringify(r.body)}`);
  return r.body;
}

async function refused(path: string, body: unknown, status: number, code: string, re?: RegExp): Promise<any> {
  const r = await d.api('POST', path, body);
  assert.equal(r.status, status, JSON.stringify(r.body));
  assert.equal(r.body.error.code, code, JSON.stringify(r.body));
  if (re) assert.match(r.body.error.message, re);
  return r.body.error;
}

const driverOf = (a: string): string | null => readPciDevice(fake.sys, a).driver;
const overrideOf = (a: string): string => readFileSync(join(fake.sys, 'bus/pci/devices', a, 'driver_override'), 'utf8').trim();

test('attach refusals, attach, devices, and a start that QEMU fails: nothing stays bound, the VF is free again', { skip, timeout: 120_000 }, async () => {
  // SR-IOV: two VFs on the fake ixgbe PF, both free
  let cli = await d.cli(['host', 'sriov', '03:00.0', '--vfs', '2']);
  assert.equal(cli.code, 0, cli.stderr);
  assert.match(cli.stdout, /0000:03:10\.0\s+ixgbevf\s+yes/);
  cli = await d.cli(['host', 'devices']);
  assert.match(cli.stdout, /0000:05:00\.0 .*VGA controller\s+amdgpu\s+3 \(\+1\)/);

  await api('POST', '/v1/instances', { name: 'pt1', image: 'tiny' }, 201);
  await api('POST', '/v1/instances', { name: 'pt2', image: 'tiny' }, 201);
  const hd = '/v1/instances/pt1/hostdevs';

  // refusals, each with its code; nothing is recorded
  cli = await d.cli(['passthrough', 'attach', 'pt1', 'zz:00.0']);
  assert.equal(cli.code, 1);
  assert.match(cli.stderr, /^error: INVALID_SPEC: address: 'zz:00.0' is not a PCI address/);
  await refused(hd, { address: '0000:03:00.0,x-vga=on' }, 400, 'INVALID_SPEC');
  await refused(hd, { address: '0000:09:00.0' }, 404, 'PCI_DEVICE_NOT_FOUND', /no PCI device 0000:09:00\.0/);
  const nv = await refused(hd, { address: '04:00.0' }, 409, 'IOMMU_GROUP_NOT_VIABLE', /0000:04:00\.1 \(NVMe controller\) is in use by the host driver nvme/);
  assert.equal(nv.device, '0000:04:00.1');
  await refused(hd, { address: '00:01.0' }, 400, 'INVALID_SPEC', /PCI bridge/);
  await refused(hd, { address: '07:00.0' }, 409, 'IOMMU_GROUP_NOT_VIABLE', /no IOMMU group/);
  await refused(hd, { address: '05:00.0', bogus: 1 }, 400, 'INVALID_SPEC');
  assert.deepEqual((await api('GET', hd)).hostdevs, []);

  // attach: the GPU (its group's audio function, on pci-stub, goes with it at start)
  cli = await d.cli(['passthrough', 'attach', 'pt1', '05:00.0']);
  assert.equal(cli.code, 0, cli.stderr);
  assert.match(cli.stdout, /0000:05:00\.0 attached as hostdev0 \(VGA controller, IOMMU group 3\)/);
  // another instance cannot have it, nor its group-mate
  cli = await d.cli(['passthrough', 'attach', 'pt2', '0000:05:00.1']);
  assert.equal(cli.code, 1);
  assert.match(cli.stderr, /^error: DEVICE_IN_USE: 0000:05:00\.0 \(it shares IOMMU group 3 with 0000:05:00\.1\) is given to instance "pt1"/);

  // an SR-IOV NIC: a VF of the PF, with a VLAN; the PF is checked at attach
  cli = await d.cli(['nic', 'attach', 'pt1', '--sriov', '04:00.1']);
  assert.equal(cli.code, 1);
  assert.match(cli.stderr, /SRIOV_UNSUPPORTED/);
  cli = await d.cli(['nic', 'attach', 'pt1', '--sriov', '03:00.0', '--vlan', '100']);
  assert.equal(cli.code, 0, cli.stderr);
  const nic = (await api('GET', '/v1/instances/pt1/nics')).nics.find((n: any) => n.model === 'sriov');
  assert.deepEqual(nic.sriov, { pf: '0000:03:00.0', vlan: 100 });

  // corral devices: the GPU as passthrough, the VF as sriov-vf, both with vfio-pci
  const devs = (await api('GET', '/v1/instances/pt1/devices')).devices;
  const by = (id: string) => devs.find((x: any) => x.id === id);
  assert.deepEqual([by('hostdev0').approach, by('hostdev0').qemuDevice], ['passthrough', 'vfio-pci']);
  assert.deepEqual([by(nic.id).approach, by(nic.id).qemuDevice, by(nic.id).kind], ['sriov-vf', 'vfio-pci', 'nic']);
  cli = await d.cli(['devices', 'pt1']);
  assert.match(cli.stdout, /other\s+hostdev0\s+passthrough\s+vfio-pci\s+guest driver -> host device 0000:05:00\.0/);
  assert.match(cli.stdout, new RegExp(`nic\\s+${nic.id}\\s+sriov-vf\\s+vfio-pci\\s+guest VF driver \\(${nic.mac}\\)`));
  cli = await d.cli(['passthrough', 'list', 'pt1']);
  assert.match(cli.stdout, /hostdev0\s+passthrough\s+0000:05:00\.0\s+VGA controller\s+amdgpu\s+3\s+no/);
  assert.match(cli.stdout, new RegExp(`${nic.id}\\s+sriov-vf of 0000:03:00\\.0 vlan 100\\s+\\(taken at start\\)`));

  // start: the groups and a VF go to vfio-pci and QEMU gets them; it cannot open a fake VFIO device
  const { uuid } = await api('GET', '/v1/instances/pt1');
  const r = await d.api('POST', '/v1/instances/pt1/start');
  assert.equal(r.status, 500, JSON.stringify(r.body));
  assert.equal(r.body.error.code, 'QEMU_FAILED');
  assert.match(r.body.error.message, /vfio.*0000:05:00\.0.*no such host device/);
  const evs = await d.events(0);
  const bound = evs.find((e) => e.type === 'instance.hostdevs.bound' && e.instance === 'pt1');
  assert.deepEqual(bound?.data.devices.map((x: any) => [x.id, x.kind, x.address]), [['hostdev0', 'passthrough', '0000:05:00.0'], [nic.id, 'sriov-vf', '0000:03:10.0']]);
  assert.ok(evs.some((e) => e.type === 'instance.hostdevs.released' && e.instance === 'pt1'));

  // nothing leaked: every device on its original driver, no override, no record, the VF free, its MAC/VLAN cleared
  assert.equal((await api('GET', '/v1/instances/pt1')).state, 'stopped');
  assert.deepEqual(['05:00.0', '05:00.1', '03:10.0', '03:10.2'].map(driverOf), ['amdgpu', 'pci-stub', 'ixgbevf', 'ixgbevf']);
  assert.deepEqual(['0000:05:00.0', '0000:05:00.1', '0000:03:10.0'].map(overrideOf), ['', '', '']);
  assert.equal(existsSync(join(d.dataDir, 'instances', uuid, 'bindings.json')), false);
  assert.deepEqual((await api('GET', '/v1/host/sriov/03:00.0')).vfs.map((v: any) => v.free), [true, true]);
  // the VF commands (the daemon also lists its taps at start, through the same fake ip)
  const vfCalls = (): string[] => (existsSync(ipLog) ? readFileSync(ipLog, 'utf8').trim().split('\n').filter((l) => / vf /.test(l)) : []);
  await waitFor(() => vfCalls().length >= 2, 5000, 'the VF MAC to be cleared');
  assert.deepEqual(vfCalls(), [
    `link set dev enp3s0f0 vf 0 mac ${nic.mac} vlan 100`,
    'link set dev enp3s0f0 vf 0 mac 00:00:00:00:00:00 vlan 0',
  ]);
  cli = await d.cli(['host', 'sriov', '03:00.0']);
  assert.match(cli.stdout, /0000:03:10\.0\s+ixgbevf\s+yes/);

  // detach by address, then by id
  cli = await d.cli(['passthrough', 'detach', 'pt1', '0000:05:00.0']);
  assert.equal(cli.code, 0, cli.stderr);
  assert.deepEqual((await api('GET', hd)).hostdevs.map((h: any) => h.kind), ['sriov-vf']);
  const gone = await d.api('DELETE', `${hd}/hostdev0`);
  assert.equal(gone.status, 404);
  assert.equal(gone.body.error.code, 'HOSTDEV_NOT_FOUND');
  await api('DELETE', '/v1/instances/pt1');
  await api('DELETE', '/v1/instances/pt2');
});

test('a running instance refuses a passthrough device or an SR-IOV NIC (no VFIO hotplug)', { skip, timeout: 120_000 }, async () => {
  await api('POST', '/v1/instances', { name: 'pt3', image: 'tiny', start: true }, 201);
  const r = await d.api('POST', '/v1/instances/pt3/hostdevs', { address: '06:00.0' });
  assert.equal(r.status, 409);
  assert.equal(r.body.error.code, 'INVALID_STATE');
  assert.match(r.body.error.message, /running: PCI devices are attached while it is stopped/);
  assert.equal(driverOf('06:00.0'), null);
  const cli = await d.cli(['nic', 'attach', 'pt3', '--sriov', '03:00.0']);
  assert.equal(cli.code, 1);
  assert.match(cli.stderr, /an SR-IOV VF is attached while the instance is stopped/);
  assert.deepEqual((await api('GET', '/v1/instances/pt3/hostdevs')).hostdevs, []);
  await api('DELETE', '/v1/instances/pt3?force=true');
});
