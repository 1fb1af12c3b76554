import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { isCorralError } from '../../../src/core/errors.js';
import { instancePaths } from '../../../src/core/paths.js';
import type { ImageRecord } from '../../../src/storage/images.js';
import type { FakeDriver } from '../../../src/vm/fake-driver.js';
import { disksAtInstant } from '../../../src/services/disks-at-instant.js';
import type { VolumeRecord } from '../../../src/storage/volumes.js';
import { started } from './lifecycle-harness.js';

/** A running fake instance whose root overlay is a real qcow2 over a real base image. */
async function setup(): Promise<{ h: Awaited<ReturnType<typeof started>>; image: ImageRecord; dir: string; volumes: { record: (n: string) => VolumeRecord } }> {
  const h = await started();
  const base = join(h.dataDir, 'base.qcow2');
  execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', base, '64M']);
  const dir = instancePaths(h.dataDir, h.row('vm').uuid).dir;
  execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', '-F', 'qcow2', '-b', base, join(dir, 'root.qcow2'), '128M']);
  const image: ImageRecord = { name: 'tiny', kind: 'disk', format: 'qcow2', disk: base, virtualSize: 64 * 1024 * 1024, createdAt: '', source: 'import' };
  const rec: VolumeRecord = { name: 'data', pool: 'default', format: 'qcow2', virtualSize: 32 * 1024 * 1024, path: join(h.dataDir, 'data.qcow2'), createdAt: '', backing: null, attachedTo: 'vm' };
  execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', rec.path, '32M']);
  const volumes = { record: (n: string): VolumeRecord => { assert.equal(n, 'data'); return rec; } };
  return { h, image, dir, volumes };
}

const proc = (d: FakeDriver) => d.live()[0]!;

test('a running instance\'s root disk and volume are read through blockdev-backups started in one transaction (root: sync top into an overlay on its image; volume: sync full into a standalone qcow2), then let go', async () => {
  const { h, image, dir, volumes } = await setup();
  h.svc.updateSpec('vm', { disks: [{ volume: 'data', bus: 'virtio-scsi' }] });
  const p = proc(h.driver);
  const r = await disksAtInstant({ instances: h.svc, volumes, pollMs: 1 }, h.row('vm'), image);
  assert.equal(r.consistency, 'backup');
  assert.equal(r.root.virtualSize, 128 * 1024 * 1024);
  assert.match(r.root.path, /\/backup-[0-9a-f]{8}-0\.qcow2$/);
  const calls = p.calls.filter((c) => /blockdev|job|transaction/.test(c));
  assert.deepEqual(calls, ['blockdev-add', 'blockdev-add', 'transaction', 'query-jobs', 'job-dismiss', 'job-dismiss', 'blockdev-del', 'blockdev-del']);
  // the root backup file backs onto the image (what the guest did not write reads from there), at the disk's size
  const info = JSON.parse(execFileSync('qemu-img', ['info', '--output=json', '-f', 'qcow2', r.root.path], { encoding: 'utf8' }));
  assert.equal(info['backing-filename'], image.disk);
  assert.equal(info['virtual-size'], 128 * 1024 * 1024);
  // the volume's backup stands alone, at the volume's size, named for the volume and its bus
  assert.equal(r.volumes.length, 1);
  const v = r.volumes[0]!;
  assert.deepEqual({ volume: v.volume, bus: v.bus, format: v.format, virtualSize: v.virtualSize }, { volume: 'data', bus: 'virtio-scsi', format: 'qcow2', virtualSize: 32 * 1024 * 1024 });
  assert.notEqual(v.path, r.root.path);
  const vinfo = JSON.parse(execFileSync('qemu-img', ['info', '--output=json', '-f', 'qcow2', v.path], { encoding: 'utf8' }));
  assert.equal(vinfo['backing-filename'], undefined);
  assert.equal(readdirSync(dir).filter((f) => f.startsWith('backup-')).length, 2);
  r.release();
  assert.deepEqual(readdirSync(dir).filter((f) => f.startsWith('backup-')), []);
});

test('a stopped instance\'s own files are read as they are; a failed backup leaves no file and no node', async () => {
  const { h, image, dir, volumes } = await setup();
  h.svc.updateSpec('vm', { disks: [{ volume: 'data', bus: 'virtio-blk' }] });
  const p = proc(h.driver);
  p.failNext('transaction');
  await assert.rejects(disksAtInstant({ instances: h.svc, volumes, pollMs: 1 }, h.row('vm'), image), (e: unknown) => isCorralError(e) && e.code === 'QEMU_FAILED');
  assert.deepEqual(readdirSync(dir).filter((f) => f.startsWith('backup-')), []);
  assert.equal(p.calls.filter((c) => c === 'blockdev-del').length, 2, 'both backup nodes are removed');
  await h.svc.kill('vm');
  const r = await disksAtInstant({ instances: h.svc, volumes }, h.row('vm'), image);
  assert.equal(r.consistency, 'stopped');
  assert.equal(r.root.path, join(dir, 'root.qcow2'));
  assert.deepEqual(r.volumes.map((v) => [v.volume, v.path, v.format]), [['data', volumes.record('data').path, 'qcow2']]);
  r.release();
  assert.ok(existsSync(r.root.path) && existsSync(r.volumes[0]!.path), 'the overlay and the volume themselves are never removed');
});
