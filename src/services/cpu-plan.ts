/**
 * Pure parts of the CPU service: the pinning plan, /proc task stat parsing, QMP query-stats (KVM vCPU
 * counters) parsing, `-cpu help` parsing and the choice of hotplug slots. No I/O.
 */
import { formatCpuList } from '../core/cpulist.js';
import type { HotpluggableCpu } from '../vm/driver.js';

export interface PinPlanInput {
  /** vCPU thread ids in vCPU index order (under single-threaded TCG several vCPUs share one thread) */
  vcpuTids: number[];
  /** every other thread of the QEMU process */
  emulatorTids: number[];
  /** the instance's pin list */
  pin: number[];
  /** online host CPUs */
  hostCpus: number[];
  /** vCPUs the machine can grow to: a pin list of this length pins one-to-one too */
  maxCpus?: number;
}

/**
 * Thread id -> CPU list text. One-to-one (vCPU i on pin[i]) when the pin list has as many CPUs as vCPUs (or
 * as maxCpus); otherwise every vCPU on the whole set. Emulator threads go on the host CPUs not in the pin
 * list, or on all host CPUs when the pin list covers them all.
 */
export function pinPlan(i: PinPlanInput): Map<number, string> {
  const oneToOne = i.pin.length === i.vcpuTids.length || (i.maxCpus !== undefined && i.pin.length === i.maxCpus && i.vcpuTids.length <= i.pin.length);
  const sets = new Map<number, number[]>();
  i.vcpuTids.forEach((tid, idx) => {
    const cpus = oneToOne ? [i.pin[idx]!] : i.pin;
    sets.set(tid, [...(sets.get(tid) ?? []), ...cpus]);
  });
  const rest = i.hostCpus.filter((c) => !i.pin.includes(c));
  const emulator = rest.length > 0 ? rest : i.hostCpus;
  const out = new Map<number, string>();
  for (const tid of i.emulatorTids) if (!sets.has(tid)) out.set(tid, formatCpuList(emulator));
  for (const [tid, cpus] of sets) out.set(tid, formatCpuList(cpus));
  return out;
}

export interface TaskStat {
  comm: string;
  state: string;
  /** user + system time in clock ticks */
  ticks: number;
  /** the CPU it last ran on (field 39) */
  processor: number;
}

/** /proc/PID/task/TID/stat: the comm may hold spaces and parentheses, so fields are counted after the last ')'. */
export function parseTaskStat(text: string): TaskStat | null {
  const open = text.indexOf('(');
  const close = text.lastIndexOf(')');
  if (open < 0 || close < open) return null;
  const f = text.slice(close + 1).trim().split(/\s+/); // f[0] is field 3 (state)
  const utime = Number(f[11]);
  const stime = Number(f[12]);
  const processor = Number(f[36]);
  if (!Number.isFinite(utime) || !Number.isFinite(stime) || !Number.isFinite(processor)) return null;
  return { comm: text.slice(open + 1, close), state: f[0] ?? '?', ticks: utime + stime, processor };
}

/** The Cpus_allowed_list line of /proc/.../status. */
export function parseAllowedList(status: string): string | null {
  const m = /^Cpus_allowed_list:\s*(\S+)/m.exec(status);
  return m ? m[1]! : null;
}

// ---- VM exits (KVM statistics through QMP query-stats) ----

export interface StatsResult {
  provider: string;
  'qom-path'?: string;
  stats: Array<{ name: string; value: number | number[] }>;
}

export interface VcpuExits {
  index: number | null;
  qomPath: string | null;
  counters: Record<string, number>;
}

export type ExitStats =
  | { available: true; vcpus: VcpuExits[]; total: Record<string, number> }
  | { available: false; reason: string };

export const TCG_EXITS_REASON = 'VM-exit counters exist only under KVM; this instance runs under TCG (QMP query-stats returns no KVM statistics)';

/** Counters that count exits (and the halt polling that avoids them); histograms are left out. */
export function isExitCounter(name: string): boolean {
  return name === 'exits' || name.endsWith('_exits') || name.startsWith('halt_');
}

/**
 * The reply of `query-stats {target: "vcpu", providers: [{provider: "kvm"}]}`: one StatsResult per vCPU
 * (qom-path), each a list of {name, value}. `cpus` maps qom-path -> vCPU index (from query-cpus-fast).
 */
export function parseVcpuStats(reply: unknown, cpus: Array<{ 'cpu-index': number; 'qom-path': string }> = []): ExitStats {
  if (!Array.isArray(reply)) return { available: false, reason: 'query-stats returned no list' };
  const byPath = new Map(cpus.map((c) => [c['qom-path'], c['cpu-index']]));
  const vcpus: VcpuExits[] = [];
  const total: Record<string, number> = {};
  for (const r of reply as StatsResult[]) {
    if (r?.provider !== 'kvm' || !Array.isArray(r.stats)) continue;
    const counters: Record<string, number> = {};
    for (const s of r.stats) {
      if (typeof s?.value !== 'number' || !isExitCounter(s.name)) continue;
      counters[s.name] = s.value;
      total[s.name] = (total[s.name] ?? 0) + s.value;
    }
    const qomPath = r['qom-path'] ?? null;
    vcpus.push({ index: qomPath === null ? null : (byPath.get(qomPath) ?? null), qomPath, counters });
  }
  if (vcpus.length === 0) return { available: false, reason: 'QEMU returned no KVM vCPU statistics' };
  vcpus.sort((a, b) => (a.index ?? 1e9) - (b.index ?? 1e9));
  return { available: true, vcpus, total };
}

// ---- CPU models ----

/** Model names from `qemu-system-x86_64 -cpu help` ("x86 NAME  description" lines). */
export function parseCpuHelp(text: string): Set<string> {
  const out = new Set<string>();
  for (const line of text.split('\n')) {
    const m = /^x86\s+(\S+)/.exec(line);
    if (m) out.add(m[1]!);
  }
  return out;
}

// ---- hotplug ----

export type { HotpluggableCpu };

/** The linear index of a slot in the topology (the cpu-index QEMU will give it). */
export function slotIndex(p: HotpluggableCpu['props'], t: { cores: number; threads: number }): number {
  return ((p['socket-id'] ?? 0) * t.cores + (p['core-id'] ?? 0)) * t.threads + (p['thread-id'] ?? 0);
}

/**
 * The QOM paths of the `count` plugged vCPUs to unplug, highest index first; vCPU 0 (the boot processor) is
 * never one of them. Fewer than `count` when there are not enough.
 */
export function slotsToUnplug(list: HotpluggableCpu[], count: number, t: { cores: number; threads: number }): string[] {
  return list
    .filter((c) => c['qom-path'] !== undefined && slotIndex(c.props, t) !== 0)
    .sort((a, b) => slotIndex(b.props, t) - slotIndex(a.props, t))
    .slice(0, count)
    .map((c) => c['qom-path']!);
}

/** device_add arguments for the next `count` free slots, lowest index first. */
export function nextSlots(list: HotpluggableCpu[], count: number, t: { cores: number; threads: number }): Array<Record<string, unknown>> {
  const free = list.filter((c) => c['qom-path'] === undefined).sort((a, b) => slotIndex(a.props, t) - slotIndex(b.props, t));
  return free.slice(0, count).map((c) => ({ driver: c.type, id: `cpu${slotIndex(c.props, t)}`, ...c.props }));
}
