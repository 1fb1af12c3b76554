/** Everything the host offers to VMs, in one JSON-serialisable object: CPUs, NUMA, memory, hugepages, KSM, cgroups. */
import { join } from 'node:path';
import { readMemInfo } from './basics.js';
import { readCgroups, type CgroupInfo } from './cgroups.js';
import { readCpuInfo, readCpuTopology, type CpuInfo, type CpuTopology } from './cpu.js';
import {
  readHugepages,
  readKsm,
  readNumaNodes,
  readTransparentHugepages,
  type HugepagePool,
  type KsmInfo,
  type NumaNode,
} from './memory.js';
import { readText } from './sysfs.js';

export interface HostInventory {
  cpu: CpuInfo & { topology: CpuTopology };
  /** Empty on a host without sys/devices/system/node (treat it as one node holding everything). */
  numa: NumaNode[];
  memory: {
    total: number;
    available: number;
    hugepages: HugepagePool[];
    /** always, madvise or never; null without THP. */
    transparentHugepages: string | null;
    ksm: KsmInfo;
  };
  cgroups: CgroupInfo;
}

export interface HostRoots {
  sys?: string;
  proc?: string;
  /** The cgroup root; default SYS/fs/cgroup. */
  cgroup?: string;
}

export function readHostInventory(roots: HostRoots = {}): HostInventory {
  const sys = roots.sys ?? '/sys';
  const proc = roots.proc ?? '/proc';
  const cgroup = roots.cgroup ?? join(sys, 'fs/cgroup');
  const mem = readMemInfo(proc);
  const mounts = readText(join(proc, 'self/mounts'));
  return {
    cpu: { ...readCpuInfo(proc), topology: readCpuTopology(sys, proc) },
    numa: readNumaNodes(sys),
    memory: {
      total: mem.total,
      available: mem.available,
      hugepages: readHugepages(sys),
      transparentHugepages: readTransparentHugepages(sys),
      ksm: readKsm(sys),
    },
    // The real mount table names the cgroup root as given; a fake tree's describes the usual /sys/fs/cgroup.
    cgroups: readCgroups(cgroup, mounts === null ? {} : { mounts, mountPoint: proc === '/proc' ? cgroup : '/sys/fs/cgroup' }),
  };
}
