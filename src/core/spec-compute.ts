/**
 * The CPU and memory part of an instance spec: topology, CPU model, pinning, cgroup share and cap, vCPU and
 * memory hotplug limits, memory backing and the balloon. Pure: host facts come in as arguments.
 */
import { CorralError, invalidSpec } from './errors.js';
import { parseCpuList } from './cpulist.js';
import { GiB, MiB, formatSize, parseSize } from './units.js';
import type { ComputeSpec, HugepageSize } from './spec-schema.js';
import type { ComputeRequest } from './request-schema.js';

export const HUGEPAGE_BYTES: Record<HugepageSize, number> = { '2M': 2 * MiB, '1G': GiB };
/** virtio-mem hotplugs memory in blocks of this size. */
export const VIRTIO_MEM_BLOCK = 2 * MiB;

export type { ComputeRequest, ComputeSpec, HugepageSize };

export interface ComputeHost {
  cpus: number;
  memory: number;
  /** online host CPU numbers */
  cpuList: number[];
}

function positiveInt(field: string, v: unknown, max: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) throw invalidSpec(field, `must be a whole number of at least 1, got ${JSON.stringify(v)}`);
  if (v > max) throw invalidSpec(field, `at most ${max}, got ${v}`);
  return v;
}

export function validateTopology(req: ComputeRequest, cpus: number, maxVcpus: number): { topology: ComputeSpec['topology']; maxCpus: number } {
  const maxCpus = req.maxCpus === undefined ? null : positiveInt('maxCpus', req.maxCpus, maxVcpus);
  if (maxCpus !== null && maxCpus < cpus) throw invalidSpec('maxCpus', `must be at least cpus (${cpus}), got ${maxCpus}`);
  const given = req.sockets !== undefined || req.cores !== undefined || req.threads !== undefined;
  const sockets = req.sockets === undefined ? 1 : positiveInt('sockets', req.sockets, maxVcpus);
  const threads = req.threads === undefined ? 1 : positiveInt('threads', req.threads, maxVcpus);
  const total = maxCpus ?? cpus;
  let cores: number;
  if (req.cores !== undefined) cores = positiveInt('cores', req.cores, maxVcpus);
  else if (total % (sockets * threads) === 0) cores = total / (sockets * threads);
  else throw invalidSpec('sockets', `${sockets} socket(s) x ${threads} thread(s) does not divide ${total} vCPUs`);
  const product = sockets * cores * threads;
  if (given && maxCpus === null && product !== cpus) {
    throw invalidSpec('sockets', `topology ${sockets} socket(s) x ${cores} core(s) x ${threads} thread(s) = ${product} vCPUs, but cpus is ${cpus}`);
  }
  if (maxCpus !== null && product !== maxCpus) {
    throw invalidSpec('sockets', `topology ${sockets} socket(s) x ${cores} core(s) x ${threads} thread(s) = ${product} vCPUs, but maxCpus is ${maxCpus}`);
  }
  return { topology: { sockets, cores, threads }, maxCpus: product };
}

export function validatePin(v: unknown, host: ComputeHost): number[] | null {
  if (v === undefined || v === null) return null;
  let list: number[];
  try {
    list = Array.isArray(v) ? v.map((x) => { if (!Number.isInteger(x) || x < 0) throw new CorralError('INVALID_SPEC', `${String(x)} is not a CPU number`); return x as number; }) : parseCpuList(String(v));
  } catch (e) {
    throw invalidSpec('pin', `"${String(v)}" is not a CPU list (example: 0-3,6): ${(e as Error).message}`);
  }
  if (list.length === 0) throw invalidSpec('pin', 'the CPU list is empty');
  const missing = list.filter((c) => !host.cpuList.includes(c));
  if (missing.length > 0) throw invalidSpec('pin', `the host has no CPU ${missing.join(', ')} (online: ${host.cpuList.join(',')})`);
  if (new Set(list).size !== list.length) throw invalidSpec('pin', 'a CPU is named twice');
  // As many CPUs as vCPUs pins one-to-one; any other count is one set shared by all vCPUs.
  return list;
}

export function validateCompute(req: ComputeRequest, cpus: number, memory: number, host: ComputeHost, maxVcpus: number): ComputeSpec {
  const { topology, maxCpus } = validateTopology(req, cpus, maxVcpus);
  if (maxCpus > host.cpus && maxCpus > cpus) throw invalidSpec('maxCpus', `${maxCpus} vCPUs is more than the host's ${host.cpus} CPUs`);
  const cpuModel = req.cpuModel ?? 'auto';
  if (typeof cpuModel !== 'string' || !/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(cpuModel)) throw invalidSpec('cpuModel', `"${String(cpuModel)}" is not a CPU model name`);
  const pin = validatePin(req.pin, host);
  const cpuWeight = req.cpuWeight === undefined ? null : positiveInt('cpuWeight', req.cpuWeight, 10_000);
  let cpuLimit: number | null = null;
  if (req.cpuLimit !== undefined) {
    if (typeof req.cpuLimit !== 'number' || !(req.cpuLimit >= 0.01)) throw invalidSpec('cpuLimit', `must be a number of CPUs of at least 0.01, got ${JSON.stringify(req.cpuLimit)}`);
    if (req.cpuLimit > host.cpus) throw invalidSpec('cpuLimit', `${req.cpuLimit} CPUs is more than the host's ${host.cpus}`);
    cpuLimit = Math.round(req.cpuLimit * 100) / 100;
  }
  const hugepages = req.hugepages ?? null;
  if (hugepages !== null && hugepages !== '2M' && hugepages !== '1G') throw invalidSpec('hugepages', `must be "2M" or "1G", got ${JSON.stringify(hugepages)}`);
  if (hugepages && memory % HUGEPAGE_BYTES[hugepages] !== 0) throw invalidSpec('memory', `must be a multiple of the ${hugepages} hugepage size`);
  let maxMemory: number | null = null;
  if (req.maxMemory !== undefined) {
    maxMemory = parseSize('maxMemory', req.maxMemory);
    if (maxMemory < memory) throw invalidSpec('maxMemory', `must be at least memory (${memory / MiB} MiB)`);
    if (maxMemory > host.memory) throw invalidSpec('maxMemory', `${maxMemory / MiB} MiB is more than the host's ${Math.floor(host.memory / MiB)} MiB`);
    const block = hugepages ? Math.max(VIRTIO_MEM_BLOCK, HUGEPAGE_BYTES[hugepages]) : VIRTIO_MEM_BLOCK;
    if ((maxMemory - memory) % block !== 0) throw invalidSpec('maxMemory', `maxMemory - memory must be a multiple of ${block / MiB} MiB`);
    if (maxMemory === memory) maxMemory = null;
  }
  let memoryLimit: number | null = null;
  if (req.memoryLimit !== undefined) {
    memoryLimit = parseSize('memoryLimit', req.memoryLimit);
    const floor = maxMemory ?? memory;
    if (memoryLimit < floor) throw invalidSpec('memoryLimit', `must be at least the guest's memory (${floor / MiB} MiB) plus QEMU's own overhead`);
  }
  const prealloc = req.prealloc ?? false;
  if (typeof prealloc !== 'boolean') throw invalidSpec('prealloc', 'must be true or false');
  const balloon = req.balloon ?? true;
  if (typeof balloon !== 'boolean') throw invalidSpec('balloon', 'must be true or false');
  return { topology, maxCpus, cpuModel, pin, cpuWeight, cpuLimit, maxMemory, memoryLimit, prealloc, hugepages, balloon };
}

/**
 * QEMU's own memory next to the guest's, for a cgroup memory limit: the process, its libraries, device models,
 * iothreads and user networking (96 MiB), a stack and run state per vCPU (8 MiB each), and under TCG the
 * translation cache and soft TLBs (192 MiB; an idle tiny guest under TCG here holds about 150 MiB beyond what
 * the guest touched). A limit below guest memory plus this gets the guest OOM-killed once it uses its memory.
 */
export function qemuOverhead(accel: 'kvm' | 'tcg', maxCpus: number): number {
  return 96 * MiB + 8 * MiB * maxCpus + (accel === 'tcg' ? 192 * MiB : 0);
}

/** A memory limit must hold all the guest can have (maxMemory, else memory) plus QEMU's overhead. */
export function checkMemoryLimit(spec: Pick<ComputeSpec, 'memoryLimit' | 'maxMemory' | 'maxCpus'> & { memory: number }, accel: 'kvm' | 'tcg'): void {
  if (spec.memoryLimit === null) return;
  const guest = spec.maxMemory ?? spec.memory;
  const floor = guest + qemuOverhead(accel, spec.maxCpus);
  if (spec.memoryLimit < floor) {
    throw invalidSpec('memoryLimit', `${formatSize(spec.memoryLimit)} is too small: the guest's ${formatSize(guest)} plus QEMU's own ${formatSize(floor - guest)} under ${accel.toUpperCase()} needs at least ${formatSize(floor)}`);
  }
}

/**
 * The pages a hugepage-backed guest needs (its boot and hotpluggable memory), the free ones in a host's pool of that
 * size and that pool's size (null: no such pool); null for a guest not on hugepages.
 */
export function hugepageNeed(spec: Pick<ComputeSpec, 'hugepages' | 'maxMemory'> & { memory: number }, pools: ReadonlyArray<{ size: number; total: number; free: number }>): { need: number; free: number; total: number | null } | null {
  if (!spec.hugepages) return null;
  const size = HUGEPAGE_BYTES[spec.hugepages];
  const pool = pools.find((p) => p.size === size);
  return { need: Math.ceil((spec.maxMemory ?? spec.memory) / size), free: pool?.free ?? 0, total: pool ? pool.total : null };
}

/** Specs stored before these fields existed read with the defaults. */
export function computeDefaults(cpus: number): ComputeSpec {
  return {
    topology: { sockets: 1, cores: cpus, threads: 1 }, maxCpus: cpus, cpuModel: 'auto', pin: null, cpuWeight: null, cpuLimit: null,
    maxMemory: null, memoryLimit: null, prealloc: false, hugepages: null, balloon: true,
  };
}
