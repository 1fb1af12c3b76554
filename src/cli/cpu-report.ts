/** How `corral host show NAME` and `corral pool show` print what a cluster's hosts report of their CPUs and memory. */
import { bestModel } from '../core/cpu-models.js';
import type { Formatters } from './format.js';
import { size } from './format.js';

interface Baseline { accel: string; model: string | null; hosts: string[]; unreported: string[] }

/** A host view with its reports as `corral host show NAME` prints them: a missing one says so. */
export function withReportsShown(host: Record<string, unknown>): Record<string, unknown> {
  const out = { ...host };
  for (const k of ['cpuReport', 'memoryReport']) if (k in out && out[k] === null) out[k] = 'not reported yet';
  return out;
}

/** `corral host show NAME`'s formatters for the CPU and memory reports (the whole of them is in --json). */
export const reportFormatters: Formatters = {
  'cpuReport.models': (v) => {
    const models = v as string[];
    return `${models.length} runnable, the most capable ${bestModel(models) ?? '-'}: ${models.join(' ')}`;
  },
  'cpuReport.hostCpu.flags': (v) => `${(v as string[]).length} flags (--json lists them)`,
  'memoryReport.available': size,
  'memoryReport.hugepages': (v) => {
    const pools = v as Array<{ size: number; total: number; free: number }>;
    return pools.length === 0 ? 'none' : pools.map((p) => `${size(p.size)}: ${p.free}/${p.total} free`).join(', ');
  },
};

/** The baseline lines under `corral pool show`'s table. */
export function baselineLines(baselines: Baseline[] | undefined): string[] {
  if (!baselines || baselines.length === 0) return ['CPU baseline: none yet (no up host has reported its CPU models)'];
  return baselines.map((b) => `CPU baseline under ${b.accel.toUpperCase()}: ${b.model ?? 'none (the hosts share no named model)'}, the most capable named model every up ${b.accel.toUpperCase()} host runs (${b.hosts.join(', ')})` +
    (b.unreported.length > 0 ? `; not reported yet: ${b.unreported.join(', ')}` : ''));
}
