/**
 * The cgroup layout: v2 (unified: ROOT/cgroup.controllers), v1 (one directory per controller: cpu, memory,
 * cpuset...), or hybrid (v1 controllers plus a v2 hierarchy at ROOT/unified, as systemd mounts it).
 * A /proc/self/mounts text, when given, confirms what the directories say.
 */
import { join } from 'node:path';
import { isDir, isFile, listDir, readText } from './sysfs.js';

export type CgroupVersion = 'v1' | 'v2' | 'hybrid' | 'none';

export interface CgroupInfo {
  version: CgroupVersion;
  root: string;
  /** Every controller available, in either hierarchy, sorted. */
  controllers: string[];
  /** v1 controller -> its hierarchy directory (empty under pure v2). */
  v1: Record<string, string>;
  /** The v2 hierarchy: ROOT under v2, ROOT/unified under hybrid; null under pure v1. */
  unified: { path: string; controllers: string[] } | null;
  /** What the mount table says, when one was given; null otherwise. */
  mountsVersion: CgroupVersion | null;
  confirmedByMounts: boolean | null;
}

export interface CgroupMounts {
  /** Mount points of cgroup2 file systems. */
  v2: string[];
  /** cgroup (v1) mounts with the controllers each carries (named hierarchies such as name=systemd carry none). */
  v1: Array<{ path: string; controllers: string[] }>;
}

export const V1_CONTROLLERS = [
  'blkio', 'cpu', 'cpuacct', 'cpuset', 'debug', 'devices', 'freezer', 'hugetlb', 'memory', 'misc',
  'net_cls', 'net_prio', 'perf_event', 'pids', 'rdma',
] as const;
const KNOWN_V1 = new Set<string>(V1_CONTROLLERS);

/** Octal escapes of /proc/self/mounts fields ("\040" for a space). */
function unescapeMount(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

/** The cgroup lines of a /proc/self/mounts (or /proc/mounts) text. */
export function parseCgroupMounts(text: string): CgroupMounts {
  const out: CgroupMounts = { v2: [], v1: [] };
  for (const line of text.split('\n')) {
    const [, mountPoint, fsType, options] = line.trim().split(/\s+/);
    if (mountPoint === undefined || options === undefined) continue;
    const path = unescapeMount(mountPoint);
    if (fsType === 'cgroup2') out.v2.push(path);
    else if (fsType === 'cgroup') out.v1.push({ path, controllers: options.split(',').filter((o) => KNOWN_V1.has(o)) });
  }
  return out;
}

/** The layout the mount table shows for a cgroup root mounted at MOUNTPOINT. */
export function cgroupVersionFromMounts(mounts: CgroupMounts, mountPoint = '/sys/fs/cgroup'): CgroupVersion {
  const base = mountPoint.replace(/\/+$/, '');
  if (mounts.v2.includes(base)) return 'v2';
  const v1 = mounts.v1.some((m) => m.path.startsWith(`${base}/`) && m.controllers.length > 0);
  if (!v1) return 'none';
  return mounts.v2.some((p) => p.startsWith(`${base}/`)) ? 'hybrid' : 'v1';
}

function words(text: string | null): string[] {
  return (text ?? '').split(/\s+/).filter((w) => w !== '');
}

/** v1 controller -> directory, from entries such as "cpu", "memory", "cpu,cpuacct" (a plain name wins). */
function v1Hierarchies(root: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const entry of listDir(root)) {
    if (!isDir(join(root, entry))) continue;
    for (const name of entry.split(',')) {
      if (!KNOWN_V1.has(name)) continue;
      if (out[name] === undefined || entry === name) out[name] = join(root, entry);
    }
  }
  return out;
}

export interface CgroupOptions {
  /** A /proc/self/mounts-style text to confirm the layout with. */
  mounts?: string;
  /** Where ROOT is mounted on the host the mount text describes (default /sys/fs/cgroup). */
  mountPoint?: string;
}

export function readCgroups(root = '/sys/fs/cgroup', opts: CgroupOptions = {}): CgroupInfo {
  let version: CgroupVersion;
  let v1: Record<string, string> = {};
  let unified: CgroupInfo['unified'] = null;
  if (isFile(join(root, 'cgroup.controllers'))) {
    version = 'v2';
    unified = { path: root, controllers: words(readText(join(root, 'cgroup.controllers'))) };
  } else {
    v1 = v1Hierarchies(root);
    const u = join(root, 'unified');
    const hasUnified = isFile(join(u, 'cgroup.controllers'));
    if (hasUnified) unified = { path: u, controllers: words(readText(join(u, 'cgroup.controllers'))) };
    version = Object.keys(v1).length === 0 ? 'none' : hasUnified ? 'hybrid' : 'v1';
  }
  const controllers = [...new Set([...Object.keys(v1), ...(unified?.controllers ?? [])])].sort();
  const mountsVersion =
    opts.mounts === undefined ? null : cgroupVersionFromMounts(parseCgroupMounts(opts.mounts), opts.mountPoint);
  return {
    version,
    root,
    controllers,
    v1,
    unified,
    mountsVersion,
    confirmedByMounts: mountsVersion === null ? null : mountsVersion === version,
  };
}
