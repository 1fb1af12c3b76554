import { test } from 'node:test';
import assert from 'node:assert/strict';
import { listPciDevices, parsePciAddress, pciClassName, readPciDevice } from '../../../src/host/pci.js';
import { copyPciFixture } from './pci-fixture.js';

const code = (f: () => unknown): unknown => {
  try {
    f();
  } catch (e) {
    return (e as { code?: string }).code;
  }
  return 'no error';
};

test('parsePciAddress accepts full and short forms, refuses anything else', () => {
  assert.equal(parsePciAddress('0000:03:00.0'), '0000:03:00.0');
  assert.equal(parsePciAddress('03:00.0'), '0000:03:00.0');
  assert.equal(parsePciAddress('0000:AF:1F.7'), '0000:af:1f.7');
  for (const bad of ['03:00', '0000:03:00.0/../../x', 'zz:00.0', '../0000:03:00.0', '0000:03:00.8', '0000:03:20.0', '', ' 03:00.0', '03:00.0\n']) {
    try {
      parsePciAddress(bad);
      assert.fail(`accepted ${JSON.stringify(bad)}`);
    } catch (e) {
      assert.equal((e as { code?: string }).code, 'INVALID_SPEC', bad);
      assert.equal((e as { details: { field: string } }).details.field, 'address');
    }
  }
});

test('class names for common classes', () => {
  assert.equal(pciClassName('020000'), 'Ethernet controller');
  assert.equal(pciClassName('0x010802'), 'NVMe controller');
  assert.equal(pciClassName('030000'), 'VGA controller');
  assert.equal(pciClassName('0c0330'), 'USB controller');
  assert.equal(pciClassName('060400'), 'PCI bridge');
  assert.equal(pciClassName('028000'), 'Network controller');
  assert.equal(pciClassName(null), 'unknown');
});

test('listPciDevices reads the fake tree', () => {
  const { sys } = copyPciFixture();
  const devs = listPciDevices(sys);
  assert.deepEqual(devs.map((d) => d.address), [
    '0000:00:00.0', '0000:00:01.0', '0000:03:00.0', '0000:04:00.0', '0000:04:00.1', '0000:05:00.0', '0000:05:00.1', '0000:06:00.0', '0000:07:00.0',
  ]);
  const nic = devs.find((d) => d.address === '0000:03:00.0')!;
  assert.deepEqual(nic, {
    address: '0000:03:00.0', vendor: '8086', device: '10fb', class: '020000', classCode: '0200', className: 'Ethernet controller',
    driver: 'ixgbe', iommuGroup: 1, iommuGroupPeers: ['0000:00:01.0'], numaNode: 0, sriov: { totalVfs: 4, numVfs: 0, vfs: [] },
  });
  const gpu = devs.find((d) => d.address === '0000:05:00.0')!;
  assert.equal(gpu.numaNode, null);
  assert.equal(gpu.sriov, null);
  const usb = devs.find((d) => d.address === '0000:06:00.0')!;
  assert.equal(usb.driver, null);
  assert.deepEqual(usb.iommuGroupPeers, []);
  assert.equal(devs.find((d) => d.address === '0000:07:00.0')!.iommuGroup, null);
});

test('readPciDevice: absent -> PCI_DEVICE_NOT_FOUND, malformed -> INVALID_SPEC', () => {
  const { sys } = copyPciFixture();
  assert.equal(readPciDevice(sys, '04:00.1').className, 'NVMe controller');
  assert.equal(code(() => readPciDevice(sys, '0000:09:00.0')), 'PCI_DEVICE_NOT_FOUND');
  assert.equal(code(() => readPciDevice(sys, '0000:03:00.0/../../x')), 'INVALID_SPEC');
});
