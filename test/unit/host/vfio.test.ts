import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { bindVfio, planVfioBind, releaseVfio, vfioDeviceJson } from '../../../src/host/vfio.js';
import { readPciDevice } from '../../../src/host/pci.js';
import { copyPciFixture, fakeKernel, thrown } from './pci-fixture.js';

test('a device with its PCIe root port is viable: the bridge stays on its driver', () => {
  const { sys } = copyPciFixture();
  const plan = planVfioBind(sys, '03:00.0');
  assert.equal(plan.group, 1);
  assert.equal(plan.vfioDevice, 'vfio/1');
  assert.deepEqual(plan.members.map((m) => [m.address, m.action]), [['0000:00:01.0', 'keep-bridge'], ['0000:03:00.0', 'bind']]);
});

test('a group with a member on the nvme driver is not viable, and the error names it', () => {
  const { sys } = copyPciFixture();
  const e = thrown(() => planVfioBind(sys, '0000:04:00.0'));
  assert.equal(e.code, 'IOMMU_GROUP_NOT_VIABLE');
  assert.equal(e.status, 409);
  assert.match(e.message, /0000:04:00\.1.*nvme/);
  assert.equal(e.details.device, '0000:04:00.1');
  assert.equal(thrown(() => planVfioBind(sys, '07:00.0')).code, 'IOMMU_GROUP_NOT_VIABLE');
  assert.equal(thrown(() => planVfioBind(sys, '09:00.0')).code, 'PCI_DEVICE_NOT_FOUND');
  assert.equal(thrown(() => planVfioBind(sys, 'zz:00.0')).code, 'INVALID_SPEC');
  assert.equal(thrown(() => planVfioBind(sys, '05:00.0', { inUse: new Set(['0000:05:00.1']) })).code, 'DEVICE_IN_USE');
});

test('bindVfio writes override, unbind, probe per member; releaseVfio gives them back', () => {
  const host = copyPciFixture();
  const k = fakeKernel(host);
  const rec = bindVfio(host.sys, '0000:05:00.0', { ops: k, dev: host.dev });
  assert.deepEqual(rec, {
    address: '0000:05:00.0', group: 3,
    members: [{ address: '0000:05:00.0', originalDriver: 'amdgpu' }, { address: '0000:05:00.1', originalDriver: 'pci-stub' }],
  });
  assert.deepEqual(k.writes, [
    ['bus/pci/devices/0000:05:00.0/driver_override', 'vfio-pci'],
    ['bus/pci/drivers/amdgpu/unbind', '0000:05:00.0'],
    ['bus/pci/drivers_probe', '0000:05:00.0'],
    ['bus/pci/devices/0000:05:00.1/driver_override', 'vfio-pci'],
    ['bus/pci/drivers/pci-stub/unbind', '0000:05:00.1'],
    ['bus/pci/drivers_probe', '0000:05:00.1'],
  ]);
  assert.equal(readPciDevice(host.sys, '05:00.0').driver, 'vfio-pci');
  assert.equal(readPciDevice(host.sys, '05:00.1').driver, 'vfio-pci');
  assert.ok(existsSync(join(host.dev, 'vfio/3')));

  k.writes.length = 0;
  assert.deepEqual(releaseVfio(host.sys, rec, { ops: k }), []);
  assert.deepEqual(k.writes.slice(0, 3), [
    ['bus/pci/devices/0000:05:00.0/driver_override', '\n'],
    ['bus/pci/drivers/vfio-pci/unbind', '0000:05:00.0'],
    ['bus/pci/drivers_probe', '0000:05:00.0'],
  ]);
  assert.equal(readPciDevice(host.sys, '05:00.0').driver, 'amdgpu');
  assert.equal(readPciDevice(host.sys, '05:00.1').driver, 'pci-stub');
});

test('the viable NIC group binds only the NIC, the bridge is untouched', () => {
  const host = copyPciFixture();
  const k = fakeKernel(host);
  const rec = bindVfio(host.sys, '03:00.0', { ops: k, dev: host.dev });
  assert.deepEqual(rec.members, [{ address: '0000:03:00.0', originalDriver: 'ixgbe' }]);
  assert.ok(k.writes.every(([p]) => !p.includes('00:01.0') && !p.includes('pcieport')));
  assert.equal(readPciDevice(host.sys, '00:01.0').driver, 'pcieport');
});

test('when the second member fails to unbind, the first goes back to its driver', () => {
  const host = copyPciFixture();
  const k = fakeKernel(host, (rel) => rel === 'bus/pci/drivers/pci-stub/unbind');
  const e = thrown(() => bindVfio(host.sys, '05:00.0', { ops: k, dev: host.dev }));
  assert.equal(e.details.device, '0000:05:00.1');
  assert.equal(e.details.step, 'unbind');
  assert.match(e.message, /0000:05:00\.1.*unbind.*given back/);
  assert.deepEqual(e.details.rollbackErrors, []);
  assert.equal(readPciDevice(host.sys, '05:00.0').driver, 'amdgpu');
  assert.equal(readPciDevice(host.sys, '05:00.1').driver, 'pci-stub');
  // and no override left behind
  assert.deepEqual(k.writes.filter(([p]) => p.endsWith('driver_override')).map(([, v]) => v), ['vfio-pci', 'vfio-pci', '\n', '\n']);
});

test('a missing /dev/vfio/<group> after binding is reported and the group given back', () => {
  const host = copyPciFixture();
  const k = fakeKernel(host);
  const noNode = { ...k, exists: (p: string) => !p.endsWith(join('vfio', '4')) && existsSync(p) };
  const e = thrown(() => bindVfio(host.sys, '06:00.0', { ops: noNode, dev: host.dev }));
  assert.equal(e.code, 'IOMMU_GROUP_NOT_VIABLE');
  assert.match(e.message, /vfio\/4 does not exist/);
  assert.equal(readPciDevice(host.sys, '06:00.0').driver, null);
});

test('no vfio-pci driver loaded: a clear error, nothing written', () => {
  const host = copyPciFixture();
  rmSync(join(host.sys, 'bus/pci/drivers/vfio-pci'), { recursive: true });
  const k = fakeKernel(host);
  assert.match(thrown(() => bindVfio(host.sys, '06:00.0', { ops: k, dev: host.dev })).message, /modprobe vfio-pci/);
  assert.deepEqual(k.writes, []);
});

test('vfioDeviceJson', () => {
  assert.deepEqual(vfioDeviceJson('03:00.0', 'hostdev0'), { driver: 'vfio-pci', host: '0000:03:00.0', id: 'hostdev0' });
});

test('a group-mate on a host driver that goes to the same guest (together) moves with the group', () => {
  const host = copyPciFixture();
  const k = fakeKernel(host);
  assert.equal(thrown(() => planVfioBind(host.sys, '04:00.0', { together: new Set(['0000:04:00.7']) })).code, 'IOMMU_GROUP_NOT_VIABLE');
  const plan = planVfioBind(host.sys, '04:00.0', { together: new Set(['0000:04:00.1']) });
  assert.deepEqual(plan.members.map((m) => [m.address, m.driver, m.action]), [['0000:04:00.0', 'nouveau', 'bind'], ['0000:04:00.1', 'nvme', 'bind']]);
  const rec = bindVfio(host.sys, '04:00.0', { ops: k, dev: host.dev, together: new Set(['0000:04:00.1']) });
  assert.deepEqual(rec.members, [{ address: '0000:04:00.0', originalDriver: 'nouveau' }, { address: '0000:04:00.1', originalDriver: 'nvme' }]);
  // the second device of the group has nothing left to move
  assert.deepEqual(bindVfio(host.sys, '04:00.1', { ops: k, dev: host.dev }).members, []);
  assert.deepEqual(releaseVfio(host.sys, rec, { ops: k }), []);
  assert.deepEqual([readPciDevice(host.sys, '04:00.0').driver, readPciDevice(host.sys, '04:00.1').driver], ['nouveau', 'nvme']);
});
