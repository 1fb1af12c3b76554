import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { isCorralError } from '../../../src/core/errors.js';
import { IDE_MAX, SATA_MAX, parseBus, planAttach, planDetach, volumeIds, type InstanceDisk } from '../../../src/core/disks.js';
import type { LaunchPlan } from '../../../src/qemu/argv.js';
import { devicePaths } from '../../../src/services/device-paths.js';
import { FIXTURES } from '../fixtures.js';

function code(fn: () => unknown, c: string, field?: string): void {
  assert.throws(fn, (e: unknown) => isCorralError(e) && e.code === c && (field === undefined || e.details?.field === field));
}

test('bus: virtio-blk by default; unknown buses are refused', () => {
  assert.equal(parseBus(undefined), 'virtio-blk');
  assert.equal(parseBus('ide'), 'ide');
  assert.equal(parseBus('virtio-scsi'), 'virtio-scsi');
  assert.equal(parseBus('sata'), 'sata');
  code(() => parseBus('usb', 'rootBus'), 'INVALID_SPEC', 'rootBus');
  code(() => parseBus('usb'), 'INVALID_SPEC', 'bus');
  code(() => planAttach('vm', [], 'data1', 'floppy', null), 'INVALID_SPEC', 'bus');
});

test('attach: adds the disk; a volume attached elsewhere is VOLUME_IN_USE naming the instance', () => {
  assert.deepEqual(planAttach('vm', [], 'data1', undefined, null), [{ volume: 'data1', bus: 'virtio-blk' }]);
  assert.throws(() => planAttach('vm', [], 'data1', 'ide', 'other'), (e: unknown) => isCorralError(e) && e.code === 'VOLUME_IN_USE' && /instance "other"/.test(e.message) && e.details?.instance === 'other');
  code(() => planAttach('vm', [{ volume: 'data1', bus: 'ide' }], 'data1', 'ide', 'vm'), 'ALREADY_EXISTS');
  code(() => planAttach('vm', [], 'Bad_Name', 'ide', null), 'INVALID_SPEC', 'volume');
});

test('attach: at most four IDE devices; other buses are not counted', () => {
  let disks: InstanceDisk[] = [];
  for (let i = 0; i < IDE_MAX; i++) disks = planAttach('vm', disks, `d${i}`, 'ide', null);
  disks = planAttach('vm', disks, 'v1', 'virtio-blk', null);
  code(() => planAttach('vm', disks, 'd9', 'ide', null), 'INVALID_SPEC', 'bus');
  assert.equal(planAttach('vm', disks, 'd9', 'virtio-scsi', null).length, IDE_MAX + 2);
});

test('attach: six SATA ports, the root disk counted when it is on that bus', () => {
  let disks: InstanceDisk[] = [];
  for (let i = 0; i < SATA_MAX; i++) disks = planAttach('vm', disks, `s${i}`, 'sata', null);
  code(() => planAttach('vm', disks, 's9', 'sata', null), 'INVALID_SPEC', 'bus');
  const five = disks.slice(0, SATA_MAX - 1);
  assert.equal(planAttach('vm', five, 's9', 'sata', null).length, SATA_MAX);
  code(() => planAttach('vm', five, 's9', 'sata', null, 'sata'), 'INVALID_SPEC', 'bus');
  code(() => planAttach('vm', disks.slice(0, 3).map((d) => ({ ...d, bus: 'ide' as const })), 'i9', 'ide', null, 'ide'), 'INVALID_SPEC', 'bus');
});

test('detach: only an attached volume', () => {
  const { disk, rest } = planDetach('vm', [{ volume: 'a', bus: 'ide' }, { volume: 'b', bus: 'virtio-blk' }], 'a');
  assert.deepEqual(disk, { volume: 'a', bus: 'ide' });
  assert.deepEqual(rest, [{ volume: 'b', bus: 'virtio-blk' }]);
  code(() => planDetach('vm', [], 'a'), 'INVALID_SPEC', 'volume');
});

test('QEMU ids: vol-<name>, node names kept within 31 characters', () => {
  assert.deepEqual(volumeIds('data1'), { id: 'vol-data1', node: 'vol-data1-fmt' });
  const long = volumeIds('a'.repeat(63));
  assert.equal(long.id, `vol-${'a'.repeat(63)}`);
  assert.ok(long.node.length <= 31 && /^vol-h[0-9a-f]{16}-fmt$/.test(long.node));
});

test('device paths: ide and sata are emulated (PIIX, ICH9 AHCI), virtio-blk and virtio-scsi paravirtual', () => {
  const plan = JSON.parse(readFileSync(join(FIXTURES, 'argv', 'attached-disks.plan.json'), 'utf8')) as LaunchPlan;
  const disks = devicePaths(plan).filter((d) => d.kind === 'disk');
  const by = (id: string) => disks.find((d) => d.id === id)!;
  assert.equal(by('vol-data1').approach, 'paravirtual');
  assert.equal(by('vol-logs').approach, 'paravirtual');
  assert.match(by('vol-data1').dataPath, /^guest virtio-blk -> iothread io-vol-data1 in QEMU -> QEMU block layer \(qcow2; O_DIRECT, io_uring AIO\) -> \/var\/lib\/corral\/volumes\/data1\/disk\.qcow2$/);
  assert.match(by('vol-logs').dataPath, /^guest virtio-scsi -> virtio-scsi controller scsi0 \(iothread io-scsi0\) .*-> \/var\/lib\/corral\/volumes\/logs\/disk\.raw$/);
  assert.equal(by('vol-sata1').approach, 'emulated');
  assert.match(by('vol-sata1').dataPath, /^guest sata -> QEMU emulated AHCI controller \(ICH9\) sata0 -> .*\/volumes\/sata1\/disk\.qcow2$/);
  assert.equal(by('vol-old1').approach, 'emulated');
  assert.equal(by('vol-old1').qemuDevice, 'ide-hd');
  assert.match(by('vol-old1').dataPath, /^guest ide -> QEMU emulated IDE controller \(PIIX\) -> .*\/volumes\/old1\/disk\.qcow2$/);
});

test('vhost-user-blk: a disk bus that needs shared memory, never the root disk bus', async () => {
  const { needsSharedMemory, parseRootBus, isVhostUser, HOTPLUG_BUSES } = await import('../../../src/core/disks.js');
  assert.equal(parseBus('vhost-user-blk'), 'vhost-user-blk');
  assert.ok(isVhostUser('vhost-user-blk'));
  assert.equal(isVhostUser('virtio-blk'), false);
  assert.ok(HOTPLUG_BUSES.includes('vhost-user-blk'));
  assert.equal(needsSharedMemory([{ bus: 'virtio-blk' }, { bus: 'ide' }]), false);
  assert.equal(needsSharedMemory([{ bus: 'virtio-blk' }, { bus: 'vhost-user-blk' }]), true);
  assert.equal(parseRootBus(undefined), 'virtio-blk');
  assert.equal(parseRootBus('sata'), 'sata');
  assert.throws(() => parseRootBus('vhost-user-blk'), (e: unknown) => isCorralError(e) && e.code === 'INVALID_SPEC' && e.details?.field === 'rootBus'
    && /vhost-user-blk cannot be the root disk's bus: .*no storage daemon serves/.test(e.message));
  assert.deepEqual(planAttach('vm', [{ volume: 'a', bus: 'virtio-blk' }], 'b', 'vhost-user-blk', null), [{ volume: 'a', bus: 'virtio-blk' }, { volume: 'b', bus: 'vhost-user-blk' }]);
});
