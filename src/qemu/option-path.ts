/** Daemon-made paths that must go into QEMU's legacy comma-separated option strings (-chardev, -qmp, ...). */
import { CorralError } from '../core/errors.js';

/** Characters that QEMU's legacy option parser would treat as syntax: refuse them in checked paths. */
export function assertSafeOptionPath(p: string): string {
  if (!p.startsWith('/') || /[,\n\r\0=]/.test(p)) throw new CorralError('INVALID_SPEC', `unsafe path for a QEMU option: ${JSON.stringify(p)} (QEMU reads it from a comma-separated option string: it must be absolute and hold no ',', '=' or newline)`, { field: 'path', path: p });
  return p;
}
