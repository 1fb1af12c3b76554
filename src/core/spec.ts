/**
 * Instance specifications: the shape a user asks for, and its validation. Pure: host facts come in as
 * arguments, nothing is read here.
 */
import { FIRST_NIC_ID } from './device-ids.js';
import { CorralError, invalidSpec } from './errors.js';
import { MiB, formatSizeExact, parseSize } from './units.js';
import { printable, validateName } from './names.js';
import { computeDefaults, validateCompute } from './spec-compute.js';
import { parseRootBus } from './disks.js';
import { DEFAULT_NETWORK } from './nics.js';
import { validateCloudInit } from './cloud-init.js';
import type { InstanceNic, InstanceSpec } from './spec-schema.js';
import type { CreateRequest } from './request-schema.js';

/** Kept here too for the modules that import them from the spec. */
export { printable, validateName };

export const MIN_MEMORY = 64 * MiB;
export const DEFAULT_MEMORY = 256 * MiB;
export const MAX_VCPUS = 255;

export type Accelerator = 'kvm' | 'tcg';
export type Firmware = 'bios' | 'uefi';

/** What a create request carries, before validation (from JSON or the CLI): the API's body schema's type. */
export type { CreateRequest };
/** A validated specification, as stored (sizes are bytes): the type of the spec schema the store checks records against. */
export type { InstanceSpec };

export interface HostLimits {
  cpus: number;
  memory: number;
  /** online host CPU numbers */
  cpuList: number[];
}

export function validateCreate(req: CreateRequest, host: HostLimits): { name: string; spec: InstanceSpec } {
  if (req === null || typeof req !== 'object') throw new CorralError('INVALID_SPEC', 'request body must be an object', { field: '' });
  const name = validateName('name', req.name);
  const image = validateName('image', req.image);
  const cpus = validateCpus(req.cpus ?? 1, host);
  const memory = validateMemory(req.memory ?? DEFAULT_MEMORY, host);
  const disk = req.disk === undefined || req.disk === null ? null : parseSize('disk', req.disk);
  if (disk !== null && disk < MIN_MEMORY) throw invalidSpec('disk', `must be at least 64 MiB, got ${formatSizeExact(disk)}`);
  const firmware = req.firmware ?? 'bios';
  if (firmware !== 'bios' && firmware !== 'uefi') throw invalidSpec('firmware', `must be "bios" or "uefi"`);
  const accel = req.accel ?? 'auto';
  if (accel !== 'auto' && accel !== 'kvm' && accel !== 'tcg') throw invalidSpec('accel', `must be "auto", "kvm" or "tcg"`);
  const rootBus = parseRootBus(req.rootBus, 'rootBus');
  const compute = validateCompute(req, cpus, memory, host, MAX_VCPUS);
  const pool = req.pool ?? 'local';
  if (pool !== 'local' && pool !== 'shared') throw invalidSpec('pool', `the root disk's pool is "local" or "shared", not "${printable(String(pool))}"`);
  if (req.ha === true && pool !== 'shared') throw invalidSpec('ha', 'a highly available instance needs its root disk on the shared pool (pool: shared), so that another host can start it');
  if (req.adopt === true && pool !== 'shared') throw invalidSpec('adopt', 'only a root disk on the shared pool can be taken over');
  const agent = req.agent ?? true;
  if (typeof agent !== 'boolean') throw invalidSpec('agent', 'must be true or false');
  const display = req.display ?? 'none';
  if (display !== 'vnc' && display !== 'none') throw invalidSpec('display', `must be "vnc" or "none", not "${printable(String(display))}"`);
  const shared = pool === 'shared' ? { rootPool: 'shared' as const, ...(req.ha === true ? { ha: true } : {}) } : {};
  const cloudInit = validateCloudInit(name, req);
  return { name, spec: { image, cpus, memory, disk, firmware, accel, ...compute, disks: [], rootBus, nics: [], hostdevs: [], ...shared, ...(cloudInit ? { cloudInit } : {}), agent, ...(display === 'vnc' ? { display } : {}) } };
}

/**
 * A stored spec, with defaults for fields added since it was written (`mac`: the instance's first MAC). A spec from
 * before the guest agent's channel existed gets it (agent: true) at its next start: the device is a virtio-serial
 * port that a guest without an agent ignores, placed after every other PCI device so that none of theirs moves.
 */
export function normalizeSpec(stored: Partial<InstanceSpec> & Pick<InstanceSpec, 'image' | 'cpus' | 'memory'> & { network?: string }, mac = ''): InstanceSpec {
  const { network, ...rest } = stored;
  // Before NICs were a list, `network` was "user" (one virtio-net NIC on user-mode NAT) or "none".
  const nics: InstanceNic[] = network === 'none' ? [] : [{ id: FIRST_NIC_ID, model: 'virtio-net', network: DEFAULT_NETWORK, mac, queues: 1 }];
  return { disk: null, firmware: 'bios', accel: 'auto', ...computeDefaults(stored.cpus), disks: [], rootBus: 'virtio-blk', nics, hostdevs: [], agent: true, ...rest };
}

export function validateCpus(cpus: unknown, host: HostLimits): number {
  if (typeof cpus !== 'number' || !Number.isInteger(cpus)) throw invalidSpec('cpus', `must be a whole number, got ${JSON.stringify(cpus)}`);
  if (cpus < 1) throw invalidSpec('cpus', `must be at least 1, got ${cpus}`);
  if (cpus > MAX_VCPUS) throw invalidSpec('cpus', `at most ${MAX_VCPUS} vCPUs, got ${cpus}`);
  if (cpus > host.cpus) throw invalidSpec('cpus', `${cpus} vCPUs is more than the host's ${host.cpus} CPUs`);
  return cpus;
}

export function validateMemory(memory: unknown, host: HostLimits): number {
  const bytes = parseSize('memory', memory);
  if (bytes < MIN_MEMORY) throw invalidSpec('memory', `must be at least 64 MiB, got ${formatSizeExact(bytes)}`);
  if (bytes % MiB !== 0) throw invalidSpec('memory', 'must be a whole number of MiB');
  if (bytes > host.memory) throw invalidSpec('memory', `${bytes / MiB} MiB is more than the host's ${Math.floor(host.memory / MiB)} MiB`);
  return bytes;
}
