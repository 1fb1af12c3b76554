import { test } from 'node:test';
import assert from 'node:assert/strict';
import { moduleName, orderModules, builtinModules } from '../../../src/storage/tiny-modules.js';
import { debFileName, parseKernelDepends } from '../../../src/storage/tiny-debs.js';

// The shape busybox depmod writes for the Debian cloud kernel (dependencies in no particular order).
const DEP = `kernel/drivers/net/virtio_net.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko
kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_modern_dev.ko kernel/drivers/virtio/virtio_pci_legacy_dev.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko
kernel/net/core/failover.ko:
kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/virtio/virtio_pci_modern_dev.ko:
kernel/drivers/virtio/virtio_pci_legacy_dev.ko:
kernel/drivers/scsi/sd_mod.ko: kernel/drivers/scsi/scsi_mod.ko kernel/drivers/scsi/scsi_common.ko
kernel/drivers/scsi/scsi_mod.ko: kernel/drivers/scsi/scsi_common.ko
kernel/drivers/scsi/scsi_common.ko:
kernel/drivers/char/hw_random/virtio-rng.ko.xz: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
`;

function assertDepsFirst(order: string[]): void {
  const pos = new Map(order.map((p, i) => [p, i]));
  for (const line of DEP.trim().split('\n')) {
    const [mod, deps = ''] = line.split(':');
    if (!pos.has(mod!)) continue;
    for (const d of deps.trim().split(/\s+/).filter(Boolean)) {
      assert.ok(pos.has(d), `${d} (needed by ${mod}) is in the order`);
      assert.ok(pos.get(d)! < pos.get(mod!)!, `${d} comes before ${mod}`);
    }
  }
}

test('orderModules puts every dependency before the module that needs it', () => {
  const { order, missing } = orderModules(DEP, ['virtio_net', 'virtio_pci', 'sd_mod']);
  assertDepsFirst(order);
  assert.deepEqual(missing, []);
  assert.equal(new Set(order).size, order.length, 'each module once');
  assert.deepEqual(order.map(moduleName), [
    'virtio_ring', 'virtio', 'failover', 'net_failover', 'virtio_net',
    'virtio_pci_modern_dev', 'virtio_pci_legacy_dev', 'virtio_pci', 'scsi_common', 'scsi_mod', 'sd_mod',
  ]);
});

test('orderModules reports wanted modules that modules.dep lacks, and reads - as _', () => {
  const { order, missing } = orderModules(DEP, ['e1000', 'virtio_rng', 'ext4']);
  assert.deepEqual(missing, ['e1000', 'ext4']);
  assert.deepEqual(order, ['kernel/drivers/virtio/virtio_ring.ko', 'kernel/drivers/virtio/virtio.ko', 'kernel/drivers/char/hw_random/virtio-rng.ko.xz']);
});

test('orderModules refuses a dependency cycle and a dangling dependency', () => {
  assert.throws(() => orderModules('a.ko: b.ko\nb.ko: a.ko\n', ['a']), /cycle/);
  assert.throws(() => orderModules('a.ko: b.ko\n', ['a']), /does not list/);
});

test('module names, built-ins, the kernel package and .deb file names', () => {
  assert.equal(moduleName('kernel/drivers/char/hw_random/virtio-rng.ko.zst'), 'virtio_rng');
  assert.ok(builtinModules('kernel/fs/ext4/ext4.ko\nkernel/fs/jbd2/jbd2.ko\n').has('ext4'));
  assert.equal(parseKernelDepends('linux-image-amd64\n  Depends: linux-image-6.1.0-56-amd64\n'), 'linux-image-6.1.0-56-amd64');
  assert.equal(parseKernelDepends('linux-image-amd64\n  Depends: linux-image-6.1.0-56-amd64-unsigned\n'), null);
  assert.equal(parseKernelDepends('linux-image-amd64\n'), null);
  assert.equal(debFileName('Package: busybox-static\nVersion: 1:1.35.0-4+deb12u1+b1\nArchitecture: amd64\n'), 'busybox-static_1%3a1.35.0-4+deb12u1+b1_amd64.deb');
});
