/**
 * A VM's cgroup: one interface over cgroup v1 and v2 (hybrid = v1 for cpu, cpuacct and memory). Every path
 * comes from the layout `readCgroups(root)` returns, so tests run against a fake tree of plain files.
 *
 *   v2: ROOT/corral/NAME, with +cpu +memory in the parents' cgroup.subtree_control;
 *       cpu.weight, cpu.max ("150000 100000" = 1.5 CPUs), memory.max; usage from cpu.stat usage_usec, memory.current
 *   v1: ROOT/cpu/corral/NAME, ROOT/cpuacct/corral/NAME (when a separate hierarchy), ROOT/memory/corral/NAME;
 *       cpu.shares (weight x 1024 / 100), cpu.cfs_period_us + cpu.cfs_quota_us, memory.limit_in_bytes;
 *       usage from cpuacct.usage (ns), memory.usage_in_bytes
 *
 * Groups live at the root, not under the daemon's own cgroup: QEMU outlives the daemon, and a service
 * manager stopping the daemon kills everything in the daemon's group.
 */
import { appendFileSync, existsSync, mkdirSync, readdirSync, rmSync, rmdirSync, statfsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CorralError } from '../core/errors.js';
import type { CgroupInfo } from './cgroups.js';
import { readText } from './sysfs.js';

export interface CgroupLimits {
  /** 1..10000 (v2 cpu.weight); null = the default */
  cpuWeight: number | null;
  /** CPUs (1.5 = one and a half); null = no cap */
  cpuLimit: number | null;
  /** bytes; null = no limit */
  memoryLimit: number | null;
}

export interface VmCgroup {
  version: 'v1' | 'v2';
  /** relative name, e.g. corral/UUID */
  name: string;
  /** controller -> directory (v2: cpu and memory are the same directory) */
  dirs: { cpu: string; cpuacct?: string; memory?: string };
}

export interface VmCgroupReading extends CgroupLimits {
  version: 'v1' | 'v2';
  name: string;
  dirs: VmCgroup['dirs'];
  /** CPU time used by the group, seconds */
  cpuUsage: number | null;
  /** memory charged to the group, bytes */
  memoryUsage: number | null;
  pids: number[];
}

export const CFS_PERIOD_US = 100_000;
const CGROUP_MAGICS = new Set([0x27e0eb, 0x63677270]);
/** v1 writes "unlimited" as the largest page-aligned signed 64-bit number. */
const V1_UNLIMITED = 2 ** 62;

function fail(message: string, cause?: unknown): CorralError {
  const why = cause instanceof Error ? `: ${cause.message}` : '';
  return new CorralError('INTERNAL', `cgroup: ${message}${why}`);
}

function write(file: string, value: string): void {
  try {
    writeFileSync(file, value);
  } catch (e) {
    throw fail(`cannot write "${value}" to ${file}`, e);
  }
}

function mkdir(dir: string): void {
  try {
    mkdirSync(dir, { recursive: true });
  } catch (e) {
    throw fail(`cannot create ${dir}`, e);
  }
}

/** Where a VM's group lives for this layout (nothing is created). */
export function vmCgroupPaths(layout: CgroupInfo, name: string): VmCgroup {
  if (layout.version === 'v2') {
    const dir = join(layout.root, name);
    return { version: 'v2', name, dirs: { cpu: dir, memory: dir } };
  }
  if (layout.version === 'none') throw fail(`no cgroup hierarchy is mounted at ${layout.root}`);
  const cpu = layout.v1.cpu;
  if (!cpu) throw fail(`the cpu controller is not mounted under ${layout.root}`);
  const dirs: VmCgroup['dirs'] = { cpu: join(cpu, name) };
  const acct = layout.v1.cpuacct;
  if (acct) dirs.cpuacct = join(acct, name); // the same directory when cpu and cpuacct share a hierarchy
  if (layout.v1.memory) dirs.memory = join(layout.v1.memory, name);
  return { version: 'v1', name, dirs };
}

function uniqueDirs(g: VmCgroup): string[] {
  return [...new Set([g.dirs.cpu, g.dirs.cpuacct, g.dirs.memory].filter((d): d is string => d !== undefined))];
}

/** v1 cpu.shares for a v2-style weight (100 = 1024 shares, the default). */
export function weightToShares(weight: number): number {
  return Math.max(2, Math.round((weight * 1024) / 100));
}

function sharesToWeight(shares: number): number {
  return Math.max(1, Math.round((shares * 100) / 1024));
}

/** Create the group(s) and write the limits. */
export function createVmCgroup(layout: CgroupInfo, name: string, limits: CgroupLimits): VmCgroup {
  if (!/^[A-Za-z0-9._-]+(\/[A-Za-z0-9._-]+)*$/.test(name) || name.split('/').some((p) => p === '.' || p === '..')) {
    throw fail(`"${name}" is not a cgroup name`);
  }
  const g = vmCgroupPaths(layout, name);
  if (limits.memoryLimit !== null && !g.dirs.memory) throw fail(`a memory limit needs the memory controller, which is not mounted under ${layout.root}`);
  if (g.version === 'v2') {
    const missing = ['cpu', 'memory'].filter((c) => !layout.unified?.controllers.includes(c));
    if (missing.length > 0) throw fail(`the v2 hierarchy at ${layout.root} lacks the ${missing.join(' and ')} controller(s)`);
    // Enable the controllers in every ancestor's subtree_control, top down.
    const parts = name.split('/');
    let dir = layout.root;
    for (const part of parts) {
      write(join(dir, 'cgroup.subtree_control'), '+cpu +memory');
      dir = join(dir, part);
      mkdir(dir);
    }
    if (limits.cpuWeight !== null) write(join(dir, 'cpu.weight'), String(limits.cpuWeight));
    if (limits.cpuLimit !== null) write(join(dir, 'cpu.max'), `${Math.round(limits.cpuLimit * CFS_PERIOD_US)} ${CFS_PERIOD_US}`);
    if (limits.memoryLimit !== null) write(join(dir, 'memory.max'), String(limits.memoryLimit));
    return g;
  }
  for (const d of uniqueDirs(g)) mkdir(d);
  if (limits.cpuWeight !== null) write(join(g.dirs.cpu, 'cpu.shares'), String(weightToShares(limits.cpuWeight)));
  if (limits.cpuLimit !== null) {
    write(join(g.dirs.cpu, 'cpu.cfs_period_us'), String(CFS_PERIOD_US));
    write(join(g.dirs.cpu, 'cpu.cfs_quota_us'), String(Math.round(limits.cpuLimit * CFS_PERIOD_US)));
  }
  if (limits.memoryLimit !== null) write(join(g.dirs.memory!, 'memory.limit_in_bytes'), String(limits.memoryLimit));
  return g;
}

/** Move a process (all its threads) into the group: cgroup.procs (v1: of each controller). */
export function addProcess(g: VmCgroup, pid: number): void {
  if (!Number.isInteger(pid) || pid < 1) throw fail(`bad pid ${pid}`);
  for (const d of uniqueDirs(g)) {
    try {
      appendFileSync(join(d, 'cgroup.procs'), `${pid}\n`);
    } catch (e) {
      throw fail(`cannot move process ${pid} into ${d}`, e);
    }
  }
}

function onCgroupFs(dir: string): boolean {
  try {
    return CGROUP_MAGICS.has(Number(statfsSync(dir).type));
  } catch {
    return false;
  }
}

/**
 * Remove the group(s); the processes must be gone (the kernel answers EBUSY otherwise, reported as such).
 * A directory that is not on a cgroup file system (a test tree) is removed with its plain files.
 * Returns false when there was nothing to remove.
 */
export function removeVmCgroup(g: VmCgroup): boolean {
  let removed = false;
  for (const d of uniqueDirs(g)) {
    if (!existsSync(d)) continue;
    try {
      if (onCgroupFs(d)) rmdirSync(d);
      else if (readdirSync(d, { withFileTypes: true }).some((e) => e.isDirectory())) rmdirSync(d); // fails: has children
      else rmSync(d, { recursive: true });
      removed = true;
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'EBUSY') throw new CorralError('INTERNAL', `cgroup: ${d} still holds processes`, { code: 'EBUSY' });
      throw fail(`cannot remove ${d}`, e);
    }
  }
  return removed;
}

function num(path: string): number | null {
  const t = readText(path);
  if (t === null || !/^-?\d+$/.test(t)) return null;
  return Number(t);
}

function kv(path: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const line of (readText(path) ?? '').split('\n')) {
    const [k, v] = line.trim().split(/\s+/);
    if (k && v !== undefined && /^\d+$/.test(v)) out[k] = Number(v);
  }
  return out;
}

function pids(dir: string | undefined): number[] {
  if (!dir) return [];
  return (readText(join(dir, 'cgroup.procs')) ?? '').split('\n').filter((l) => /^\d+$/.test(l.trim())).map(Number);
}

/** The limits as the kernel holds them, and the usage. */
export function readVmCgroup(g: VmCgroup): VmCgroupReading {
  if (!existsSync(g.dirs.cpu)) throw new CorralError('NOT_FOUND', `cgroup ${g.name} does not exist`);
  const base = { version: g.version, name: g.name, dirs: g.dirs, pids: pids(g.dirs.cpu) };
  if (g.version === 'v2') {
    const d = g.dirs.cpu;
    const weight = num(join(d, 'cpu.weight'));
    const [quota, period] = (readText(join(d, 'cpu.max')) ?? 'max').split(/\s+/);
    const memMax = readText(join(d, 'memory.max'));
    const usec = kv(join(d, 'cpu.stat')).usage_usec;
    return {
      ...base,
      cpuWeight: weight,
      cpuLimit: quota && quota !== 'max' ? Number(quota) / Number(period ?? CFS_PERIOD_US) : null,
      memoryLimit: memMax && memMax !== 'max' ? Number(memMax) : null,
      cpuUsage: usec === undefined ? null : usec / 1e6,
      memoryUsage: num(join(d, 'memory.current')),
    };
  }
  const shares = num(join(g.dirs.cpu, 'cpu.shares'));
  const quota = num(join(g.dirs.cpu, 'cpu.cfs_quota_us'));
  const period = num(join(g.dirs.cpu, 'cpu.cfs_period_us')) ?? CFS_PERIOD_US;
  const memLimit = g.dirs.memory ? num(join(g.dirs.memory, 'memory.limit_in_bytes')) : null;
  const ns = g.dirs.cpuacct ? num(join(g.dirs.cpuacct, 'cpuacct.usage')) : null;
  return {
    ...base,
    cpuWeight: shares === null ? null : sharesToWeight(shares),
    cpuLimit: quota === null || quota < 0 ? null : quota / period,
    memoryLimit: memLimit === null || memLimit >= V1_UNLIMITED ? null : memLimit,
    cpuUsage: ns === null ? null : ns / 1e9,
    memoryUsage: g.dirs.memory ? num(join(g.dirs.memory, 'memory.usage_in_bytes')) : null,
  };
}

/** How many times the kernel's OOM killer killed a process of the group for its memory limit (null: unknown). */
export function readOomKills(g: VmCgroup): number | null {
  const dir = g.version === 'v2' ? g.dirs.cpu : g.dirs.memory;
  if (!dir) return null;
  // v2: memory.events "oom_kill N"; v1 (kernel 4.13+): memory.oom_control "oom_kill N"
  const n = kv(join(dir, g.version === 'v2' ? 'memory.events' : 'memory.oom_control')).oom_kill;
  return n === undefined ? null : n;
}
