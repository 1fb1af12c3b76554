import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
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
    assert.deepEqual(got, { size: data.length, sha256: createHash('sha256').update(data).digest('hex'), written: data.length });
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

test('a gzip member is decompressed as it comes (its sha256 of the member\'s bytes), at most the bytes allowed; data that is not gzip is INVALID_ARCHIVE', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'corral-tarstream-'));
  try {
    const disk = Buffer.alloc(300_000);
    disk.write('a whole disk', 200_000);
    const gz = gzipSync(disk);
    const tar = await bytesOf(tarStream([{ name: 'disks/root.qcow2.gz', data: gz }, { name: 'disks/other.qcow2.gz', data: gz }, { name: 'bad.gz', data: Buffer.from('not gzip at all') }]));
    const r = new TarReader(chunked(tar, 1000));
    const got = await r.toFile((await r.next())!, join(dir, 'root'), { gunzip: { maxBytes: disk.length } });
    assert.deepEqual(got, { size: gz.length, sha256: createHash('sha256').update(gz).digest('hex'), written: disk.length });
    assert.ok(readFileSync(join(dir, 'root')).equals(disk));
    // a member that decompresses to more than its manifest says: refused (a gzip bomb never fills the disk)
    await assert.rejects(r.toFile((await r.next())!, join(dir, 'other'), { gunzip: { maxBytes: 1000 } }), (e: unknown) => isCorralError(e) && e.code === 'INVALID_ARCHIVE' && /more than the 1000 bytes/.test((e as Error).message));
    const r2 = new TarReader(chunked(tar, 1000));
    await r2.toFile((await r2.next())!, join(dir, 'a'), { gunzip: { maxBytes: disk.length } });
    await r2.toFile((await r2.next())!, join(dir, 'b'));
    await assert.rejects(r2.toFile((await r2.next())!, join(dir, 'c'), { gunzip: { maxBytes: 100 } }), (e: unknown) => isCorralError(e) && e.code === 'INVALID_ARCHIVE' && /bad\.gz is not whole gzip data/.test((e as Error).message));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
