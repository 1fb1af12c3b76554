/**
 * The head of an instance archive being uploaded through a controller (corral import): its first tar member, which
 * must be manifest.json (core/instance-archive.ts), read from the upload and checked, so that the controller can
 * place the instance (its vCPUs and memory, its name) before a byte goes to a host. At most the header, the
 * manifest (MAX_MANIFEST_BYTES) and its padding are read, plus what the last chunk held beyond them: `prefix`, all
 * the bytes read, is sent to the host first, then the rest of the upload (the host reads and checks the whole
 * archive, the manifest included, again). The stream is left paused.
 */
import type { Readable } from 'node:stream';
import { MANIFEST_NAME, MAX_MANIFEST_BYTES, decodeManifest, type ArchiveManifest } from '../core/instance-archive.js';
import { BLOCK, decodeHeader, invalidArchive, padding } from '../core/tar.js';

/** Bytes of `body` until there are at least `want` (with `have` read before), or its end; the stream left paused. */
function readUntil(body: Readable, have: Buffer, want: number): Promise<Buffer> {
  if (have.length >= want) return Promise.resolve(have);
  return new Promise((resolve, reject) => {
    const chunks = [have];
    let n = have.length;
    const finish = (e?: Error): void => {
      body.pause();
      body.off('data', onData);
      body.off('end', onEnd);
      body.off('error', onError);
      if (e) reject(e);
      else resolve(Buffer.concat(chunks));
    };
    const onData = (c: Buffer): void => {
      chunks.push(c);
      n += c.length;
      if (n >= want) finish();
    };
    const onEnd = (): void => finish();
    const onError = (e: Error): void => finish(e);
    body.on('data', onData);
    body.once('end', onEnd);
    body.once('error', onError);
    body.resume();
  });
}

/** The archive's manifest, checked, and every byte read to get it (INVALID_ARCHIVE when it is not a Corral archive). */
export async function readArchiveHead(body: Readable): Promise<{ manifest: ArchiveManifest; prefix: Buffer }> {
  let buf = await readUntil(body, Buffer.alloc(0), BLOCK);
  if (buf.length < BLOCK) throw invalidArchive('it ends inside its first header (truncated)');
  const first = decodeHeader(buf.subarray(0, BLOCK));
  if (!first || first.name !== MANIFEST_NAME) throw invalidArchive(`its first member is not ${MANIFEST_NAME}: not a Corral instance archive`);
  if (first.size > MAX_MANIFEST_BYTES) throw invalidArchive(`its manifest takes ${first.size} bytes, more than a manifest may`);
  const end = BLOCK + first.size + padding(first.size);
  buf = await readUntil(body, buf, end);
  if (buf.length < end) throw invalidArchive(`it ends before the end of ${MANIFEST_NAME} (truncated)`);
  return { manifest: decodeManifest(buf.subarray(BLOCK, BLOCK + first.size)), prefix: buf };
}
