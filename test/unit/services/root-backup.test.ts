import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { isCorralError } from '../../../src/core/errors.js';
import { instancePaths } from '../../../src/core/paths.js';
import type { ImageRecord } from '../../../src/storage/images.js';
import type { FakeDriver } from '../../../src/vm/fake-driver.js';
import { rootAtInstant } from '../../../src/services/root-backup.js';
import { started } from './lifecycle-harness.js';

/** A running fake instance whose root overlay is a real qcow2 over a real base image. */
async function setup(): Promise<{ h: Awaited<ReturnType<typeof started>>; image: ImageRecord; dir: string }> {
  const h = await started();
  const base = join(h.dataDir, 'base.qcow2');
  execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', base, '64M']);
  const dir = instancePaths(h.dataDir, h.row('vm').uuid).dir;
  execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', '-F', 'qcow2', '-b', base, join(dir, 'root.qcow2'), '128M']);
  const image: ImageRecord = { name: 'tiny', kind: 'disk', format: 'qcow2', disk: base, virtualSize: 64 * 1024 * 1024, createdAt: '', source: 'import' };
  return { h, image, dir };
}

const proc = (d: FakeDriver) => d.live()[0]!;

test('a running instance\'s root disk is read through a blockdev-backup (sync top) into an overlay on its image, then let go', async () => {
  const { h, image, dir } = await setup();
  const p = proc(h.driver);
  const r = await rootAtInstant({ instances: h.svc, pollMs: 1 }, h.row('vm'), image);
  assert.equal(r.consistency, 'backup');
  assert.equal(r.virtualSize, 128 * 1024 * 1024);
  assert.match(r.path, /\/backup-[0-9a-f]{8}\.qcow2$/);
  const calls = p.calls.filter((c) => /blockdev|job/.test(c));
  assert.deepEqual(calls, ['blockdev-add', 'blockdev-backup', 'query-jobs', 'job-dismiss', 'blockdev-del']);
  // the backup file backs onto the image (what the guest did not write reads from there), at the disk's size
  const info = JSON.parse(execFileSync('qemu-img', ['info', '--output=json', '-f', 'qcow2', r.path], { encoding: 'utf8' }));
  assert.equal(info['backing-filename'], image.disk);
  assert.equal(info['virtual-size'], 128 * 1024 * 1024);
  r.release();
  assert.deepEqual(readdirSync(dir).filter((f) => f.startsWith('backup-')), []);
});

test('a stopped instance\'s own overlay is read as it is; a failed backup leaves no file and no node', async () => {
  const { h, image, dir } = await setup();
  const p = proc(h.driver);
  p.failNext('blockdev-backup');
  await assert.rejects(rootAtInstant({ instances: h.svc, pollMs: 1 }, h.row('vm'), image), (e: unknown) => isCorralError(e) && e.code === 'QEMU_FAILED');
  assert.deepEqual(readdirSync(dir).filter((f) => f.startsWith('backup-')), []);
  assert.ok(p.calls.includes('blockdev-del'), 'the backup node is removed');
  await h.svc.kill('vm');
  const r = await rootAtInstant({ instances: h.svc }, h.row('vm'), image);
  assert.equal(r.consistency, 'stopped');
  assert.equal(r.path, join(dir, 'root.qcow2'));
  r.release();
  assert.ok(existsSync(r.path), 'the overlay itself is never removed');
});
