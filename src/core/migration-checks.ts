/**
 * What a live migration's destination must offer besides room in its pool (admission) and nothing host-bound
 * (core/migration.ts), checked by the controller before anything moves, from what the destination's agent reported:
 * - its CPU can run the instance's CPU model (core/cpu-models.ts: NOT_MIGRATABLE naming the CPU or model);
 * - a hugepage-backed guest finds its pages free in the destination's pool of that size, and a preallocated one finds
 *   its memory available there (INSUFFICIENT_RESOURCES saying what is short). The destination's agent checks the
 *   hugepages again when it starts the incoming QEMU (services/memory.ts), on its own fresh figures.
 * Pure: the reports come in as arguments.
 */
import { cpuMigrationProblem, type Accel, type CpuReport } from './cpu-models.js';
import { formatSize } from './units.js';
import { hugepageNeed } from './spec-compute.js';
import type { InstanceSpec } from './spec.js';

/** A host's memory as its agent reports it with each heartbeat (`hosts.memory_report`). */
export interface MemoryReport {
  /** MemAvailable, bytes */
  available: number;
  /** the host-wide hugepage pools: page size in bytes, pages, pages free */
  hugepages: Array<{ size: number; total: number; free: number }>;
}

type BackingSpec = Pick<InstanceSpec, 'hugepages' | 'prealloc' | 'memory' | 'maxMemory'>;

/** Why the destination's memory cannot back the guest as its spec asks (null: it can, or it reported nothing). */
export function memoryBackingProblem(spec: BackingSpec, dest: MemoryReport | null, destName: string): string | null {
  if (dest === null) return null; // not reported: its agent's own check at the incoming start decides
  const hp = hugepageNeed(spec, dest.hugepages);
  if (hp && hp.free < hp.need) {
    return `the guest's memory is backed by ${spec.hugepages} hugepages: it needs ${hp.need}, host ${destName} has ${hp.free} free${hp.total === null ? ` (no ${spec.hugepages} hugepage pool)` : ` of ${hp.total}`}`;
  }
  if (spec.prealloc && !spec.hugepages && dest.available < spec.memory) {
    return `the guest's memory is preallocated: its ${formatSize(spec.memory)} must be allocated at once on host ${destName}, which has ${formatSize(dest.available)} available`;
  }
  return null;
}

export interface DestinationProblem { code: 'NOT_MIGRATABLE' | 'INSUFFICIENT_RESOURCES'; why: string; kind: 'cpu' | 'memory' }

/** The first reason a destination cannot take the instance (CPU, then memory backing), or null. */
export function destinationProblem(
  inst: { spec: BackingSpec & Pick<InstanceSpec, 'cpuModel'>; accel: Accel },
  source: { name: string; cpu: CpuReport | null },
  dest: { name: string; cpu: CpuReport | null; memory: MemoryReport | null },
): DestinationProblem | null {
  const cpu = cpuMigrationProblem(inst.spec.cpuModel, inst.accel, source.cpu, dest.cpu, dest.name, `host ${source.name}`);
  if (cpu) return { code: 'NOT_MIGRATABLE', why: cpu, kind: 'cpu' };
  const mem = memoryBackingProblem(inst.spec, dest.memory, dest.name);
  return mem ? { code: 'INSUFFICIENT_RESOURCES', why: mem, kind: 'memory' } : null;
}
