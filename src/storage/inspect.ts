/**
 * Safe inspection of an image someone hands us. Two layers: our own read of the qcow2 header (before
 * qemu-img ever opens the file, so a backing file or an external data file is never followed), then
 * `qemu-img info -f FORMAT` under resource limits (src/qemu/img.ts) and a check of what it reports.
 * An image is refused when it carries a backing file, an external data file or a `json:` name, is encrypted, or
 * is not what its declared format says.
 */
import { closeSync, openSync, readSync } from 'node:fs';
import { CorralError } from '../core/errors.js';
import { printable } from '../core/spec.js';
import type { ImgFormat, ImgInfo } from '../qemu/img.js';

export const QCOW2_MAGIC = Buffer.from([0x51, 0x46, 0x49, 0xfb]); // 'QFI\xfb'
const INCOMPAT_DATA_FILE = 1n << 2n;

/**
 * The largest virtual size an import takes: 64 TiB. qemu-img accepts qcow2 headers claiming up to 2^61 bytes, but
 * converting one above ~2 PiB fails (the copy's L1 table cannot grow) and one of a PiB takes many seconds of
 * empty-table walking; no Corral disk needs more.
 */
export const MAX_IMAGE_SIZE = 64 * 1024 ** 4;

function refuse(field: string, reason: string): CorralError {
  return new CorralError('INVALID_IMAGE', `image refused: ${field}: ${reason}`, { field, reason });
}

/** Bytes of a file at `position`: by path, or through a descriptor already open (an import's one open). */
function readHead(file: string | number, length: number, position = 0): Buffer {
  const buf = Buffer.alloc(length);
  const fd = typeof file === 'number' ? file : openSync(file, 'r');
  try {
    const n = readSync(fd, buf, 0, length, position);
    return buf.subarray(0, n);
  } finally {
    if (typeof file !== 'number') closeSync(fd);
  }
}

/** True when the first bytes are the qcow2 magic. */
export function isQcow2Header(head: Buffer): boolean {
  return head.length >= 4 && head.subarray(0, 4).equals(QCOW2_MAGIC);
}

/**
 * Look at the header before qemu-img does. Raw declared but qcow2 inside: refused (a guest would see the
 * qcow2 metadata, and a later probe could follow its backing file). qcow2: refuse a backing file or an
 * external data file straight from the header fields.
 */
export function checkImageHeader(path: string | number, format: ImgFormat): void {
  const head = readHead(path, 104);
  if (format === 'raw') {
    if (isQcow2Header(head)) throw refuse('format', 'the file is a qcow2 image (it starts with the qcow2 magic) but was declared raw');
    return;
  }
  if (!isQcow2Header(head) || head.length < 20) return; // not qcow2: qemu-img -f qcow2 refuses it with its own message
  const version = head.readUInt32BE(4);
  const backingOffset = head.readBigUInt64BE(8);
  const backingSize = head.readUInt32BE(16);
  if (backingOffset !== 0n && backingSize > 0) {
    const size = Math.min(backingSize, 1023);
    const name = backingOffset < BigInt(Number.MAX_SAFE_INTEGER) ? readHead(path, size, Number(backingOffset)).toString('latin1') : '';
    throw refuse('backing-filename', backingReason(name));
  }
  if (head.length >= 36 && head.readUInt32BE(32) !== 0) {
    // AES or LUKS: Corral has no key to give, and converting it fails later as a host error
    throw refuse('encrypted', `the qcow2 image is encrypted (method ${head.readUInt32BE(32)}); import a decrypted copy (qemu-img convert with its secret)`);
  }
  if (version >= 3 && head.length >= 80) {
    const incompat = head.readBigUInt64BE(72);
    if (incompat & INCOMPAT_DATA_FILE) throw refuse('format-specific.data.data-file', 'the qcow2 image keeps its data in an external data file');
  }
}

function backingReason(name: string): string {
  if (name.startsWith('json:')) return `the image has a backing file given as a json: name ("${printable(name.slice(0, 200))}")`;
  return `the image has a backing file ("${printable(name.slice(0, 200))}"); import a standalone image (qemu-img convert flattens it)`;
}

/** Check what `qemu-img info -f FORMAT` reports. */
export function checkImgInfo(info: ImgInfo, format: ImgFormat): void {
  if (typeof info.filename === 'string' && info.filename.startsWith('json:')) throw refuse('filename', 'the image resolves to a json: name');
  const backing = info['backing-filename'] ?? info['full-backing-filename'];
  if (typeof backing === 'string' && backing.length > 0) throw refuse('backing-filename', backingReason(backing));
  const data = info['format-specific']?.data;
  if (data && typeof data['data-file'] === 'string') throw refuse('format-specific.data.data-file', `the image keeps its data in an external data file ("${printable(String(data['data-file']).slice(0, 200))}")`);
  if (info.format !== format) throw refuse('format', `qemu-img reads it as ${printable(String(info.format))}, not ${format}`);
  if (info.encrypted === true) throw refuse('encrypted', 'the image is encrypted; import a decrypted copy (qemu-img convert with its secret)');
  if (data && data.corrupt === true) throw refuse('format-specific.data.corrupt', 'the qcow2 image is marked corrupt');
  if (!(info['virtual-size'] > 0)) throw refuse('virtual-size', 'the image is empty (virtual size 0)');
  if (info['virtual-size'] > MAX_IMAGE_SIZE) throw refuse('virtual-size', `the image claims ${info['virtual-size']} bytes, more than the 64 TiB an image may have`);
}
