/**
 * The kernel's own word on why a process died: a segfault or an OOM kill, from the kernel log (/dev/kmsg,
 * read without blocking). It holds for QEMUs the daemon did not start itself (adopted after a restart), whose
 * exit status no one can read any more.
 */
import { closeSync, constants, openSync, readSync } from 'node:fs';

export interface KernelRecord {
  /** microseconds since boot */
  usec: number;
  message: string;
}

/** One /dev/kmsg record ("PRI,SEQ,USEC,FLAGS;MESSAGE\n continuation lines"), or null. */
export function parseKmsgRecord(raw: string): KernelRecord | null {
  const semi = raw.indexOf(';');
  if (semi < 0) return null;
  const fields = raw.slice(0, semi).split(',');
  const usec = Number(fields[2]);
  if (fields.length < 3 || !Number.isFinite(usec)) return null;
  return { usec, message: (raw.slice(semi + 1).split('\n')[0] ?? '').trim() };
}

/** Every record in the kernel's ring buffer (empty when it cannot be read). */
export function readKernelLog(path = '/dev/kmsg', maxRecords = 20_000): KernelRecord[] {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch {
    return [];
  }
  const out: KernelRecord[] = [];
  const buf = Buffer.alloc(8192);
  try {
    while (out.length < maxRecords) {
      let n: number;
      try {
        n = readSync(fd, buf, 0, buf.length, null);
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code === 'EPIPE') continue; // records were overwritten while reading: go on with the next one
        break; // EAGAIN: the end of the buffer
      }
      if (n <= 0) break;
      const r = parseKmsgRecord(buf.subarray(0, n).toString('utf8'));
      if (r) out.push(r);
    }
  } finally {
    closeSync(fd);
  }
  return out;
}

/**
 * What the kernel said about process `pid` after `sinceUsec` (its start): "segfault at 18 ip ... in libc.so.6",
 * "killed by the OOM killer (memory cgroup out of memory)", or null.
 */
export function kernelDeathNote(records: KernelRecord[], pid: number, sinceUsec: number): string | null {
  const seg = new RegExp(`^\\S+\\[${pid}\\]: (segfault at .*?|general protection fault.*?|trap .*?)(?: likely on CPU.*)?$`);
  const oom = new RegExp(`^(Memory cgroup out of memory|Out of memory)[^:]*: Killed process ${pid} \\(`);
  for (let i = records.length - 1; i >= 0; i--) {
    const r = records[i]!;
    if (r.usec < sinceUsec) break;
    const s = seg.exec(r.message);
    if (s) return s[1]!.replace(/\s+ip [0-9a-f]+ sp [0-9a-f]+/, '');
    const o = oom.exec(r.message);
    if (o) return `killed by the kernel's OOM killer (${o[1]!.toLowerCase()})`;
  }
  return null;
}
