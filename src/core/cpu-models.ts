/**
 * CPU models across the hosts of a cluster, pure: which named QEMU CPU models a host can run (as its agent reports),
 * the cluster's baseline model, and whether an instance's CPU can live-migrate to a host.
 *
 * A host's report (`CpuReport`) comes from its own QEMU: `query-cpu-definitions` under the accelerator it runs guests
 * with, whose `unavailable-features` is empty for the models that QEMU can give a guest there as defined (KVM: the
 * host CPU has every feature; TCG: QEMU emulates every feature). `host`, `max` and `base` are not named models and
 * are left out; aliases (`Haswell-noTSX`) are in, as QEMU lists them.
 *
 * The baseline rule. Candidates are the named x86-64 models of the generations table below (generic, Intel, Intel
 * Atom, AMD, Hygon), as versioned names (`Haswell-v4`, never the unversioned alias, whose meaning depends on the
 * machine type), that every host of the set can run. The chosen one is the most capable by, in order:
 * 1. its x86-64 level (psABI: v1 the base 64-bit set; v2 adds SSE4.2, POPCNT, CX16; v3 adds AVX2, BMI, FMA, MOVBE;
 *    v4 adds AVX-512 F/BW/CD/DQ/VL), so that a newer vendor line never loses to an older one of another vendor;
 * 2. its generation within its family (Conroe < Penryn < ... < Icelake-Server; Opteron_G1 < ... < EPYC-Genoa);
 * 3. its version (QEMU's newer definitions of a model come later: `-v4` after `-v1`);
 * 4. its name, so that the choice is the same on every controller.
 * Every candidate runs on every host by construction, so the order decides only which runnable model is preferred.
 */

export type Accel = 'kvm' | 'tcg';

/** What a host's QEMU can run, as its agent reports it (heartbeats; `hosts.cpu_report`). */
export interface CpuReport {
  /** the accelerator the host runs guests with */
  accel: Accel;
  qemuVersion: string;
  /** the named CPU models runnable here under `accel`, sorted */
  models: string[];
  /** the host's own CPU (/proc/cpuinfo): what `-cpu host` passes through */
  hostCpu: { vendor: string; model: string; flags: string[] };
}

/** x86-64 microarchitecture level of each family's generations, oldest first within a family. */
const FAMILIES: ReadonlyArray<{ family: string; models: ReadonlyArray<readonly [name: string, level: 1 | 2 | 3 | 4]> }> = [
  { family: 'generic', models: [['qemu64', 1], ['kvm64', 1]] },
  {
    family: 'intel',
    models: [
      ['Conroe', 1], ['Penryn', 1], ['Nehalem', 2], ['Westmere', 2], ['SandyBridge', 2], ['IvyBridge', 2], ['Haswell', 3], ['Broadwell', 3],
      ['Skylake-Client', 3], ['Skylake-Server', 4], ['Cascadelake-Server', 4], ['Cooperlake', 4], ['Icelake-Server', 4], ['SapphireRapids', 4],
      ['GraniteRapids', 4],
    ],
  },
  { family: 'intel-atom', models: [['Denverton', 2], ['Snowridge', 2]] },
  {
    family: 'amd',
    models: [['Opteron_G1', 1], ['Opteron_G2', 1], ['Opteron_G3', 1], ['Opteron_G4', 2], ['Opteron_G5', 2], ['EPYC', 3], ['EPYC-Rome', 3], ['EPYC-Milan', 3], ['EPYC-Genoa', 4]],
  },
  { family: 'hygon', models: [['Dhyana', 3]] },
];

const GENERATIONS = new Map<string, { family: string; level: number; generation: number }>();
for (const f of FAMILIES) f.models.forEach(([name, level], generation) => GENERATIONS.set(name, { family: f.family, level, generation }));

export interface ModelRank { family: string; level: number; generation: number; version: number }

/** Where a versioned model name (`Haswell-v4`) stands in the generations table; null for any other name. */
export function modelRank(name: string): ModelRank | null {
  const m = /^(.+)-v([1-9][0-9]*)$/.exec(name);
  if (!m) return null;
  const g = GENERATIONS.get(m[1]!);
  return g ? { ...g, version: Number(m[2]) } : null;
}

/** Negative when `a` is less capable than `b` by the baseline rule (see the file's comment). */
export function compareModels(a: string, b: string): number {
  const ra = modelRank(a);
  const rb = modelRank(b);
  if (!ra || !rb) return ra ? 1 : rb ? -1 : a < b ? -1 : a > b ? 1 : 0;
  return ra.level - rb.level || ra.generation - rb.generation || ra.version - rb.version || (a < b ? -1 : a > b ? 1 : 0);
}

/** The most capable ranked model of a list (null when none is in the table). */
export function bestModel(models: readonly string[]): string | null {
  let best: string | null = null;
  for (const m of models) if (modelRank(m) && (best === null || compareModels(m, best) > 0)) best = m;
  return best;
}

export interface BaselineHost { name: string; state: string; cpu: CpuReport | null }

export interface Baseline {
  accel: Accel;
  /** null: the hosts share no model of the table */
  model: string | null;
  /** the hosts it was computed over: the `up` ones that run guests with this accelerator and reported their models */
  hosts: string[];
  /** up hosts of this accelerator whose agents have not reported their models (left out) */
  unreported: string[];
}

/**
 * The cluster's baseline for guests under `accel`: the most capable table model that every `up` host running guests
 * under `accel` can run. Null when no up host reported that accelerator.
 */
export function clusterBaseline(hosts: readonly BaselineHost[], accel: Accel): Baseline | null {
  const over = hosts.filter((h) => h.state === 'up' && h.cpu?.accel === accel);
  if (over.length === 0) return null;
  const [first, ...rest] = over.map((h) => h.cpu!.models.filter((m) => modelRank(m) !== null));
  const common = rest.reduce((acc, models) => acc.filter((m) => models.includes(m)), first!);
  return {
    accel, model: bestModel(common), hosts: over.map((h) => h.name).sort(),
    unreported: hosts.filter((h) => h.state === 'up' && h.cpu === null).map((h) => h.name).sort(),
  };
}

/** The baselines of every accelerator the up hosts report, KVM first. */
export function clusterBaselines(hosts: readonly BaselineHost[]): Baseline[] {
  return (['kvm', 'tcg'] as const).map((a) => clusterBaseline(hosts, a)).filter((b): b is Baseline => b !== null);
}

/** Whether a host can run a named model (QEMU reported it runnable under its accelerator). */
export function canRunModel(report: CpuReport, model: string): boolean {
  return report.models.includes(model);
}

/** A host CPU in a message: its model name and vendor. */
export function describeHostCpu(c: CpuReport['hostCpu']): string {
  return `${c.model} (${c.vendor})`;
}

function sameHostCpu(a: CpuReport['hostCpu'], b: CpuReport['hostCpu']): boolean {
  if (a.vendor !== b.vendor || a.model !== b.model || a.flags.length !== b.flags.length) return false;
  const fa = [...a.flags].sort();
  const fb = [...b.flags].sort();
  return fa.every((f, i) => f === fb[i]);
}

/**
 * The CPU model a guest runs with: `auto` is `host` under KVM and `max` under TCG (as the launch plan makes it).
 */
export function effectiveModel(cpuModel: string, accel: Accel): string {
  return cpuModel === 'auto' ? (accel === 'kvm' ? 'host' : 'max') : cpuModel;
}

/**
 * Why an instance running with `cpuModel` under `accel` on a host reporting `source` cannot live-migrate to a host
 * reporting `dest` (`destName` names it), or null when it can:
 * - the destination must run guests under the same accelerator (QEMU does not move a guest between KVM and TCG);
 * - a named model must be one the destination can run;
 * - `host` (and `max` under KVM, which is the host CPU plus what KVM adds) passes the host CPU through: only to a host
 *   with the same CPU, the same model name and flags;
 * - `max` under TCG is whatever that QEMU emulates: only to a host with the same QEMU version.
 * A host that has not reported its models cannot be checked, and is refused rather than guessed.
 */
export function cpuMigrationProblem(cpuModel: string, accel: Accel, source: CpuReport | null, dest: CpuReport | null, destName: string, sourceName = 'the source host'): string | null {
  if (dest === null) return `host ${destName} has not reported what CPU models its QEMU can run yet`;
  if (dest.accel !== accel) return `the instance runs under ${accel.toUpperCase()} and host ${destName} runs guests under ${dest.accel.toUpperCase()}`;
  const model = effectiveModel(cpuModel, accel);
  if (model === 'host' || (model === 'max' && accel === 'kvm')) {
    const how = model === 'host' ? 'passes the host CPU through (cpu model host)' : 'runs the host CPU with all KVM offers (cpu model max)';
    if (source === null) return `the instance ${how} and ${sourceName} has not reported its CPU yet`;
    if (!sameHostCpu(source.hostCpu, dest.hostCpu)) {
      const what = source.hostCpu.model === dest.hostCpu.model && source.hostCpu.vendor === dest.hostCpu.vendor ? 'the same model with other CPU flags' : describeHostCpu(dest.hostCpu);
      return `the instance ${how}: the CPU of ${sourceName}, ${describeHostCpu(source.hostCpu)}; host ${destName} has ${what} (use a named CPU model, such as the cluster baseline, to move between different CPUs)`;
    }
    return null;
  }
  if (model === 'max') {
    if (source === null) return `the instance runs the cpu model max under TCG and ${sourceName} has not reported its QEMU version yet`;
    if (source.qemuVersion !== dest.qemuVersion) {
      return `the instance runs the cpu model max under TCG, which is what QEMU ${source.qemuVersion} emulates; host ${destName} has QEMU ${dest.qemuVersion} (use a named CPU model to move between QEMU versions)`;
    }
    return null;
  }
  if (!canRunModel(dest, model)) {
    const best = bestModel(dest.models);
    return `host ${destName} cannot run the CPU model ${model} under ${dest.accel.toUpperCase()} (its QEMU lacks features of it there${best ? `; the most capable it runs is ${best}` : ''})`;
  }
  return null;
}
