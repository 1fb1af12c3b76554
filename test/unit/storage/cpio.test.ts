import { test } from 'node:test';
import assert from 'node:assert/strict';
import { newcArchive } from '../../../src/storage/cpio.js';

/** Read a newc archive back: name, mode, size and data of each member. */
function parse(buf: Buffer): { name: string; mode: number; data: Buffer; rdev: [number, number] }[] {
  const out = [];
  let off = 0;
  for (;;) {
    assert.equal(buf.toString('ascii', off, off + 6), '070701');
    const field = (i: number): number => parseInt(buf.toString('ascii', off + 6 + i * 8, off + 14 + i * 8), 16);
    const [mode, size, rmaj, rmin, nameSize] = [field(1), field(6), field(9), field(10), field(11)];
    const name = buf.toString('utf8', off + 110, off + 110 + nameSize - 1);
    let p = off + 110 + nameSize;
    p += (4 - (p % 4)) % 4;
    const data = buf.subarray(p, p + size);
    p += size;
    p += (4 - (p % 4)) % 4;
    off = p;
    if (name === 'TRAILER!!!') return out;
    out.push({ name, mode, data, rdev: [rmaj, rmin] as [number, number] });
  }
}

test('newc archives hold directories, files, symlinks and device nodes', () => {
  const a = newcArchive([
    { type: 'dir', path: 'dev' },
    { type: 'char', path: 'dev/console', major: 5, minor: 1 },
    { type: 'file', path: '/init', data: Buffer.from('#!/bin/sh\n'), mode: 0o755 },
    { type: 'symlink', path: 'bin/sh', target: '/bin/busybox' },
  ]);
  assert.equal(a.length % 512, 0);
  const m = parse(a);
  assert.deepEqual(m.map((e) => e.name), ['dev', 'dev/console', 'init', 'bin/sh']);
  assert.equal(m[0]!.mode, 0o040755);
  assert.deepEqual(m[1]!.rdev, [5, 1]);
  assert.equal(m[2]!.mode, 0o100755);
  assert.equal(m[2]!.data.toString(), '#!/bin/sh\n');
  assert.equal(m[3]!.mode, 0o120777);
  assert.equal(m[3]!.data.toString(), '/bin/busybox');
});
