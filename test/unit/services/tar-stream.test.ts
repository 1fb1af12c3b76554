import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { isCorralError } from '../../../src/core/errors.js';
import { TarReader, tarSize, tarStream } from '../../../src/services/tar-stream.js';

async function bytesOf(r: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of r) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

/** A stream of `buf` in chunks of `size` bytes (headers and members straddle chunk edges). */
function chunked(buf: Buffer, size: number): Readable {
  const parts: Buffer[] = [];
  for (let i = 0; i < buf.length; i += size) parts.push(buf.subarray(i, i + size));
  return Readable.from(parts);
}

test('an archive written from a buffer and a file reads back member by member, with sha256 and size', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'corral-tarstream-'));
  try {
    const data = Buffer.alloc(70_001, 7);
    data.write('the disk', 1000);
    writeFileSync(join(dir, 'disk'), data);
    const members = [{ name: 'manifest.json', data: Buffer.from('{"a":1}') }, { name: 'disks/root.qcow2', data: join(dir, 'disk') }];
    const tar = await bytesOf(tarStream(members));
    assert.equal(tar.length, tarSize(members));
    let seen = 0;
    const r = new TarReader(chunked(tar, 777), (n) => { seen = n; });
    const m = await r.next();
    assert.equal(m?.name, 'manifest.json');
    assert.equal((await r.read(m!.size)).toString(), '{"a":1}');
    await r.read(512 - m!.size);
    const d = await r.next();
    assert.equal(d?.name, 'disks/root.qcow2');
    const got = await r.toFile(d!, join(dir, 'out'));
    assert.deepEqual(got, { size: data.length, sha256: createHash('sha256').update(data).digest('hex') });
    assert.ok(readFileSync(join(dir, 'out')).equals(data));
    assert.equal(await r.next(), null);
    assert.equal(await r.restIsZeros(), true);
    assert.equal(seen, tar.length);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a truncated archive is INVALID_ARCHIVE, inside a member as inside a header', async () => {
  const tar = await bytesOf(tarStream([{ name: 'manifest.json', data: Buffer.alloc(2000, 1) }]));
  const dir = mkdtempSync(join(tmpdir(), 'corral-tarstream-'));
  try {
    const cut = new TarReader(chunked(tar.subarray(0, 1500), 100));
    const e = await cut.next();
    await assert.rejects(cut.toFile(e!, join(dir, 'x')), (err: unknown) => isCorralError(err) && err.code === 'INVALID_ARCHIVE' && /truncated/.test((err as Error).message));
    const header = new TarReader(chunked(tar.subarray(0, 300), 100));
    await assert.rejects(header.next(), (err: unknown) => isCorralError(err) && err.code === 'INVALID_ARCHIVE');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
