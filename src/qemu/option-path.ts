/** Daemon-made paths that must go into QEMU's legacy comma-separated option strings (-chardev, -qmp, ...). */

/** Characters that QEMU's legacy option parser would treat as syntax: refuse them in checked paths. */
export function assertSafeOptionPath(p: string): string {
  if (!p.startsWith('/') || /[,\n\r\0=]/.test(p)) throw new Error(`unsafe path for a QEMU option: ${JSON.stringify(p)}`);
  return p;
}
