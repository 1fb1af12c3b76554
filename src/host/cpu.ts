/** CPU topology (sysfs) and CPU identity and flags (/proc/cpuinfo). Roots are parameters for fake trees. */
import { join } from 'node:path';
import { parseCpuList, readOnlineCpus } from './basics.js';
import { readInt, readText } from './sysfs.js';

export interface CpuInfo {
  vendor: string;
  model: string;
  flags: string[];
  /** Hardware virtualization as the CPU advertises it: Intel VT-x (vmx), AMD-V (svm), or neither. */
  virtualization: 'vmx' | 'svm' | null;
  /** The `hypervisor` flag: this host is itself a guest. */
  hypervisor: boolean;
}

export interface LogicalCpu {
  cpu: number;
  socket: number;
  core: number;
  /** CPUs sharing this one's core (itself included). */
  siblings: number[];
}

export interface CpuTopology {
  cpus: LogicalCpu[];
  sockets: number;
  /** The most cores any one socket has. */
  coresPerSocket: number;
  /** The most online threads any one core has. */
  threadsPerCore: number;
}

/** /proc/cpuinfo as one record per processor: "key: value" lines, blocks separated by blank lines. */
export function parseCpuInfo(text: string): Array<Record<string, string>> {
  const out: Array<Record<string, string>> = [];
  for (const block of text.split(/\n\s*\n/)) {
    const rec: Record<string, string> = {};
    for (const line of block.split('\n')) {
      const i = line.indexOf(':');
      if (i < 0) continue;
      rec[line.slice(0, i).trim()] = line.slice(i + 1).trim();
    }
    if (Object.keys(rec).length > 0) out.push(rec);
  }
  return out;
}

export function readCpuInfo(proc = '/proc'): CpuInfo {
  const first = parseCpuInfo(readText(join(proc, 'cpuinfo')) ?? '')[0] ?? {};
  const flags = (first['flags'] ?? first['Features'] ?? '').split(/\s+/).filter((f) => f !== '');
  const has = new Set(flags);
  return {
    vendor: first['vendor_id'] ?? first['CPU implementer'] ?? 'unknown',
    model: first['model name'] ?? 'unknown',
    flags,
    virtualization: has.has('vmx') ? 'vmx' : has.has('svm') ? 'svm' : null,
    hypervisor: has.has('hypervisor'),
  };
}

/**
 * Socket, core and thread siblings of every online CPU from
 * sys/devices/system/cpu/cpuN/topology; where sysfs lacks them, /proc/cpuinfo's "physical id"/"core id".
 */
export function readCpuTopology(sys = '/sys', proc = '/proc'): CpuTopology {
  const online = readOnlineCpus(sys, proc);
  const fromInfo = new Map<number, Record<string, string>>();
  for (const rec of parseCpuInfo(readText(join(proc, 'cpuinfo')) ?? '')) {
    const n = Number(rec['processor']);
    if (Number.isInteger(n)) fromInfo.set(n, rec);
  }
  const raw = online.map((cpu) => {
    const dir = join(sys, 'devices/system/cpu', `cpu${cpu}`, 'topology');
    const info = fromInfo.get(cpu);
    const infoNum = (k: string): number | null => {
      const v = info?.[k];
      return v !== undefined && /^\d+$/.test(v) ? Number(v) : null;
    };
    const socket = readInt(join(dir, 'physical_package_id')) ?? infoNum('physical id') ?? 0;
    const core = readInt(join(dir, 'core_id')) ?? infoNum('core id') ?? cpu;
    const list = readText(join(dir, 'thread_siblings_list'));
    return { cpu, socket, core, siblings: list === null ? null : parseCpuList(list) };
  });
  // Where sysfs gives no sibling list, siblings are the online CPUs with the same socket and core.
  const byCore = new Map<string, number[]>();
  for (const c of raw) {
    const key = `${c.socket}/${c.core}`;
    byCore.set(key, [...(byCore.get(key) ?? []), c.cpu]);
  }
  const cpus: LogicalCpu[] = raw.map((c) => ({
    cpu: c.cpu,
    socket: c.socket,
    core: c.core,
    siblings: c.siblings ?? byCore.get(`${c.socket}/${c.core}`) ?? [c.cpu],
  }));
  const coresOf = new Map<number, Set<number>>();
  for (const c of cpus) coresOf.set(c.socket, (coresOf.get(c.socket) ?? new Set()).add(c.core));
  return {
    cpus,
    sockets: coresOf.size,
    coresPerSocket: Math.max(0, ...[...coresOf.values()].map((s) => s.size)),
    threadsPerCore: Math.max(0, ...[...byCore.values()].map((l) => l.length)),
  };
}
