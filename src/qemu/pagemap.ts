/**
 * Residency of a host-virtual range of a process, read from /proc/PID/pagemap: one little-endian 64-bit
 * entry per 4 KiB page, bit 63 = present in RAM, bit 62 = swapped. Reads are positioned and chunked, so a
 * large range never needs a large buffer (1 GiB of guest = 262144 entries = 2 MiB of pagemap).
 */
import { closeSync, openSync, readSync } from 'node:fs';
import { join } from 'node:path';

export const PAGE_SIZE = 4096;
const PRESENT = 1n << 63n;
const SWAPPED = 1n << 62n;
/** Entries read per positioned read (1 MiB of pagemap = 512 MiB of address space). */
const CHUNK_ENTRIES = 131072;
/** Ranges larger than this (in bytes) are not scanned: the answer would cost too much to read. */
export const MAX_SCAN_BYTES = 256 * 1024 * 1024 * 1024;

export interface Residency {
  pages: number;
  present: number;
  swapped: number;
}

/** Count present and swapped pages in `count` pagemap entries of `buf` (pure). */
export function parsePagemap(buf: Buffer, count = Math.floor(buf.length / 8)): Residency {
  const n = Math.min(count, Math.floor(buf.length / 8));
  let present = 0;
  let swapped = 0;
  for (let i = 0; i < n; i++) {
    const e = buf.readBigUInt64LE(i * 8);
    if (e & PRESENT) present++;
    else if (e & SWAPPED) swapped++;
  }
  return { pages: n, present, swapped };
}

/**
 * Residency of [start, start + length) in process `pid`; null when the pagemap cannot be read (process gone,
 * no permission) or the range is too large to scan. `start` and `length` are rounded out to whole pages.
 */
export function readResidency(pid: number, start: number, length: number, proc = '/proc'): Residency | null {
  if (length <= 0 || length > MAX_SCAN_BYTES) return null;
  const first = Math.floor(start / PAGE_SIZE);
  const last = Math.ceil((start + length) / PAGE_SIZE);
  let fd: number;
  try {
    fd = openSync(join(proc, String(pid), 'pagemap'), 'r');
  } catch {
    return null;
  }
  const total: Residency = { pages: 0, present: 0, swapped: 0 };
  const buf = Buffer.alloc(Math.min(CHUNK_ENTRIES, last - first) * 8);
  try {
    for (let page = first; page < last;) {
      const want = Math.min(CHUNK_ENTRIES, last - page);
      const got = readSync(fd, buf, 0, want * 8, page * 8);
      if (got <= 0) break;
      const r = parsePagemap(buf, Math.floor(got / 8));
      total.pages += r.pages;
      total.present += r.present;
      total.swapped += r.swapped;
      page += Math.floor(got / 8);
    }
  } catch {
    return null;
  } finally {
    closeSync(fd);
  }
  return total;
}
