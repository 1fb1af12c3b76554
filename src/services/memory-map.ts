/**
 * Parsing QEMU's own view of guest memory (pure): the flat view of the system address space (`info mtree -f`)
 * gives the guest-physical RAM ranges and the RAM region behind each, `gpa2hva` the host-virtual address where
 * a guest-physical address lives in QEMU's process, and the balloon's `guest-stats` what the guest reports.
 */

export interface GuestRamRange {
  /** guest-physical start and end (inclusive end as QEMU prints it is turned into an exclusive one) */
  start: number;
  end: number;
  /** the RAM region (memory backend id, e.g. mem0, vmem0) */
  region: string;
  /** offset of `start` inside the region */
  offset: number;
}

const LINE = /^\s*([0-9a-f]+)-([0-9a-f]+) \(prio -?\d+, (ram|rom)\): (\S+)(?: @([0-9a-f]+))?/i;

/**
 * The RAM ranges of the system address space ("AS \"memory\"") from `info mtree -f`, limited to the regions
 * named in `regions` (the memory backends), with pieces of one region that are contiguous in both the guest
 * and the region merged (the BIOS shadow areas split mem0 into ram/rom pieces below 1 MiB).
 */
export function parseFlatRam(text: string, regions: ReadonlySet<string>): GuestRamRange[] {
  const out: GuestRamRange[] = [];
  let inSystem = false;
  for (const line of text.split('\n')) {
    if (/^FlatView #/.test(line)) inSystem = false;
    if (/^\s*AS "memory"/.test(line)) inSystem = true;
    if (!inSystem) continue;
    const m = LINE.exec(line);
    if (!m || !regions.has(m[4]!)) continue;
    const start = Number.parseInt(m[1]!, 16);
    const end = Number.parseInt(m[2]!, 16) + 1;
    const offset = m[5] === undefined ? 0 : Number.parseInt(m[5], 16);
    const prev = out[out.length - 1];
    if (prev && prev.region === m[4] && prev.end === start && prev.offset + (prev.end - prev.start) === offset) prev.end = end;
    else out.push({ start, end, region: m[4]!, offset });
  }
  return out;
}

/** "Host virtual address for 0x100000 (mem0) is 0x7f77cff00000" -> 0x7f77cff00000; null otherwise. */
export function parseGpa2hva(text: string): number | null {
  const m = /is 0x([0-9a-f]+)/i.exec(text);
  return m ? Number.parseInt(m[1]!, 16) : null;
}

export interface GuestStats {
  total: number;
  free: number;
  available: number;
  /** seconds since the epoch of the guest's last report */
  lastUpdate: number;
}

/** The balloon's guest-stats; null before the guest has reported (QEMU fills -1 or 0 then). */
export function parseGuestStats(v: unknown): GuestStats | null {
  const o = (v ?? {}) as { stats?: Record<string, unknown>; 'last-update'?: unknown };
  const s = o.stats ?? {};
  const num = (k: string): number => (typeof s[k] === 'number' ? (s[k] as number) : -1);
  const total = num('stat-total-memory');
  const free = num('stat-free-memory');
  const available = num('stat-available-memory');
  const lastUpdate = typeof o['last-update'] === 'number' ? (o['last-update'] as number) : 0;
  if (total <= 0 || free < 0 || available < 0 || lastUpdate <= 0) return null;
  return { total, free, available, lastUpdate };
}

/**
 * What the guest really uses. With deflate-on-oom the guest keeps balloon pages in its total (they show as
 * neither free nor available), so they are taken off; without it the guest's total shrinks by the balloon.
 */
export function guestUsed(stats: GuestStats, balloonInflated: number, deflateOnOom: boolean): number {
  return Math.max(0, stats.total - stats.available - (deflateOnOom ? balloonInflated : 0));
}

/** /proc/PID/smaps_rollup: Rss, Anonymous, Shared_* and Swap in bytes (null when absent). */
export function parseSmapsRollup(text: string): { rss: number | null; anonymous: number | null; shared: number | null; swap: number | null } {
  const get = (k: string): number | null => {
    const m = new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(text);
    return m ? Number(m[1]) * 1024 : null;
  };
  const sc = get('Shared_Clean');
  const sd = get('Shared_Dirty');
  return { rss: get('Rss'), anonymous: get('Anonymous'), shared: sc === null && sd === null ? null : (sc ?? 0) + (sd ?? 0), swap: get('Swap') };
}

/** One mapping of /proc/PID/smaps: its host-virtual range [start, end) and its Rss in bytes. */
export interface SmapsVma {
  start: number;
  end: number;
  rss: number;
}

/** /proc/PID/smaps: each mapping's range (its header line) and Rss. Mappings with no Rss line count 0. */
export function parseSmaps(text: string): SmapsVma[] {
  const out: SmapsVma[] = [];
  let cur: SmapsVma | null = null;
  for (const line of text.split('\n')) {
    const h = /^([0-9a-f]+)-([0-9a-f]+) /.exec(line);
    if (h) {
      cur = { start: Number.parseInt(h[1]!, 16), end: Number.parseInt(h[2]!, 16), rss: 0 };
      out.push(cur);
      continue;
    }
    const r = /^Rss:\s+(\d+) kB/.exec(line);
    if (r && cur) cur.rss = Number(r[1]) * 1024;
  }
  return out;
}

/** A host-virtual range [start, end) that backs guest RAM. */
export interface HostRange {
  start: number;
  end: number;
}

/**
 * The host-virtual extent of each RAM block (memory backend) behind the flat view's ranges, from one range's host
 * address per region (`hva`: gpa2hva of its start; null for the others): the block starts at that address less the range's offset in
 * the region and reaches the end of its farthest range. The whole block, holes included (the VGA window splits mem0
 * below 1 MiB): it is all guest RAM, and QEMU maps each block as one mapping of its own (qemu_ram_mmap), so its
 * extent is that mapping's. A region whose address is unknown is left out.
 */
export function ramBlocks(ranges: ReadonlyArray<GuestRamRange & { hva: number | null }>): HostRange[] {
  const base = new Map<string, number>();
  const size = new Map<string, number>();
  for (const r of ranges) {
    if (r.hva !== null && !base.has(r.region)) base.set(r.region, r.hva - r.offset);
    size.set(r.region, Math.max(size.get(r.region) ?? 0, r.offset + (r.end - r.start)));
  }
  return [...base].map(([region, start]) => ({ start, end: start + size.get(region)! })).sort((a, b) => a.start - b.start);
}

/**
 * Bytes of `ranges` resident in host RAM, from smaps' mappings: a mapping inside the ranges counts its whole Rss
 * (QEMU maps each RAM block as a mapping of exactly its size: the usual case), one that reaches past them the share
 * of its Rss that the overlap is of its size (the kernel splits a mapping only where its flags change).
 */
export function residentIn(vmas: readonly SmapsVma[], ranges: readonly HostRange[]): number {
  let sum = 0;
  for (const v of vmas) {
    const size = v.end - v.start;
    if (size <= 0 || v.rss === 0) continue;
    let overlap = 0;
    for (const r of ranges) overlap += Math.max(0, Math.min(v.end, r.end) - Math.max(v.start, r.start));
    if (overlap >= size) sum += v.rss;
    else if (overlap > 0) sum += Math.round((v.rss * overlap) / size);
  }
  return sum;
}
