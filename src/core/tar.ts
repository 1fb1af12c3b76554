/**
 * The tar framing of an instance archive (POSIX ustar, the format `tar` reads everywhere): a 512-byte header per
 * member, the member's bytes, zeros up to the next 512-byte block, and two zero blocks at the end. Only regular
 * files are written or accepted. A size of 8 GiB or more is written in base-256 (the GNU extension GNU tar and
 * bsdtar read), as a disk may be that big. Pure: buffers in, buffers out.
 */
import { CorralError } from './errors.js';

export const BLOCK = 512;

export interface TarEntry {
  name: string;
  size: number;
  /** seconds since the epoch */
  mtime: number;
}

/** INVALID_ARCHIVE, saying what is wrong with the archive (its framing here; its members and manifest elsewhere). */
export function invalidArchive(message: string): CorralError {
  return new CorralError('INVALID_ARCHIVE', `the archive is not valid: ${message}`);
}

function writeOctal(buf: Buffer, value: number, offset: number, length: number): void {
  buf.write(`${value.toString(8).padStart(length - 1, '0')}\0`, offset, length, 'latin1');
}

/** Bytes of zero padding after a member of `size` bytes. */
export function padding(size: number): number {
  return (BLOCK - (size % BLOCK)) % BLOCK;
}

/** The two zero blocks that end an archive. */
export function endBlocks(): Buffer {
  return Buffer.alloc(2 * BLOCK);
}

/** A regular file's ustar header. */
export function encodeHeader(e: TarEntry): Buffer {
  if (!/^[A-Za-z0-9._/-]{1,100}$/.test(e.name)) throw new CorralError('INTERNAL', `tar member name "${e.name}" is not a plain name of at most 100 characters`);
  if (!Number.isSafeInteger(e.size) || e.size < 0) throw new CorralError('INTERNAL', `tar member size ${e.size} is not a byte count`);
  const h = Buffer.alloc(BLOCK);
  h.write(e.name, 0, 100, 'latin1');
  writeOctal(h, 0o644, 100, 8);
  writeOctal(h, 0, 108, 8);
  writeOctal(h, 0, 116, 8);
  if (e.size < 8 ** 11) writeOctal(h, e.size, 124, 12);
  else {
    // base-256: the first byte's top bit set, the value big-endian in the rest of the 12 bytes
    h[124] = 0x80;
    h.writeBigUInt64BE(BigInt(e.size), 128);
  }
  writeOctal(h, Math.max(0, Math.floor(e.mtime)), 136, 12);
  h.write('        ', 148, 8, 'latin1');
  h.write('0', 156, 1, 'latin1');
  h.write('ustar\0', 257, 6, 'latin1');
  h.write('00', 263, 2, 'latin1');
  let sum = 0;
  for (const b of h) sum += b;
  h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 8, 'latin1');
  return h;
}

function readOctal(h: Buffer, offset: number, length: number, field: string): number {
  if ((h[offset]! & 0x80) !== 0) {
    // base-256: only positive values that fit in 8 bytes
    for (let i = offset + 1; i < offset + length - 8; i++) if (h[i] !== 0) throw invalidArchive(`the ${field} field is too large`);
    const v = h.readBigUInt64BE(offset + length - 8);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw invalidArchive(`the ${field} field is too large`);
    return Number(v);
  }
  const text = h.toString('latin1', offset, offset + length).replace(/[\0 ]+$/, '').replace(/^ +/, '');
  if (!/^[0-7]*$/.test(text)) throw invalidArchive(`the ${field} field of a header is not a number`);
  return text === '' ? 0 : parseInt(text, 8);
}

/**
 * Read a header block: the entry, or null for a zero block (the archive's end). A header whose checksum does not
 * match, a member that is not a regular file, a name with `..` or an absolute path: INVALID_ARCHIVE.
 */
export function decodeHeader(h: Buffer): TarEntry | null {
  if (h.length !== BLOCK) throw invalidArchive('it ends inside a header (truncated)');
  if (h.every((b) => b === 0)) return null;
  const stored = readOctal(h, 148, 8, 'checksum');
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : h[i]!;
  if (sum !== stored) throw invalidArchive('a header\'s checksum does not match (a changed or truncated archive)');
  const type = String.fromCharCode(h[156]!);
  if (type !== '0' && type !== '\0') throw invalidArchive(`a member is not a regular file (type "${type}")`);
  const end = h.indexOf(0, 0);
  const name = h.toString('latin1', 0, end < 0 || end > 100 ? 100 : end);
  if (h.toString('latin1', 345, 346) !== '\0' && h.toString('latin1', 257, 262) === 'ustar') throw invalidArchive(`member "${name}" has a name prefix; Corral archives use plain names`);
  if (!/^[A-Za-z0-9._/-]{1,100}$/.test(name) || name.startsWith('/') || name.split('/').includes('..')) throw invalidArchive(`member name "${JSON.stringify(name).slice(1, -1)}" is not one Corral writes`);
  return { name, size: readOctal(h, 124, 12, 'size'), mtime: readOctal(h, 136, 12, 'mtime') };
}
