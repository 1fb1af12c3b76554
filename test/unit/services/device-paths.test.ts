import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { LaunchPlan } from '../../../src/qemu/argv.js';
import { devicePaths } from '../../../src/services/device-paths.js';
import { FIXTURES } from '../fixtures.js';

const plan = JSON.parse(readFileSync(join(FIXTURES, 'argv', 'tiny-kernel.plan.json'), 'utf8')) as LaunchPlan;

test('each disk and NIC is named with its approach, QEMU device and data path', () => {
  const devs = devicePaths(plan);
  const disk = devs.find((d) => d.kind === 'disk')!;
  assert.deepEqual([disk.id, disk.approach, disk.qemuDevice], ['disk0', 'paravirtual', 'virtio-blk-pci']);
  assert.match(disk.dataPath, /^guest virtio-blk -> iothread io-disk0 in QEMU -> QEMU block layer \(qcow2; page cache, threads AIO\) -> \/var\/lib\/corral\/instances\/.*\/root\.qcow2$/);
  const nic = devs.find((d) => d.kind === 'nic')!;
  assert.deepEqual([nic.approach, nic.qemuDevice], ['paravirtual', 'virtio-net-pci']);
  assert.match(nic.dataPath, /52:54:00:12:34:56/);
  assert.ok(devs.some((d) => d.qemuDevice === 'virtio-balloon-pci'));
  assert.equal(devs.some((d) => d.qemuDevice === 'virtio-mem-pci'), false, 'no virtio-mem without maxMemory');
  const e1000 = devicePaths({ ...plan, nics: [{ ...plan.nics[0]!, model: 'e1000' }] }).find((d) => d.kind === 'nic')!;
  assert.equal(e1000.approach, 'emulated');
});

test('NICs: each model and back end named with its approach (emulated, paravirtual, vhost-kernel, vhost-user, passthrough, sriov-vf)', () => {
  const nicsPlan = JSON.parse(readFileSync(join(FIXTURES, 'argv', 'nics.plan.json'), 'utf8')) as LaunchPlan;
  const devs = devicePaths(nicsPlan);
  const by = (id: string) => devs.find((d) => d.id === id)!;
  assert.equal(by('net0').approach, 'paravirtual');
  assert.match(by('net0').dataPath, /slirp NAT \(forwards tcp::2222-:22, udp:127\.0\.0\.1:5353-:53\)/);
  assert.deepEqual([by('net1').approach, by('net1').qemuDevice], ['emulated', 'e1000']);
  assert.match(by('net1').dataPath, /^guest e1000 .* -> QEMU device emulation -> tap ct0b7c9a52n1 -> bridge of network "lan"$/);
  assert.deepEqual([by('net2').approach, by('net2').qemuDevice], ['emulated', 'rtl8139']);
  assert.equal(by('net3').approach, 'vhost-kernel');
  assert.match(by('net3').dataPath, /vhost-net kernel worker x 4 queue pairs \(no QEMU in the data path\) -> tap ct0b7c9a52n3/);
  assert.equal(by('net4').approach, 'vhost-user');
  assert.match(by('net4').dataPath, /vhost-user back end on \/run\/openvswitch\/vhu0\.sock/);
  assert.deepEqual([by('hostdev0').approach, by('hostdev0').qemuDevice, by('hostdev0').kind], ['passthrough', 'vfio-pci', 'other']);
  assert.deepEqual([by('net5').approach, by('net5').kind], ['sriov-vf', 'nic']);
  assert.match(by('net5').dataPath, /virtual function 0000:3b:02\.1 of 0000:3b:00\.1/);
});

test('a vhost-user-blk disk: no QEMU in the data path; the storage daemon pid while it runs; shared memory listed', () => {
  const sock = '/var/lib/corral/run/u/vu-fast1.sock';
  const p: LaunchPlan = {
    ...plan, memoryBacking: { ...plan.memoryBacking, share: true },
    disks: [...plan.disks, { id: 'vol-fast1', path: '/v/fast1.qcow2', format: 'qcow2', bus: 'vhost-user-blk', socket: sock }],
  };
  const stopped = devicePaths(p).find((d) => d.id === 'vol-fast1')!;
  assert.deepEqual([stopped.kind, stopped.approach, stopped.qemuDevice], ['disk', 'vhost-user', 'vhost-user-blk-pci']);
  assert.equal(stopped.dataPath, `guest virtio-blk (vhost-user) -> shared guest memory -> qemu-storage-daemon (started with the instance) (socket ${sock}) -> its block layer (qcow2; page cache, threads AIO) -> /v/fast1.qcow2`);
  assert.doesNotMatch(stopped.dataPath, /QEMU block layer|iothread/);
  const running = devicePaths(p, { 'vol-fast1': 4321 }).find((d) => d.id === 'vol-fast1')!;
  assert.match(running.dataPath, /-> qemu-storage-daemon 4321 \(socket /);
  const mem = devicePaths(p).find((d) => d.id === 'mem0')!;
  assert.deepEqual([mem.kind, mem.approach, mem.qemuDevice], ['memory', 'vhost-user', 'memory-backend-memfd (share=on)']);
  assert.equal(devicePaths(plan).some((d) => d.id === 'mem0'), false, 'no shared memory without vhost-user');
});
