/**
 * The file an import reads, opened once: O_NOFOLLOW (a symlink is refused, not followed), O_NONBLOCK (a FIFO
 * cannot hang the open), then fstat'ed on the descriptor. The header check, `qemu-img info` and `qemu-img
 * convert` all read through that descriptor (qemu-img by `/proc/PID/fd/N`, which reopens the same inode), so
 * renaming, replacing or re-linking the path after the checks changes nothing of what is imported.
 */
import { closeSync, constants, fstatSync, openSync } from 'node:fs';
import { resolve } from 'node:path';
import { invalidSpec } from '../core/errors.js';
import { printable } from '../core/spec.js';

export interface ImportSource {
  fd: number;
  /** the descriptor as a path other processes of this user can open: /proc/<daemon pid>/fd/<fd> */
  fdPath: string;
  /** the absolute path it was opened by, for messages */
  path: string;
  size: number;
  close(): void;
}

export function openImportSource(file: unknown): ImportSource {
  if (typeof file !== 'string' || file.length === 0) throw invalidSpec('file', 'a file path is required');
  const path = resolve(file);
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK | constants.O_NOCTTY);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? String(e);
    if (code === 'ELOOP') throw invalidSpec('file', `"${printable(file)}" is a symlink: give the image file itself`);
    throw invalidSpec('file', `cannot read "${printable(file)}": ${code}`);
  }
  const st = fstatSync(fd);
  if (!st.isFile()) {
    closeSync(fd);
    throw invalidSpec('file', `"${printable(file)}" is not a regular file`);
  }
  let open = true;
  return {
    fd, fdPath: `/proc/${process.pid}/fd/${fd}`, path, size: st.size,
    close: () => {
      if (open) closeSync(fd);
      open = false;
    },
  };
}
