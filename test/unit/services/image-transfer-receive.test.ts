/**
 * A migration's base image received by the destination (ImageTransfer.receive, through upload-file.ts as the API's
 * uploads are): the file as announced is kept; more bytes than announced are refused before they are written past
 * the size, fewer or other bytes are refused too, and a refusal removes the staging folder.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { CorralError } from '../../../src/core/errors.js';
import type { ImageIdentity } from '../../../src/core/migration-disks.js';
import type { EventBus } from '../../../src/services/events.js';
import { ImageTransfer } from '../../../src/services/image-transfer.js';
import { ImageStore } from '../../../src/storage/images.js';

const DISK = Buffer.alloc(70_000, 3);
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

function setup(): { transfer: ImageTransfer; images: ImageStore; staged: () => string[] } {
  const images = new ImageStore(mkdtempSync(join(tmpdir(), 'corral-transfer-')));
  const transfer = new ImageTransfer({ images, events: { publish: () => undefined } as unknown as EventBus, removeImage: () => undefined, log: { warn: () => undefined } });
  const want: ImageIdentity = { name: 'base', kind: 'disk', format: 'raw', digest: 'x', files: [{ role: 'disk', size: DISK.length, sha256: sha(DISK) }] };
  transfer.begin('vm1', want);
  return { transfer, images, staged: () => readdirSync(images.dir).filter((n) => n.startsWith('.staging-')) };
}

/** The body in chunks of 16 KiB, as a socket gives it. */
const chunks = (b: Buffer): Readable => Readable.from(Array.from({ length: Math.ceil(b.length / 16384) }, (_, i) => b.subarray(i * 16384, (i + 1) * 16384)));

test('the file as announced is written whole into the staging folder', async () => {
  const { transfer, images, staged } = setup();
  assert.deepEqual(await transfer.receive('vm1', 'disk', chunks(DISK)), { size: DISK.length, sha256: sha(DISK) });
  const [dir] = staged();
  assert.ok(dir);
  const files = readdirSync(join(images.dir, dir));
  assert.equal(files.length, 1);
  assert.deepEqual(readFileSync(join(images.dir, dir, files[0]!)), DISK);
});

test('more bytes than announced: INVALID_IMAGE, the staging folder removed', async () => {
  const { transfer, staged } = setup();
  await assert.rejects(transfer.receive('vm1', 'disk', chunks(Buffer.concat([DISK, Buffer.alloc(5000)]))),
    (e: unknown) => e instanceof CorralError && e.code === 'INVALID_IMAGE' && /more than the 70000 bytes announced/.test(e.message));
  assert.deepEqual(staged(), []);
});

test('fewer bytes than announced: MIGRATION_FAILED; other bytes of the right size: INVALID_IMAGE; nothing staged after either', async () => {
  const a = setup();
  await assert.rejects(a.transfer.receive('vm1', 'disk', chunks(DISK.subarray(0, 40_000))),
    (e: unknown) => e instanceof CorralError && e.code === 'MIGRATION_FAILED' && /40000 of 70000/.test(e.message));
  assert.deepEqual(a.staged(), []);
  const b = setup();
  await assert.rejects(b.transfer.receive('vm1', 'disk', chunks(Buffer.alloc(DISK.length, 4))),
    (e: unknown) => e instanceof CorralError && e.code === 'INVALID_IMAGE' && /sha256/.test(e.message));
  assert.deepEqual(b.staged(), []);
  assert.equal(existsSync(join(b.images.dir, 'base')), false);
});
