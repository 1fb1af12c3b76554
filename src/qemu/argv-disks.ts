/**
 * Disks on the QEMU command line and in QMP hotplug: the block node (-blockdev / blockdev-add), the iothread
 * a virtio disk runs in, the controller a bus needs, and the guest-visible device (-device / device_add).
 * Pure. Both the launch (argv.ts) and hotplug (services/disks.ts) build from these, so a hot-plugged disk is
 * the same device a cold one would be.
 *
 * A vhost-user-blk disk has no block node in QEMU: a qemu-storage-daemon opens the image (with the same
 * diskBlockdev()) and QEMU only gets a socket chardev to it and the vhost-user-blk-pci device.
 */
import { SCSI_CONTROLLER_ID, blockNodeId, chardevIdOf, iothreadId } from '../core/device-ids.js';
import { isVhostUser, type DiskBus } from '../core/disks.js';
import { CorralError } from '../core/errors.js';
import { assertSafeOptionPath } from './option-path.js';

/** How QEMU opens image files: O_DIRECT (cache=none) when the filesystem allows it, and the AIO engine. */
export interface BlockIo {
  direct: boolean;
  aio: 'io_uring' | 'native' | 'threads';
}

/** Safe everywhere: page cache, thread-pool AIO (what QEMU does by default). */
export const DEFAULT_BLOCK_IO: BlockIo = { direct: false, aio: 'threads' };

export interface PlanDisk {
  id: string;
  path: string;
  format: 'qcow2' | 'raw';
  bus: DiskBus;
  readonly?: boolean;
  bootindex?: number;
  /** block node name, default `<id>-fmt` */
  node?: string;
  /** what the guest sees as the serial number (not for vhost-user-blk: its backend answers the guest's GET_ID) */
  serial?: string;
  /** vhost-user-blk: the unix socket of the qemu-storage-daemon serving the image */
  socket?: string;
}

/** The controllers some buses hang off: one virtio-scsi HBA, one AHCI (ICH9) controller. */
export const SCSI_CONTROLLER = SCSI_CONTROLLER_ID;
export const SATA_CONTROLLER = 'sata0';
/** The ICH9 AHCI controller's ports. */
export const SATA_PORTS = 6;

export function nodeOf(d: PlanDisk): string {
  return blockNodeId(d);
}

/** The iothread a virtio-blk disk runs its I/O in (one per disk). */
export function iothreadOf(d: Pick<PlanDisk, 'id'>): string {
  return iothreadId(d);
}

/** The socket chardev a vhost-user disk's device talks to its backend over. */
export function chardevOf(d: Pick<PlanDisk, 'id'>): string {
  return chardevIdOf(d);
}

function socketOf(d: PlanDisk): string {
  if (!d.socket) throw new CorralError('INTERNAL', `disk ${d.id} on ${d.bus} has no vhost-user socket in the launch plan (every vhost-user disk's plan names its storage daemon's socket)`, { disk: d.id });
  return assertSafeOptionPath(d.socket);
}

/** -chardev (legacy syntax: QEMU 7.2 takes no JSON there; the path is daemon-made and checked). */
export function vhostUserChardevArg(d: PlanDisk): string {
  return `socket,id=${chardevOf(d)},path=${socketOf(d)}`;
}

/** chardev-add arguments for hotplug: a unix socket client to the storage daemon. */
export function vhostUserChardevAdd(d: PlanDisk): Record<string, unknown> {
  return { id: chardevOf(d), backend: { type: 'socket', data: { addr: { type: 'unix', data: { path: socketOf(d) } }, server: false } } };
}

/** -blockdev / blockdev-add arguments: the format node over a file node opened as `io` says. */
export function diskBlockdev(d: PlanDisk, io: BlockIo): Record<string, unknown> {
  const ro = d.readonly ?? false;
  const cache = { direct: io.direct, 'no-flush': false };
  // native AIO only works with O_DIRECT; io_uring and threads work either way.
  const aio = io.aio === 'native' && !io.direct ? 'threads' : io.aio;
  const file = { driver: 'file', filename: d.path, 'read-only': ro, locking: 'on', aio, cache };
  return { driver: d.format, 'node-name': nodeOf(d), 'read-only': ro, cache, file };
}

/** Controller devices (-device / device_add) a bus needs before its first disk. */
export function controllerFor(bus: DiskBus): Array<Record<string, unknown>> {
  if (bus === 'virtio-scsi') return [{ driver: 'virtio-scsi-pci', id: SCSI_CONTROLLER, iothread: iothreadOf({ id: SCSI_CONTROLLER }) }];
  if (bus === 'sata') return [{ driver: 'ich9-ahci', id: SATA_CONTROLLER }];
  return [];
}

/** -object / object-add of the iothreads a disk (or its controller) needs. */
export function iothreadsFor(d: PlanDisk, controllerPresent: boolean): Array<Record<string, unknown>> {
  if (d.bus === 'virtio-blk') return [{ 'qom-type': 'iothread', id: iothreadOf(d) }];
  // vhost-user-blk: the I/O runs in the storage daemon, not in a QEMU thread
  if (d.bus === 'virtio-scsi' && !controllerPresent) return [{ 'qom-type': 'iothread', id: iothreadId({ id: SCSI_CONTROLLER }) }];
  return [];
}

/**
 * The guest-visible device of a disk. `slot` is its place on a bus with fixed positions: IDE 0..3 (two buses,
 * master/slave), SATA port 0..5. `queues`: virtio-blk request queues (one per vCPU).
 */
export function diskDevice(d: PlanDisk, slot = 0, queues = 1): Record<string, unknown> {
  const node = nodeOf(d);
  let dev: Record<string, unknown>;
  if (d.bus === 'virtio-scsi') dev = { driver: 'scsi-hd', drive: node, bus: `${SCSI_CONTROLLER}.0`, id: d.id };
  else if (d.bus === 'ide') dev = { driver: 'ide-hd', drive: node, bus: `ide.${Math.floor(slot / 2)}`, unit: slot % 2, id: d.id };
  else if (d.bus === 'sata') dev = { driver: 'ide-hd', drive: node, bus: `${SATA_CONTROLLER}.${slot}`, id: d.id };
  else if (d.bus === 'vhost-user-blk') {
    // no serial property: the guest's GET_ID request goes to the storage daemon
    dev = { driver: 'vhost-user-blk-pci', chardev: chardevOf(d), id: d.id, 'num-queues': Math.max(1, queues) };
    if (d.bootindex !== undefined) dev.bootindex = d.bootindex;
    return dev;
  } else dev = { driver: 'virtio-blk-pci', drive: node, id: d.id, iothread: iothreadOf(d), 'num-queues': Math.max(1, queues) };
  if (d.serial !== undefined) dev.serial = d.serial;
  if (d.bootindex !== undefined) dev.bootindex = d.bootindex;
  return dev;
}

/** The slots of disks on buses with fixed positions, in plan order (IDE and SATA counted separately). */
export function diskSlots(disks: readonly PlanDisk[]): number[] {
  const next: Partial<Record<DiskBus, number>> = {};
  return disks.map((d) => {
    const n = next[d.bus] ?? 0;
    next[d.bus] = n + 1;
    return n;
  });
}

/** Every -object/-device/-blockdev argument pair for the disks, controllers first where a bus needs one. */
export function disksArgv(disks: readonly PlanDisk[], io: BlockIo, queues: number): string[] {
  const a: string[] = [];
  const controllers = new Set<string>();
  const slots = diskSlots(disks);
  disks.forEach((d, i) => {
    if (isVhostUser(d.bus)) {
      a.push('-chardev', vhostUserChardevArg(d));
      a.push('-device', JSON.stringify(diskDevice(d, slots[i], queues)));
      return;
    }
    for (const o of iothreadsFor(d, controllers.has(d.bus))) a.push('-object', JSON.stringify(o));
    a.push('-blockdev', JSON.stringify(diskBlockdev(d, io)));
    if (!controllers.has(d.bus)) {
      for (const c of controllerFor(d.bus)) a.push('-device', JSON.stringify(c));
      controllers.add(d.bus);
    }
    a.push('-device', JSON.stringify(diskDevice(d, slots[i], queues)));
  });
  return a;
}
