/**
 * An upload's bytes (a request body, streamed: an image's file from a browser or the CLI, a base image's file from a
 * migration's source) into a file: counted and hashed as they come, never past the length the client declared nor
 * past the cap (TOO_LARGE before the chunk that would pass it is written), and short of the declared length (the
 * client went away) a failure. The caller removes the file when this throws.
 */
import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { once } from 'node:events';
import type { Readable } from 'node:stream';
import { CorralError, isCorralError } from '../core/errors.js';
import { formatSize, parseSize } from '../core/units.js';
import type { Progress } from '../storage/images.js';

/** The most an upload may take: CORRAL_UPLOAD_MAX (a size: 20G), 64 GiB when unset. */
export function uploadMax(env: NodeJS.ProcessEnv = process.env): number {
  return env.CORRAL_UPLOAD_MAX ? parseSize('CORRAL_UPLOAD_MAX', env.CORRAL_UPLOAD_MAX) : 64 * 1024 ** 3;
}

export function tooLarge(what: string, bytes: number, max: number): CorralError {
  return new CorralError('TOO_LARGE', `${what} takes ${formatSize(bytes)}, more than this daemon takes in one upload (${formatSize(max)}, CORRAL_UPLOAD_MAX)`, { field: 'file', size: bytes, max });
}

/** A counter of bytes received that reports a progress line at each new whole percent of `total` (none when unknown). */
export function receiveProgress(total: number | null, progress: Progress, message: string): (taken: number) => void {
  let last = -1;
  return (taken) => {
    if (total === null || total <= 0) return;
    const pc = Math.min(100, Math.floor((100 * taken) / total));
    if (pc === last) return;
    last = pc;
    progress({ step: 'receive', message, percent: pc });
  };
}

/** Write `body` to `file` (made new, `mode` 0600 unless given): exactly `length` bytes, at most `max`; their size and sha256. */
export async function receiveToFile(body: Readable, file: string, o: { length: number; max: number; what: string; mode?: number; onBytes?: (taken: number) => void }): Promise<{ size: number; sha256: string }> {
  const limit = Math.min(o.length, o.max);
  const h = createHash('sha256');
  const out = createWriteStream(file, { flags: 'wx', mode: o.mode ?? 0o600 });
  let taken = 0;
  try {
    for await (const chunk of body) {
      const c = typeof chunk === 'string' ? Buffer.from(chunk) : (chunk as Buffer);
      if (taken + c.length > limit) {
        if (taken + c.length > o.max) throw tooLarge(o.what, taken + c.length, o.max);
        throw new CorralError('INVALID_SPEC', `body: ${o.what} sent more than the ${o.length} bytes its Content-Length said`, { field: 'body' });
      }
      taken += c.length;
      h.update(c);
      if (!out.write(c)) await once(out, 'drain');
      o.onBytes?.(taken);
    }
  } catch (e) {
    if (isCorralError(e)) throw e;
    throw new CorralError('INVALID_SPEC', `body: ${o.what} stopped after ${taken} of ${o.length} bytes: ${(e as Error).message}`, { field: 'body', received: taken });
  } finally {
    out.end();
    if (!out.closed) await once(out, 'close');
  }
  if (taken < o.length) throw new CorralError('INVALID_SPEC', `body: ${o.what} ended after ${taken} of ${o.length} bytes (the client went away?)`, { field: 'body', received: taken });
  return { size: taken, sha256: h.digest('hex') };
}
