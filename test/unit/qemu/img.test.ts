import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CorralError } from '../../../src/core/errors.js';
import { convert, createOverlay, imgInfo, qemuImgErrorLine, resize } from '../../../src/qemu/img.js';
import { have } from '../fixtures.js';

const skip = have('qemu-img') && have('prlimit') ? false : 'qemu-img (qemu-utils) or prlimit (util-linux) is not installed';

test('qemu-img error lines: the last own line that is not a warning', () => {
  assert.equal(qemuImgErrorLine("qemu-img: warning: Shrinking an image\nqemu-img: Use the --shrink option.\n"), 'qemu-img: Use the --shrink option.');
  assert.equal(qemuImgErrorLine("qemu-img: warning: x\nUse the --shrink option\n"), 'Use the --shrink option');
  assert.equal(qemuImgErrorLine(''), 'qemu-img failed without a message');
});

test('overlay, resize, convert and info with explicit formats', { skip }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'corral-img-'));
  const base = join(dir, 'base.raw');
  writeFileSync(base, Buffer.alloc(1024 * 1024, 3));
  const ov = join(dir, 'ov.qcow2');
  await createOverlay(ov, base, 'raw', 4 * 1024 * 1024);
  const info = await imgInfo(ov, 'qcow2');
  assert.equal(info['virtual-size'], 4 * 1024 * 1024);
  assert.equal(info['backing-filename'], base);
  assert.equal(info['backing-filename-format'], 'raw');
  await resize(ov, 'qcow2', 8 * 1024 * 1024);
  assert.equal((await imgInfo(ov, 'qcow2'))['virtual-size'], 8 * 1024 * 1024);
  await assert.rejects(resize(ov, 'qcow2', 1024 * 1024), (e: unknown) => e instanceof CorralError && e.code === 'QEMU_FAILED' && /shrink/.test(e.message));

  const flat = join(dir, 'flat.qcow2');
  const seen: number[] = [];
  await convert(ov, 'qcow2', flat, 'qcow2', { onPercent: (p) => seen.push(p) });
  const flatInfo = await imgInfo(flat, 'qcow2');
  assert.equal(flatInfo['backing-filename'], undefined, 'convert writes a standalone image');
  assert.equal(seen[seen.length - 1], 100);

  await assert.rejects(imgInfo(base, 'qcow2'), (e: unknown) => e instanceof CorralError && e.code === 'INVALID_IMAGE' && /not in qcow2 format/.test(e.message));
  await assert.rejects(createOverlay(join(dir, 'x.qcow2'), join(dir, 'missing.raw'), 'raw', null), (e: unknown) => e instanceof CorralError && e.code === 'QEMU_FAILED');
});
