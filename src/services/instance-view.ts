/** An instance as the API shows it: the stored row, plus what /proc and the disk say now. */
import { statSync } from 'node:fs';
import type { InstancePaths } from '../core/paths.js';
import type { Accelerator, InstanceSpec } from '../core/spec.js';
import { isActive, type InstanceState } from '../core/state.js';
import { residentBytes } from '../qemu/proc.js';
import type { InstanceRow } from '../store/store.js';
import { readExitInfo, type ExitInfo } from './exit-cause.js';

export interface InstanceView {
  name: string;
  uuid: string;
  state: InstanceState;
  image: string;
  cpus: number;
  memory: number;
  firmware: string;
  network: string;
  mac: string;
  accel: Accelerator | null;
  pid: number | null;
  disk: { path: string; allocated: number | null };
  uptime: number | null;
  rss: number | null;
  createdAt: string;
  startedAt: string | null;
  lastError: string | null;
  /** why the last QEMU ended (exit status or signal, the kernel's and QEMU's own word); null before any exit */
  lastExit: ExitInfo | null;
  /** the whole stored configuration: topology, limits, pinning, disks, NICs, host devices */
  spec: InstanceSpec;
  /** when the instance's record last changed on its host (that host's clock): orders reports of it in a cluster */
  updatedAt: string;
}

/**
 * What a cluster agent reports of each instance in its heartbeat: what `corral list` shows less what changes all the
 * time (uptime follows from startedAt, RSS is only live), and updatedAt to order reports.
 */
export type InstanceSummary = Pick<InstanceView, 'name' | 'uuid' | 'state' | 'image' | 'cpus' | 'memory' | 'accel' | 'pid' | 'startedAt' | 'lastError' | 'updatedAt'>;

/** The summary of a stored instance, as its view would show it (accel, pid and startedAt only while it runs). */
export function instanceSummary(r: InstanceRow): InstanceSummary {
  const live = isActive(r.state) && r.pid !== null;
  return {
    name: r.name, uuid: r.uuid, state: r.state, image: r.spec.image, cpus: r.spec.cpus, memory: r.spec.memory,
    accel: live ? r.accel : null, pid: live ? r.pid : null, startedAt: live ? r.startedAt : null, lastError: r.lastError, updatedAt: r.updatedAt,
  };
}

export function instanceView(r: InstanceRow, p: InstancePaths): InstanceView {
  const live = isActive(r.state) && r.pid !== null;
  let allocated: number | null = null;
  try {
    allocated = statSync(p.disk).blocks * 512;
  } catch {
    /* not there */
  }
  const first = r.spec.nics[0];
  return {
    name: r.name, uuid: r.uuid, state: r.state, image: r.spec.image, cpus: r.spec.cpus, memory: r.spec.memory,
    firmware: r.spec.firmware, network: first?.network ?? (first ? first.model : 'none'), mac: first?.mac ?? r.mac,
    accel: live ? r.accel : null, pid: live ? r.pid : null,
    disk: { path: p.disk, allocated },
    uptime: live && r.startedAt ? Math.max(0, (Date.now() - Date.parse(r.startedAt)) / 1000) : null,
    rss: live && r.pid ? residentBytes(r.pid) : null,
    createdAt: r.createdAt, startedAt: live ? r.startedAt : null, lastError: r.lastError, lastExit: readExitInfo(p.exitInfo), spec: r.spec,
    updatedAt: r.updatedAt,
  };
}
