/** From a stored instance to what QEMU needs: the launch plan, the runtime dir and its status file. */
import { ROOT_DISK_ID } from '../core/device-ids.js';
import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import type { InstancePaths } from '../core/paths.js';
import { invalidSpec } from '../core/errors.js';
import { writeJsonAtomic } from '../host/fs-atomic.js';
import { isVhostUser, needsSharedMemory as diskNeedsSharedMemory, volumeIds, type DiskBus } from '../core/disks.js';
import type { Accelerator } from '../core/spec.js';
import { HUGEPAGE_BYTES } from '../core/spec-compute.js';
import type { LaunchPlan } from '../qemu/argv.js';
import type { NicBackend, PlanNic } from '../qemu/argv-nics.js';
import { DEFAULT_NETWORK, hostfwd, needsSharedMemory, tapName, type InstanceNic, type NicModel } from '../core/nics.js';
import { DEFAULT_BLOCK_IO, type BlockIo } from '../qemu/argv-disks.js';
import { storageDaemonPaths } from '../qemu/storage-daemon.js';
import type { ImageRecord } from '../storage/images.js';
import type { InstanceRow } from '../store/store.js';

export const OVMF_CODE = process.env.CORRAL_OVMF_CODE ?? '/usr/share/OVMF/OVMF_CODE_4M.fd';
export const OVMF_VARS = process.env.CORRAL_OVMF_VARS ?? '/usr/share/OVMF/OVMF_VARS_4M.fd';

/** UEFI firmware needs OVMF installed: INVALID_SPEC on firmware otherwise (at create and at set). */
export function assertOvmf(): void {
  if (!existsSync(OVMF_VARS)) throw invalidSpec('firmware', `UEFI needs OVMF (${OVMF_VARS} is missing; install the ovmf package)`);
}


/** An attached volume with what the launch needs from its record. */
export interface ResolvedDisk {
  volume: string;
  bus: DiskBus;
  path: string;
  format: 'qcow2' | 'raw';
}

/** Serial numbers: virtio-blk and IDE keep 20 characters, so the volume name is cut there. */
export const SERIAL_MAX = 20;

/**
 * The launch-plan disk of an attached volume. A vhost-user-blk disk gets the socket of its storage daemon in
 * the runtime dir `runDir`, and no serial (its device has none: the storage daemon answers the guest).
 */
export function volumeDisk(v: ResolvedDisk, runDir: string): LaunchPlan['disks'][number] {
  const { id, node } = volumeIds(v.volume);
  if (isVhostUser(v.bus)) return { id, node, path: v.path, format: v.format, bus: v.bus, socket: storageDaemonPaths(runDir, v.volume).socket };
  return { id, node, path: v.path, format: v.format, bus: v.bus, serial: v.volume.slice(0, SERIAL_MAX) };
}

/** What a launch plan takes from other services: attached volumes, host devices, networks, how files are opened. */
export interface LaunchExtras {
  volumes?: ResolvedDisk[];
  blockIo?: BlockIo;
  /** host PCI devices (passthrough, SR-IOV VFs) bound to vfio-pci for this start */
  hostdevs?: NonNullable<LaunchPlan['hostdevs']>;
  /** the kind of a network by name (default: only the built-in user-mode network is known) */
  networkKind?: NetworkKindOf;
}

export type NetworkKindOf = (network: string) => 'user' | 'bridge' | null;
const defaultOnly: NetworkKindOf = (n) => (n === DEFAULT_NETWORK ? 'user' : null);

const NIC_DEVICE: Record<Exclude<NicModel, 'sriov'>, PlanNic['model']> = {
  'virtio-net': 'virtio-net-pci', 'vhost-net': 'virtio-net-pci', 'vhost-user-net': 'virtio-net-pci', e1000: 'e1000', rtl8139: 'rtl8139',
};

/** The launch-plan NIC of a spec NIC (null for SR-IOV: that one is a host device). */
export function planNicOf(uuid: string, n: InstanceNic, kindOf: NetworkKindOf = defaultOnly): PlanNic | null {
  if (n.model === 'sriov') return null;
  let backend: NicBackend;
  if (n.model === 'vhost-user-net') backend = { type: 'vhost-user', socket: n.socket ?? '', queues: n.queues };
  else if (n.network === null || kindOf(n.network) !== 'bridge') backend = { type: 'user', hostfwd: (n.forwards ?? []).map(hostfwd) };
  else backend = { type: 'tap', ifname: tapName(uuid, n.id), vhost: n.model === 'vhost-net', queues: n.queues };
  const plan: PlanNic = { id: n.id, model: NIC_DEVICE[n.model], mac: n.mac, backend };
  if (n.network !== null) plan.network = n.network;
  return plan;
}

export function launchPlan(row: InstanceRow, image: ImageRecord, accel: Accelerator, p: InstancePaths, extras: LaunchExtras = {}): LaunchPlan {
  const volumes = extras.volumes ?? [];
  const plan: LaunchPlan = {
    uuid: row.uuid,
    name: row.name,
    accel,
    cpus: row.spec.cpus,
    maxCpus: row.spec.maxCpus,
    topology: row.spec.topology,
    cpuModel: row.spec.cpuModel === 'auto' ? (accel === 'kvm' ? 'host' : 'max') : row.spec.cpuModel,
    memory: row.spec.memory,
    // a guest resized up to its maxMemory boots with all of it: no room left for virtio-mem (a region of 0 is refused)
    maxMemory: row.spec.maxMemory !== null && row.spec.maxMemory > row.spec.memory ? row.spec.maxMemory : null,
    // vhost-user back ends read and write guest memory directly: it must be a shared memfd (virtio-mem's too)
    memoryBacking: {
      hugepages: row.spec.hugepages ? HUGEPAGE_BYTES[row.spec.hugepages] : null,
      prealloc: row.spec.prealloc,
      share: needsSharedMemory(row.spec.nics) || diskNeedsSharedMemory(volumes),
    },
    balloon: row.spec.balloon,
    machine: 'pc',
    firmware: row.spec.firmware === 'uefi' ? { kind: 'uefi', code: OVMF_CODE, vars: p.efiVars } : { kind: 'bios' },
    disks: [{ id: ROOT_DISK_ID, path: p.disk, format: 'qcow2', bus: row.spec.rootBus, bootindex: 1 }, ...volumes.map((v) => volumeDisk(v, p.runDir))],
    blockIo: extras.blockIo ?? DEFAULT_BLOCK_IO,
    nics: row.spec.nics.map((n) => planNicOf(row.uuid, n, extras.networkKind)).filter((n): n is PlanNic => n !== null),
    hostdevs: extras.hostdevs ?? [],
    paths: { qmp: p.qmp, console: p.console, consoleLog: p.consoleLog, pidfile: p.pidfile, ...(row.spec.agent ? { agent: p.agent } : {}), ...(row.spec.display === 'vnc' ? { vnc: p.vnc } : {}) },
    sandbox: true,
    ...(row.spec.cloudInit ? { seed: p.seed } : {}),
  };
  if (image.kind === 'kernel' && image.kernel) {
    plan.kernel = { kernel: image.kernel, initrd: image.initrd, cmdline: `${image.cmdline ?? 'console=ttyS0'} corral.hostname=${row.name}` };
  }
  return plan;
}

export interface RuntimeStatus {
  uuid: string;
  name: string;
  pid: number;
  startTicks: number | null;
  qmp: string;
  qemuVersion: string;
  accel: Accelerator;
  startedAt: string;
  operation: string | null;
}

export function prepareRunDir(p: InstancePaths): void {
  rmSync(p.runDir, { recursive: true, force: true });
  mkdirSync(p.runDir, { recursive: true, mode: 0o700 });
}

export function writeStatus(p: InstancePaths, s: RuntimeStatus): void {
  writeJsonAtomic(p.status, s, 0o600);
}

export function readStatus(p: InstancePaths): RuntimeStatus | null {
  try {
    return existsSync(p.status) ? (JSON.parse(readFileSync(p.status, 'utf8')) as RuntimeStatus) : null;
  } catch {
    return null;
  }
}

export function removeRunDir(p: InstancePaths): void {
  rmSync(p.runDir, { recursive: true, force: true });
}
