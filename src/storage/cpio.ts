/**
 * A minimal newc (SVR4, "070701") cpio writer, as the Linux kernel unpacks an initramfs. Written here
 * rather than piped through cpio(1) so that the archive is reproducible (owner root, mtime 0, sorted
 * names) and can hold device nodes (/dev/console) without mknod on the host.
 */
import { lstatSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';

export type CpioEntry =
  | { type: 'dir'; path: string; mode?: number }
  | { type: 'file'; path: string; data: Buffer; mode?: number }
  | { type: 'symlink'; path: string; target: string }
  | { type: 'char'; path: string; major: number; minor: number; mode?: number };

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;
const S_IFCHR = 0o020000;

function hex8(n: number): string {
  return n.toString(16).padStart(8, '0');
}

function pad4(n: number): Buffer {
  return Buffer.alloc((4 - (n % 4)) % 4);
}

function header(ino: number, mode: number, nlink: number, size: number, rdevMajor: number, rdevMinor: number, nameSize: number): string {
  return `070701${[ino, mode, 0, 0, nlink, 0, size, 0, 0, rdevMajor, rdevMinor, nameSize, 0].map(hex8).join('')}`;
}

/** Serialise entries (paths relative, without a leading '/') into an uncompressed newc archive. */
export function newcArchive(entries: CpioEntry[]): Buffer {
  const parts: Buffer[] = [];
  let ino = 1;
  const push = (path: string, mode: number, nlink: number, data: Buffer, major = 0, minor = 0): void => {
    const name = Buffer.from(`${path}\0`, 'utf8');
    const head = Buffer.from(header(ino++, mode, nlink, data.length, major, minor, name.length), 'ascii');
    parts.push(head, name, pad4(head.length + name.length), data, pad4(data.length));
  };
  for (const e of entries) {
    const path = e.path.replace(/^\/+/, '');
    switch (e.type) {
      case 'dir': push(path, S_IFDIR | (e.mode ?? 0o755), 2, Buffer.alloc(0)); break;
      case 'file': push(path, S_IFREG | (e.mode ?? 0o644), 1, e.data); break;
      case 'symlink': push(path, S_IFLNK | 0o777, 1, Buffer.from(e.target, 'utf8')); break;
      case 'char': push(path, S_IFCHR | (e.mode ?? 0o600), 1, Buffer.alloc(0), e.major, e.minor); break;
    }
  }
  push('TRAILER!!!', 0, 1, Buffer.alloc(0));
  const out = Buffer.concat(parts);
  return Buffer.concat([out, Buffer.alloc((512 - (out.length % 512)) % 512)]);
}

/** Every directory, file and symlink under root, parents first, names sorted; file modes kept. */
export function treeEntries(root: string, rel = ''): CpioEntry[] {
  const out: CpioEntry[] = [];
  for (const name of readdirSync(join(root, rel)).sort()) {
    const path = rel ? `${rel}/${name}` : name;
    const full = join(root, path);
    const st = lstatSync(full);
    if (st.isSymbolicLink()) out.push({ type: 'symlink', path, target: readlinkSync(full) });
    else if (st.isDirectory()) {
      out.push({ type: 'dir', path, mode: st.mode & 0o7777 });
      out.push(...treeEntries(root, path));
    } else if (st.isFile()) out.push({ type: 'file', path, data: readFileSync(full), mode: st.mode & 0o7777 });
  }
  return out;
}

/** A gzip-compressed initramfs from a directory tree plus extra entries (device nodes). */
export function gzipInitramfs(root: string, extra: CpioEntry[] = []): Buffer {
  return gzipSync(newcArchive([...treeEntries(root), ...extra]), { level: 9 });
}
