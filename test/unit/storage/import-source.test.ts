/**
 * An import reads the file it checked: one open (no symlink followed, no FIFO waited on), and qemu-img reads
 * through that descriptor with `backing: null`, so swapping the path after the checks changes nothing.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CorralError } from '../../../src/core/errors.js';
import { convert, imgInfo, untrustedInfo, untrustedSource } from '../../../src/qemu/img.js';
import { openImportSource } from '../../../src/storage/import-source.js';
import { have } from '../fixtures.js';

const skip = have('qemu-img') && have('qemu-io') && have('prlimit') ? false : 'qemu-img/qemu-io (qemu-utils) or prlimit is not installed';
const isSpec = (re: RegExp) => (e: unknown): boolean => e instanceof CorralError && e.code === 'INVALID_SPEC' && re.test(e.message);

test('the source is opened once: a symlink, a FIFO, a directory or nothing is refused with the reason', () => {
  const dir = mkdtempSync(join(tmpdir(), 'corral-src-'));
  try {
    writeFileSync(join(dir, 'real.raw'), Buffer.alloc(4096));
    symlinkSync(join(dir, 'real.raw'), join(dir, 'link.raw'));
    assert.throws(() => openImportSource(join(dir, 'link.raw')), isSpec(/is a symlink: give the image file itself/));
    execFileSync('mkfifo', [join(dir, 'fifo')]);
    assert.throws(() => openImportSource(join(dir, 'fifo')), isSpec(/is not a regular file/), 'a FIFO is refused, not waited on');
    assert.throws(() => openImportSource(dir), isSpec(/is not a regular file/));
    assert.throws(() => openImportSource(join(dir, 'none')), isSpec(/cannot read .*ENOENT/));
    assert.throws(() => openImportSource(''), isSpec(/a file path is required/));
    const src = openImportSource(join(dir, 'real.raw'));
    assert.equal(src.size, 4096);
    assert.equal(src.fdPath, `/proc/${process.pid}/fd/${src.fd}`);
    src.close();
    src.close(); // twice is fine
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('qemu-img reads the opened file whatever the path points to now, and never its backing file', { skip }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'corral-src-'));
  try {
    const good = join(dir, 'upload.qcow2');
    execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', good, '8M']);
    const src = openImportSource(good);
    try {
      // swapped after the checks for a bigger image: what qemu-img reads is still the one opened
      const other = join(dir, 'other.qcow2');
      execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', other, '64M']);
      renameSync(other, good);
      assert.equal((await untrustedInfo(src.fdPath, 'qcow2'))['virtual-size'], 8 * 1024 * 1024);
      assert.equal((await imgInfo(good, 'qcow2'))['virtual-size'], 64 * 1024 * 1024, 'the path now names the other file');
    } finally {
      src.close();
    }
    // an image with a backing file: convert through the descriptor never opens it (backing: null)
    const secret = join(dir, 'secret.raw');
    writeFileSync(secret, Buffer.alloc(65536, 0x53));
    const ov = join(dir, 'ov.qcow2');
    execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', '-F', 'raw', '-b', secret, ov]);
    const s2 = openImportSource(ov);
    try {
      const out = join(dir, 'out.qcow2');
      await convert(s2.fdPath, 'qcow2', out, 'qcow2', { untrusted: true });
      assert.match(execFileSync('qemu-io', ['-f', 'qcow2', '-c', 'read -P 0 0 64k', out], { encoding: 'utf8' }), /read 65536\/65536/, 'the backing file\'s bytes were not read');
      await assert.rejects(convert(s2.fdPath, 'qcow2', join(dir, 'slow.qcow2'), 'qcow2', { untrusted: true, timeoutMs: 1 }), (e: unknown) => e instanceof CorralError && e.code === 'TIMEOUT');
    } finally {
      s2.close();
    }
    assert.throws(() => untrustedSource(ov, 'qcow2'), (e: unknown) => e instanceof CorralError && e.code === 'INTERNAL', 'only a descriptor path is an untrusted source');
    assert.equal(untrustedSource('/proc/1/fd/3', 'raw'), 'json:{"driver":"raw","file":{"driver":"file","filename":"/proc/1/fd/3"}}');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
