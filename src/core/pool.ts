/**
 * The resource pool of one host: how many vCPUs and bytes of guest memory may be handed out (host threads and
 * memory times the overcommit ratios, less the memory kept for the host), what is allocated, what is free,
 * and whether a new instance fits. Pure: host facts and allocations come in as arguments.
 */
import { CorralError, invalidSpec } from './errors.js';
import { MiB, formatSize, parseSize } from './units.js';

export interface PoolConfig {
  /** vCPUs per host CPU thread (default 4.0). */
  cpuRatio: number;
  /** Guest memory per byte of host memory (default 1.0: no memory overcommit). */
  memoryRatio: number;
  /** Bytes kept for the host and never given to guests (default 512 MiB). */
  reservedMemory: number;
}

export const DEFAULT_POOL_CONFIG: Readonly<PoolConfig> = Object.freeze({ cpuRatio: 4.0, memoryRatio: 1.0, reservedMemory: 512 * MiB });

/** Overcommit ratios above this are refused as mistakes. */
export const MAX_RATIO = 64;

export interface HostCapacityInput {
  /** Host CPU threads. */
  cpus: number;
  /** Host memory in bytes, total. */
  memory: number;
}

export interface Allocation {
  name: string;
  cpus: number;
  memory: number;
}

export interface PoolView {
  capacity: { cpus: number; memory: number };
  allocated: { cpus: number; memory: number; instances: number };
  /** capacity - allocated, never below zero (an overcommitted pool has nothing free). */
  free: { cpus: number; memory: number };
  ratios: { cpu: number; memory: number };
  reservedMemory: number;
}

export type Resource = 'cpus' | 'memory';

export interface Shortfall {
  resource: Resource;
  requested: number;
  free: number;
  shortBy: number;
}

export type Admission = { ok: true } | { ok: false; short: Shortfall[]; message: string };

/** Capacity of a host under a pool configuration: vCPUs and guest memory bytes (never negative). */
export function poolCapacity(host: HostCapacityInput, cfg: PoolConfig): { cpus: number; memory: number } {
  return {
    cpus: Math.max(0, Math.floor(host.cpus * cfg.cpuRatio)),
    memory: Math.max(0, Math.floor(host.memory * cfg.memoryRatio) - cfg.reservedMemory),
  };
}

export function poolView(host: HostCapacityInput, cfg: PoolConfig, allocations: readonly Allocation[]): PoolView {
  const capacity = poolCapacity(host, cfg);
  let cpus = 0;
  let memory = 0;
  for (const a of allocations) {
    cpus += a.cpus;
    memory += a.memory;
  }
  return {
    capacity,
    allocated: { cpus, memory, instances: allocations.length },
    free: { cpus: Math.max(0, capacity.cpus - cpus), memory: Math.max(0, capacity.memory - memory) },
    ratios: { cpu: cfg.cpuRatio, memory: cfg.memoryRatio },
    reservedMemory: cfg.reservedMemory,
  };
}

function amount(resource: Resource, n: number): string {
  return resource === 'memory' ? formatSize(n) : `${n} vCPU${n === 1 ? '' : 's'}`;
}

/** Whether a request fits in what is free; if not, what is short and by how much, in words. */
export function admit(view: PoolView, request: { cpus: number; memory: number }): Admission {
  const short: Shortfall[] = [];
  for (const resource of ['cpus', 'memory'] as const) {
    const requested = request[resource];
    const free = view.free[resource];
    if (requested > free) short.push({ resource, requested, free, shortBy: requested - free });
  }
  if (short.length === 0) return { ok: true };
  const message = short
    .map((s) => {
      const what = s.resource === 'memory' ? 'memory' : 'CPUs';
      return `not enough ${what} in the pool: requested ${amount(s.resource, s.requested)}, free ${amount(s.resource, s.free)} (short by ${amount(s.resource, s.shortBy)})`;
    })
    .join('; ');
  return { ok: false, short, message };
}

/** admit(), or throw INSUFFICIENT_RESOURCES (409) carrying the shortfalls. */
export function admitOrThrow(view: PoolView, request: { cpus: number; memory: number }): void {
  const r = admit(view, request);
  if (!r.ok) throw new CorralError('INSUFFICIENT_RESOURCES', r.message, { short: r.short });
}

function ratio(field: string, v: unknown, fallback: number): number {
  if (v === undefined) return fallback;
  if (typeof v !== 'number' || !Number.isFinite(v)) throw invalidSpec(field, `must be a number, got ${JSON.stringify(v) ?? String(v)}`);
  if (v <= 0) throw invalidSpec(field, `must be greater than 0, got ${v}`);
  if (v > MAX_RATIO) throw invalidSpec(field, `must be at most ${MAX_RATIO}, got ${v}`);
  return v;
}

function reserve(field: string, v: unknown, fallback: number): number {
  if (v === undefined) return fallback;
  if (typeof v === 'number') {
    if (!Number.isSafeInteger(v) || v < 0) throw invalidSpec(field, `must be a whole number of bytes, 0 or more, got ${v}`);
    return v;
  }
  if (typeof v === 'string') {
    if (/^\s*0+(\.0*)?\s*([kmgt]i?b?|b)?\s*$/i.test(v)) return 0;
    return parseSize(field, v);
  }
  throw invalidSpec(field, 'must be a size like "512M" or a number of bytes');
}

const KNOWN = new Set(['cpuRatio', 'memoryRatio', 'reservedMemory']);

/**
 * A pool configuration from untrusted input (a config file, the API). Missing fields take the defaults;
 * unknown fields, ratios outside (0, 64] and negative or unparsable reserves are INVALID_SPEC naming the field.
 * `prefix` is put before each field name in errors (e.g. "pool." gives "pool.cpuRatio").
 */
export function validatePoolConfig(raw: unknown, prefix = ''): PoolConfig {
  if (raw === undefined || raw === null) return { ...DEFAULT_POOL_CONFIG };
  if (typeof raw !== 'object' || Array.isArray(raw)) throw invalidSpec(prefix.replace(/\.$/, '') || 'pool', 'must be an object');
  const o = raw as Record<string, unknown>;
  for (const k of Object.keys(o)) {
    if (!KNOWN.has(k)) throw invalidSpec(prefix + k, `unknown field (known: ${[...KNOWN].join(', ')})`);
  }
  return {
    cpuRatio: ratio(prefix + 'cpuRatio', o.cpuRatio, DEFAULT_POOL_CONFIG.cpuRatio),
    memoryRatio: ratio(prefix + 'memoryRatio', o.memoryRatio, DEFAULT_POOL_CONFIG.memoryRatio),
    reservedMemory: reserve(prefix + 'reservedMemory', o.reservedMemory, DEFAULT_POOL_CONFIG.reservedMemory),
  };
}
