/**
 * Tar archives as streams (the framing is core/tar.ts): writing one from buffers and files, and reading one from a
 * stream a member at a time, each member's bytes counted and hashed as they pass, never buffered whole.
 */
import { createHash, type Hash } from 'node:crypto';
import { createReadStream, createWriteStream, statSync } from 'node:fs';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { CorralError, isCorralError } from '../core/errors.js';
import { BLOCK, decodeHeader, encodeHeader, endBlocks, invalidArchive, padding, type TarEntry } from '../core/tar.js';

export interface TarMember {
  name: string;
  /** the member's bytes in memory, or a file's path */
  data: Buffer | string;
}

/** The bytes the archive of these members takes. */
export function tarSize(members: TarMember[]): number {
  let n = 2 * BLOCK;
  for (const m of members) {
    const size = typeof m.data === 'string' ? statSync(m.data).size : m.data.length;
    n += BLOCK + size + padding(size);
  }
  return n;
}

/** A readable stream of the archive of `members`, in order. */
export function tarStream(members: TarMember[]): Readable {
  async function* gen(): AsyncGenerator<Buffer> {
    const mtime = Math.floor(Date.now() / 1000);
    for (const m of members) {
      const size = typeof m.data === 'string' ? statSync(m.data).size : m.data.length;
      yield encodeHeader({ name: m.name, size, mtime });
      if (typeof m.data === 'string') {
        let sent = 0;
        for await (const c of createReadStream(m.data)) {
          sent += (c as Buffer).length;
          yield c as Buffer;
        }
        if (sent !== size) throw new CorralError('INTERNAL', `${m.name} changed size while it was sent`);
      } else yield m.data;
      if (padding(size) > 0) yield Buffer.alloc(padding(size));
    }
    yield endBlocks();
  }
  return Readable.from(gen(), { objectMode: false });
}

function truncated(): CorralError {
  return invalidArchive('it ends too early (truncated)');
}

/** Reads an archive from a stream: headers, members' bytes, exactly as many as asked. */
export class TarReader {
  private it: AsyncIterator<unknown>;
  private buf: Buffer = Buffer.alloc(0);
  private done = false;
  /** bytes taken from the stream so far */
  taken = 0;

  constructor(stream: Readable, private onBytes: (taken: number) => void = () => {}) {
    this.it = stream[Symbol.asyncIterator]();
  }

  /** Fill the buffer with at least one more chunk; false at the stream's end. */
  private async more(): Promise<boolean> {
    if (this.done) return false;
    const r = await this.it.next();
    if (r.done) {
      this.done = true;
      return false;
    }
    const c = typeof r.value === 'string' ? Buffer.from(r.value) : (r.value as Buffer);
    this.taken += c.length;
    this.onBytes(this.taken);
    this.buf = this.buf.length === 0 ? c : Buffer.concat([this.buf, c]);
    return true;
  }

  /** Exactly n bytes (INVALID_ARCHIVE truncated when the stream ends first). */
  async read(n: number): Promise<Buffer> {
    while (this.buf.length < n) if (!(await this.more())) throw truncated();
    const out = this.buf.subarray(0, n);
    this.buf = this.buf.subarray(n);
    return out;
  }

  /** The next header, or null at the archive's end (a zero block). */
  async next(): Promise<TarEntry | null> {
    return decodeHeader(await this.read(BLOCK));
  }

  /** A member's bytes, hashed into `h` as they pass (INVALID_ARCHIVE truncated when the stream ends first). */
  private async *member(entry: TarEntry, h: Hash): AsyncGenerator<Buffer> {
    let left = entry.size;
    while (left > 0) {
      if (this.buf.length === 0 && !(await this.more())) throw truncated();
      const part = this.buf.subarray(0, Math.min(left, this.buf.length));
      this.buf = this.buf.subarray(part.length);
      left -= part.length;
      h.update(part);
      yield part;
    }
  }

  /**
   * A member's bytes (and its padding) written to `file`: their size and sha256 (of the member's bytes). With
   * `gunzip`, the member is gzip data and what it decompresses to is written, at most `maxBytes` of it
   * (INVALID_ARCHIVE past that, or when it is not gzip data); `written` is the bytes written.
   */
  async toFile(entry: TarEntry, file: string, opts: { gunzip?: { maxBytes: number } } = {}): Promise<{ size: number; sha256: string; written: number }> {
    const h = createHash('sha256');
    let written = 0;
    const count = new Transform({
      transform(c: Buffer, _e, done) {
        written += c.length;
        if (opts.gunzip && written > opts.gunzip.maxBytes) done(invalidArchive(`${entry.name} decompresses to more than the ${opts.gunzip.maxBytes} bytes its manifest says`));
        else done(null, c);
      },
    });
    const steps: NodeJS.ReadWriteStream[] = opts.gunzip ? [createGunzip(), count] : [count];
    try {
      await pipeline([Readable.from(this.member(entry, h)), ...steps, createWriteStream(file, { mode: 0o600 })]);
    } catch (e) {
      if (isCorralError(e)) throw e;
      const code = (e as NodeJS.ErrnoException).code ?? '';
      if (opts.gunzip && code.startsWith('Z_')) throw invalidArchive(`${entry.name} is not whole gzip data (${(e as Error).message}): the archive was changed or damaged`);
      throw e;
    }
    await this.read(padding(entry.size));
    return { size: entry.size, sha256: h.digest('hex'), written };
  }

  /** Whatever follows the end block is drained (zero blocks; nothing else may come): true when only zeros came. */
  async restIsZeros(): Promise<boolean> {
    for (;;) {
      if (this.buf.some((b) => b !== 0)) return false;
      this.buf = Buffer.alloc(0);
      if (!(await this.more())) return true;
    }
  }
}
