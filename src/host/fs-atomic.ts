/**
 * The one atomic write of a record: write a temporary file beside it, fsync it, rename it over the record,
 * fsync the directory. A reader sees the old file or the whole new one, never a part, and after a crash or
 * power loss the record is one of the two, never empty (the rename is durable once the directory is synced).
 * Here in src/host because it imports nothing of Corral's: every layer (qemu, storage, network, services)
 * may import it without a cycle, and src/core stays free of I/O.
 */
import { closeSync, fsyncSync, openSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';

/** fsync a directory, so that renames and creations in it survive a crash. */
export function fsyncDir(dir: string): void {
  let fd: number;
  try {
    fd = openSync(dir, 'r');
  } catch {
    return; // gone or unreadable: nothing to make durable here
  }
  try {
    fsyncSync(fd);
  } catch (e) {
    // some filesystems cannot sync a directory; the rename still happened
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== 'EINVAL' && code !== 'ENOTSUP' && code !== 'EBADF') throw e;
  } finally {
    closeSync(fd);
  }
}

/** Write `data` to `path` atomically and durably (see the top of this file); `mode` is the new file's. */
export function writeFileAtomic(path: string, data: string | Uint8Array, mode = 0o644): void {
  const tmp = `${path}.tmp-${process.pid}`;
  rmSync(tmp, { force: true }); // a leftover of a crashed write would keep its own mode
  const fd = openSync(tmp, 'wx', mode);
  try {
    try {
      writeFileSync(fd, data); // on a descriptor: writes it all, looping over short writes
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, path);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw e;
  }
  fsyncDir(dirname(path));
}

/** writeFileAtomic of a value as indented JSON with a final newline. */
export function writeJsonAtomic(path: string, value: unknown, mode = 0o644): void {
  writeFileAtomic(path, `${JSON.stringify(value, null, 2)}\n`, mode);
}
