/**
 * Volumes attached to an instance as disks: the buses, their QEMU ids, and the checks an attach must pass.
 * Pure.
 */
import { createHash } from 'node:crypto';
import { CorralError, invalidSpec } from './errors.js';
import { printable, validateName } from './names.js';

import { DISK_BUSES, type DiskBus, type InstanceDisk } from './spec-schema.js';

export { DISK_BUSES, type DiskBus, type InstanceDisk };

/** The pc machine's built-in IDE controller (PIIX): two buses, master and slave: four devices, CDs included. */
export const IDE_MAX = 4;
/** The ICH9 AHCI controller Corral adds for `sata`: six ports. */
export const SATA_MAX = 6;
/**
 * Buses a running guest can take a new disk on. vhost-user-blk only when the guest's memory is already shared
 * (the instance started with a vhost-user disk): the disk service checks that with QEMU.
 */
export const HOTPLUG_BUSES: readonly DiskBus[] = ['virtio-blk', 'virtio-scsi', 'vhost-user-blk'];
/**
 * Buses on which a running guest learns of a new size of its disk: QMP block_resize in QEMU raises virtio-blk's
 * config change and virtio-scsi's capacity-changed event. IDE and AHCI tell the guest nothing; a vhost-user-blk
 * disk's image is open in its storage daemon, whose block_resize (QEMU 7.2) never reaches the guest (tried: the
 * guest's size stayed the same), so those are resized only while the instance is stopped.
 */
export const LIVE_RESIZE_BUSES: readonly DiskBus[] = ['virtio-blk', 'virtio-scsi'];
/** Buses served by a process outside QEMU over vhost-user: the guest's memory must be shared with it. */
export const VHOST_USER_BUSES: readonly DiskBus[] = ['vhost-user-blk'];

export function isVhostUser(bus: DiskBus): boolean {
  return VHOST_USER_BUSES.includes(bus);
}

/** Does an instance with these disks need its guest memory shared (memfd share=on)? */
export function needsSharedMemory(disks: readonly { bus: DiskBus }[]): boolean {
  return disks.some((d) => isVhostUser(d.bus));
}

/** The root disk's bus: any disk bus but vhost-user ones (the root overlay is opened by QEMU itself). */
export function parseRootBus(bus: unknown, field = 'rootBus'): DiskBus {
  const b = parseBus(bus, field);
  if (isVhostUser(b)) {
    throw invalidSpec(field, `${b} cannot be the root disk's bus: the root disk is the instance's own qcow2 overlay, which QEMU opens itself and no storage daemon serves; use virtio-blk, virtio-scsi, ide or sata, and attach volumes with --bus ${b}`);
  }
  return b;
}

export function parseBus(bus: unknown, field = 'bus'): DiskBus {
  if (bus === undefined || bus === null) return 'virtio-blk';
  if (typeof bus !== 'string' || !(DISK_BUSES as readonly string[]).includes(bus)) {
    throw invalidSpec(field, `"${printable(String(bus))}" is not a disk bus: use ${DISK_BUSES.join(', ')}`);
  }
  return bus as DiskBus;
}

/**
 * QEMU ids of a volume's disk: the device id `vol-<name>` and the block node `vol-<name>-fmt`. Node names are
 * at most 31 characters, so a long volume name's node is named by a hash instead.
 */
export function volumeIds(volume: string): { id: string; node: string } {
  const id = `vol-${volume}`;
  const node = `${id}-fmt`.length <= 31 ? `${id}-fmt` : `vol-h${createHash('sha256').update(volume).digest('hex').slice(0, 16)}-fmt`;
  return { id, node };
}

/**
 * Check attaching `volume` on `bus` to an instance whose disks are `disks`; `attachedTo` is the volume's
 * current instance (or null). Returns the new disk list.
 */
export function planAttach(
  instance: string, disks: readonly InstanceDisk[], volumeIn: unknown, busIn: unknown, attachedTo: string | null, rootBus: DiskBus = 'virtio-blk',
): InstanceDisk[] {
  const volume = validateName('volume', volumeIn);
  const bus = parseBus(busIn);
  if (disks.some((d) => d.volume === volume) || attachedTo === instance) {
    throw new CorralError('ALREADY_EXISTS', `volume "${volume}" is already attached to instance "${instance}"`, { name: volume, instance, field: 'volume' });
  }
  if (attachedTo !== null) {
    throw new CorralError('VOLUME_IN_USE', `volume "${volume}" cannot be attached: it is attached to instance "${attachedTo}"`, { name: volume, instance: attachedTo });
  }
  const onBus = (b: DiskBus): number => disks.filter((d) => d.bus === b).length + (rootBus === b ? 1 : 0);
  if (bus === 'ide' && onBus('ide') >= IDE_MAX) {
    throw invalidSpec('bus', `the IDE controller takes at most ${IDE_MAX} devices (2 buses x master/slave); use virtio-blk or virtio-scsi`);
  }
  if (bus === 'sata' && onBus('sata') >= SATA_MAX) {
    throw invalidSpec('bus', `the AHCI controller has ${SATA_MAX} ports; use virtio-blk or virtio-scsi`);
  }
  return [...disks, { volume, bus }];
}

/** The disk list without `volume`; VOLUME_NOT_ATTACHED-like INVALID_SPEC when it is not there. */
export function planDetach(instance: string, disks: readonly InstanceDisk[], volumeIn: unknown): { disk: InstanceDisk; rest: InstanceDisk[] } {
  const volume = validateName('volume', volumeIn);
  const disk = disks.find((d) => d.volume === volume);
  if (!disk) throw invalidSpec('volume', `volume "${volume}" is not attached to instance "${instance}"`);
  return { disk, rest: disks.filter((d) => d.volume !== volume) };
}
