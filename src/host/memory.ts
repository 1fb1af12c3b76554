/** Memory facts beyond totals: hugepage pools, NUMA nodes, KSM, transparent hugepages. */
import { join } from 'node:path';
import { parseCpuList } from './basics.js';
import { isDir, listDir, numberedEntries, readInt, readText } from './sysfs.js';

export interface HugepagePool {
  /** Page size in bytes (2 MiB = 2097152, 1 GiB = 1073741824). */
  size: number;
  /** Pages in the pool (nr_hugepages) and pages not in use (free_hugepages). */
  total: number;
  free: number;
}

export interface NumaNode {
  id: number;
  cpus: number[];
  /** Bytes, from the node's meminfo (MemTotal, MemFree). */
  memTotal: number;
  memFree: number;
  hugepages: HugepagePool[];
}

export type KsmInfo =
  | { available: false }
  | {
      available: true;
      /** 0 stopped, 1 running, 2 stopped and unmerging. */
      run: number;
      pagesShared: number;
      pagesSharing: number;
      pagesUnshared: number;
    };

/** The pools under DIR/hugepages-<size>kB (sys/kernel/mm/hugepages or a NUMA node's hugepages), smallest first. */
export function readHugepagePools(dir: string): HugepagePool[] {
  const pools: HugepagePool[] = [];
  for (const name of listDir(dir)) {
    const m = /^hugepages-(\d+)kB$/.exec(name);
    if (!m) continue;
    pools.push({
      size: Number(m[1]) * 1024,
      total: readInt(join(dir, name, 'nr_hugepages')) ?? 0,
      free: readInt(join(dir, name, 'free_hugepages')) ?? 0,
    });
  }
  return pools.sort((a, b) => a.size - b.size);
}

/** Host-wide hugepage pools from sys/kernel/mm/hugepages; empty if the kernel has none. */
export function readHugepages(sys = '/sys'): HugepagePool[] {
  return readHugepagePools(join(sys, 'kernel/mm/hugepages'));
}

/** "Node 0 MemTotal:  16384 kB" lines of a node meminfo file, in bytes. */
export function parseNodeMemInfo(text: string): { memTotal: number; memFree: number } {
  const get = (k: string): number => {
    const m = new RegExp(`^Node\\s+\\d+\\s+${k}:\\s+(\\d+)\\s*kB`, 'm').exec(text);
    return m ? Number(m[1]) * 1024 : 0;
  };
  return { memTotal: get('MemTotal'), memFree: get('MemFree') };
}

/** NUMA nodes from sys/devices/system/node/nodeN; an empty list on a host without that directory. */
export function readNumaNodes(sys = '/sys'): NumaNode[] {
  const base = join(sys, 'devices/system/node');
  return numberedEntries(base, 'node')
    .filter((id) => isDir(join(base, `node${id}`)))
    .map((id) => {
      const dir = join(base, `node${id}`);
      const cpulist = readText(join(dir, 'cpulist'));
      return {
        id,
        cpus: cpulist ? parseCpuList(cpulist) : [],
        ...parseNodeMemInfo(readText(join(dir, 'meminfo')) ?? ''),
        hugepages: readHugepagePools(join(dir, 'hugepages')),
      };
    });
}

/** KSM counters from sys/kernel/mm/ksm; { available: false } where the kernel has no KSM. */
export function readKsm(sys = '/sys'): KsmInfo {
  const dir = join(sys, 'kernel/mm/ksm');
  const run = readInt(join(dir, 'run'));
  if (run === null) return { available: false };
  return {
    available: true,
    run,
    pagesShared: readInt(join(dir, 'pages_shared')) ?? 0,
    pagesSharing: readInt(join(dir, 'pages_sharing')) ?? 0,
    pagesUnshared: readInt(join(dir, 'pages_unshared')) ?? 0,
  };
}

/** The selected word of a sysfs choice file: "always [madvise] never" -> "madvise"; null if none. */
export function parseBracketChoice(text: string): string | null {
  return /\[([^\]]+)\]/.exec(text)?.[1] ?? null;
}

/** Transparent hugepage mode (always, madvise, never); null if the kernel has no THP. */
export function readTransparentHugepages(sys = '/sys'): string | null {
  const text = readText(join(sys, 'kernel/mm/transparent_hugepage/enabled'));
  return text === null ? null : parseBracketChoice(text);
}
