/**
 * The controller's use of what hosts report about their CPUs and memory (core/cpu-models.ts,
 * core/migration-checks.ts):
 * - before a live migration reserves anything (migration.ts prepare): a named destination that cannot take the
 *   instance is refused (NOT_MIGRATABLE naming the CPU or model, INSUFFICIENT_RESOURCES for hugepages or preallocated
 *   memory); without one, the hosts that cannot are left out of the placer's choice and named in its NO_HOST_FITS,
 *   and when no other up host could run the instance's CPU it is NOT_MIGRATABLE.
 * - at a create: `cpuModel` auto (or none) for a host that runs guests under KVM becomes the cluster's baseline for
 *   KVM, so that the guest can later move to any up host (under TCG it stays auto: `max`, the same on every host of
 *   one QEMU version).
 * - the baselines `corral pool show` prints.
 */
import { CorralError } from '../core/errors.js';
import { clusterBaseline, clusterBaselines, type Accel, type Baseline, type BaselineHost } from '../core/cpu-models.js';
import { destinationProblem, type DestinationProblem } from '../core/migration-checks.js';
import type { InstanceSpec } from '../core/spec.js';
import type { HostRow } from './cluster-store.js';

const asBaselineHost = (h: HostRow): BaselineHost => ({ name: h.name, state: h.state, cpu: h.cpuReport });

/** The cluster's CPU baselines, one per accelerator its up hosts run guests with. */
export function baselinesOf(hosts: readonly HostRow[]): Baseline[] {
  return clusterBaselines(hosts.map(asBaselineHost));
}

/**
 * The CPU model a create's request gets on `host` (chosen among `hosts`): the KVM baseline when it asks for auto (or
 * says nothing) and would run under KVM there; null when the request stays as it is.
 */
export function resolvedCpuModel(body: Record<string, unknown>, host: HostRow, hosts: readonly HostRow[]): string | null {
  if ((body.cpuModel ?? 'auto') !== 'auto' || body.accel === 'tcg' || host.cpuReport?.accel !== 'kvm') return null;
  return clusterBaseline(hosts.map(asBaselineHost), 'kvm')?.model ?? null;
}

/** The create's request as kept and sent to its host (see resolvedCpuModel). */
export function withResolvedCpuModel(body: Record<string, unknown>, host: HostRow, hosts: readonly HostRow[]): Record<string, unknown> {
  const model = resolvedCpuModel(body, host, hosts);
  return model === null ? body : { ...body, cpuModel: model };
}

export interface MigratingInstance { name: string; spec: InstanceSpec; accel: Accel | null }

/**
 * The checks of a migration's destination before anything is reserved: throws for a named destination (`to`) that
 * cannot take the instance, or when no other up host can run its CPU; else the hosts that cannot, with why, for the
 * placer to leave out.
 */
export function checkDestinations(inst: MigratingInstance, from: HostRow, hosts: readonly HostRow[], to?: string): Map<string, string> {
  const accel = inst.accel ?? from.cpuReport?.accel ?? null;
  if (accel === null) return new Map(); // never started: nothing to check against (the prepare refuses it as not running)
  const problem = (h: HostRow): DestinationProblem | null =>
    destinationProblem({ spec: inst.spec, accel }, { name: from.name, cpu: from.cpuReport }, { name: h.name, cpu: h.cpuReport, memory: h.memoryReport });
  if (to !== undefined) {
    const dest = hosts.find((h) => h.name === to);
    const p = dest && dest.name !== from.name ? problem(dest) : null;
    if (p) throw new CorralError(p.code, `instance "${inst.name}" cannot be live-migrated to host ${to}: ${p.why}`, { name: inst.name, host: to, reason: p.why });
    return new Map();
  }
  const unfit = new Map<string, string>();
  const others = hosts.filter((h) => h.name !== from.name && h.state === 'up');
  const cpu: string[] = [];
  for (const h of others) {
    const p = problem(h);
    if (!p) continue;
    unfit.set(h.name, `cannot take it: ${p.why}`);
    if (p.kind === 'cpu') cpu.push(p.why);
  }
  if (others.length > 0 && cpu.length === others.length) {
    throw new CorralError('NOT_MIGRATABLE', `instance "${inst.name}" cannot be live-migrated: no other up host can run its CPU: ${cpu.join('; ')}`, { name: inst.name, reasons: cpu });
  }
  return unfit;
}
