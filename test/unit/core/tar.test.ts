import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isCorralError } from '../../../src/core/errors.js';
import { BLOCK, decodeHeader, encodeHeader, endBlocks, padding } from '../../../src/core/tar.js';

const invalidArchive = (e: unknown): boolean => isCorralError(e) && e.code === 'INVALID_ARCHIVE';

test('a header reads back as written: name, size, mtime', () => {
  const h = encodeHeader({ name: 'disks/root.qcow2', size: 123456, mtime: 1_700_000_000 });
  assert.equal(h.length, BLOCK);
  assert.deepEqual(decodeHeader(h), { name: 'disks/root.qcow2', size: 123456, mtime: 1_700_000_000 });
});

test('sizes of 8 GiB and more are written in base-256 and read back', () => {
  const big = 20 * 1024 ** 3 + 7;
  const h = encodeHeader({ name: 'disks/root.qcow2', size: big, mtime: 0 });
  assert.equal(h[124], 0x80);
  assert.equal(decodeHeader(h)?.size, big);
});

test('a zero block is the end; padding fills to 512 bytes', () => {
  assert.equal(decodeHeader(Buffer.alloc(BLOCK)), null);
  assert.equal(endBlocks().length, 2 * BLOCK);
  assert.deepEqual([padding(0), padding(1), padding(512), padding(513)], [0, 511, 0, 511]);
});

test('a changed byte, a short block, a link, a name that climbs out: INVALID_ARCHIVE', () => {
  const h = encodeHeader({ name: 'manifest.json', size: 10, mtime: 0 });
  const flipped = Buffer.from(h);
  flipped[130] = flipped[130]! ^ 0x01;
  assert.throws(() => decodeHeader(flipped), invalidArchive);
  assert.throws(() => decodeHeader(h.subarray(0, 300)), invalidArchive);
  const link = Buffer.from(h);
  link.write('2', 156, 'latin1');
  // the checksum made again, so that only the type is wrong
  link.write('        ', 148, 8, 'latin1');
  let sum = 0;
  for (const b of link) sum += b;
  link.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 8, 'latin1');
  assert.throws(() => decodeHeader(link), (e: unknown) => invalidArchive(e) && /regular file/.test((e as Error).message));
  assert.throws(() => encodeHeader({ name: '../etc/passwd x', size: 1, mtime: 0 }));
});

test('GNU tar lists and extracts what the encoder writes', () => {
  const dir = mkdtempSync(join(tmpdir(), 'corral-tar-'));
  try {
    const body = Buffer.from('hello archive\n');
    const tar = Buffer.concat([encodeHeader({ name: 'manifest.json', size: body.length, mtime: 1_700_000_000 }), body, Buffer.alloc(padding(body.length)), endBlocks()]);
    writeFileSync(join(dir, 'a.tar'), tar);
    assert.equal(execFileSync('tar', ['-tf', join(dir, 'a.tar')], { encoding: 'utf8' }), 'manifest.json\n');
    execFileSync('tar', ['-xf', join(dir, 'a.tar'), '-C', dir]);
    assert.equal(readFileSync(join(dir, 'manifest.json'), 'utf8'), 'hello archive\n');
    // and what GNU tar writes reads back here
    execFileSync('tar', ['--format=ustar', '-cf', join(dir, 'b.tar'), '-C', dir, 'manifest.json']);
    assert.deepEqual(decodeHeader(readFileSync(join(dir, 'b.tar')).subarray(0, BLOCK))?.name, 'manifest.json');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
