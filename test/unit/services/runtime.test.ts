import { test } from 'node:test';
import assert from 'node:assert/strict';
import { instancePaths } from '../../../src/core/paths.js';
import { normalizeSpec } from '../../../src/core/spec.js';
import { buildArgv } from '../../../src/qemu/argv.js';
import { launchPlan, volumeDisk } from '../../../src/services/runtime.js';
import type { InstanceRow } from '../../../src/store/store.js';
import type { ImageRecord } from '../../../src/storage/images.js';

const UUID = '0b7c9a52-6d3e-4a51-9a53-3f1d2b1e9c01';
const image: ImageRecord = { name: 'tiny', kind: 'kernel', format: 'qcow2', disk: '/i/disk.qcow2', kernel: '/i/vmlinuz', initrd: '/i/initrd.img', virtualSize: 1, createdAt: 'x', source: 'tiny' };

function row(maxMemory: number | null = null): InstanceRow {
  const spec = normalizeSpec({ image: 'tiny', cpus: 2, memory: 256 * 1024 * 1024 });
  return { uuid: UUID, name: 'vm', spec: { ...spec, maxMemory }, state: 'stopped', accel: null, pid: null, pidStart: null, mac: '52:54:00:00:00:01', createdAt: 'x', startedAt: null, lastError: null, updatedAt: 'x' };
}

test('launch plan: a vhost-user-blk volume gets its storage daemon socket in the runtime dir and makes guest memory a shared memfd', () => {
  const p = instancePaths('/var/lib/corral', UUID);
  const plain = launchPlan(row(), image, 'tcg', p, { volumes: [{ volume: 'data1', bus: 'virtio-blk', path: '/v/d1.qcow2', format: 'qcow2' }] });
  assert.equal(plain.memoryBacking.share, false);
  const vhu = launchPlan(row(1024 * 1024 * 1024), image, 'tcg', p, { volumes: [{ volume: 'fast1', bus: 'vhost-user-blk', path: '/v/f1.raw', format: 'raw' }] });
  assert.equal(vhu.memoryBacking.share, true);
  const disk = vhu.disks.find((d) => d.id === 'vol-fast1')!;
  assert.equal(disk.socket, `${p.runDir}/vu-fast1.sock`);
  assert.equal(disk.serial, undefined, 'vhost-user-blk-pci has no serial property');
  const argv = buildArgv(vhu);
  assert.ok(argv.some((a) => a.includes('"id":"mem0"') && a.includes('memory-backend-memfd') && a.includes('"share":true')));
  assert.ok(argv.some((a) => a.includes('"id":"vmem0"') && a.includes('memory-backend-memfd') && a.includes('"share":true')), 'virtio-mem memory is shared too');
  assert.equal(volumeDisk({ volume: 'd', bus: 'virtio-blk', path: '/v', format: 'raw' }, p.runDir).socket, undefined);
});
