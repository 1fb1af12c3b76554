/**
 * Changing a stored instance spec (`corral set`, a resize of a stopped instance): the change is applied to the
 * request the spec answers and validated exactly as a create is. Pure.
 */
import { CorralError, invalidSpec } from './errors.js';
import { validateCreate, type CreateRequest, type HostLimits, type InstanceSpec } from './spec.js';
import { SpecChangeSchema, type SpecChange } from './request-schema.js';

/** What `set` may change; null clears an optional field (pin, limits, maxMemory, hugepages): the API's body schema's type. */
export type { SpecChange };

export const CHANGE_KEYS = Object.keys(SpecChangeSchema.properties) as ReadonlyArray<keyof SpecChange>;

const TOPOLOGY: ReadonlyArray<keyof SpecChange> = ['cpus', 'maxCpus', 'sockets', 'cores', 'threads'];

/** The create request a stored spec answers (sizes in bytes). */
function requestOf(s: InstanceSpec): CreateRequest {
  const r: CreateRequest = {
    name: 'x', image: s.image, cpus: s.cpus, memory: s.memory, firmware: s.firmware, accel: s.accel, rootBus: s.rootBus,
    sockets: s.topology.sockets, cores: s.topology.cores, threads: s.topology.threads, maxCpus: s.maxCpus, cpuModel: s.cpuModel,
    prealloc: s.prealloc, balloon: s.balloon, agent: s.agent,
  };
  if (s.disk !== null) r.disk = s.disk;
  if (s.pin) r.pin = s.pin;
  if (s.cpuWeight !== null) r.cpuWeight = s.cpuWeight;
  if (s.cpuLimit !== null) r.cpuLimit = s.cpuLimit;
  if (s.maxMemory !== null) r.maxMemory = s.maxMemory;
  if (s.memoryLimit !== null) r.memoryLimit = s.memoryLimit;
  if (s.hugepages !== null) r.hugepages = s.hugepages;
  // where its root disk lives and whether the cluster restarts it are not `set`'s to change, nor to lose
  if (s.rootPool === 'shared') r.pool = 'shared';
  if (s.ha === true) r.ha = true;
  if (s.display) r.display = s.display;
  return r;
}

/**
 * The spec after a change, validated as a create is. maxCpus (the hotplug room) stays unless it is changed or
 * the new vCPU count outgrows it; then, or when sockets or threads change, cores follow the count.
 */
export function applySpecChange(stored: InstanceSpec, change: SpecChange, host: HostLimits): InstanceSpec {
  if (change === null || typeof change !== 'object' || Array.isArray(change)) throw new CorralError('INVALID_SPEC', 'the change must be an object', { field: '' });
  const keys = Object.keys(change) as Array<keyof SpecChange>;
  const unknown = keys.filter((k) => !CHANGE_KEYS.includes(k));
  if (unknown.length) throw invalidSpec(unknown[0]!, `cannot be changed with set (changeable: ${CHANGE_KEYS.join(', ')})`);
  if (keys.length === 0) throw new CorralError('INVALID_SPEC', 'nothing to change', { field: '' });
  const req = requestOf(stored) as unknown as Record<string, unknown>;
  if (keys.some((k) => TOPOLOGY.includes(k))) {
    // maxCpus (the hotplug room) stays unless changed or outgrown; cores follow when it goes or the shape changes
    const cpus = typeof change.cpus === 'number' ? change.cpus : stored.cpus;
    const keepMax = !keys.includes('maxCpus') && cpus <= stored.maxCpus;
    if (!keepMax && !keys.includes('maxCpus')) delete req.maxCpus;
    if (!keys.includes('cores') && (!keepMax || keys.includes('sockets') || keys.includes('threads'))) delete req.cores;
  }
  for (const k of keys) {
    const v = change[k];
    if (v === null || v === undefined) delete req[k];
    else req[k] = v;
  }
  const { spec } = validateCreate(req as unknown as CreateRequest, host);
  return { ...spec, disk: stored.disk, disks: stored.disks, nics: stored.nics, hostdevs: stored.hostdevs, rootBus: stored.rootBus };
}

/** The fields whose value differs between two specs (for the event and the CLI's answer). */
export function changedFields(a: InstanceSpec, b: InstanceSpec): string[] {
  return (Object.keys(b) as Array<keyof InstanceSpec>).filter((k) => JSON.stringify(a[k]) !== JSON.stringify(b[k]));
}
