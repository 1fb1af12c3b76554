/**
 * The ids Corral gives QEMU's devices, objects and back ends, defined once: the command line (src/qemu/argv*),
 * hotplug and QOM paths (src/services) and the device listing all take them from here.
 */

/** The root disk's device id. */
export const ROOT_DISK_ID = 'disk0';
/** cloud-init's NoCloud seed disk (read-only virtio-blk). */
export const SEED_DISK_ID = 'seed0';
/** The first NIC's id (more NICs are net1, net2 ...). */
export const FIRST_NIC_ID = 'net0';
/** The memory backend of the boot RAM. */
export const RAM_BACKEND_ID = 'mem0';
/** The memory backend of virtio-mem's hotpluggable region, and its device. */
export const HOTPLUG_RAM_BACKEND_ID = 'vmem0';
export const HOTPLUG_RAM_DEVICE_ID = 'vmem0-dev';
/** The virtio-balloon device. */
export const BALLOON_ID = 'balloon0';
/** The one virtio-scsi HBA and the one AHCI controller disks on those buses hang off. */
export const SCSI_CONTROLLER_ID = 'scsi0';

/** The guest agent's channel: its socket chardev, the virtio-serial controller and the port the guest's agent opens. */
export const AGENT_CHARDEV_ID = 'qga0';
export const AGENT_SERIAL_ID = 'vserial0';
export const AGENT_PORT_ID = 'qga0-port';
/** The name qemu-guest-agent looks for (/dev/virtio-ports/NAME under udev; /sys/class/virtio-ports/vportNpM/name). */
export const AGENT_PORT_NAME = 'org.qemu.guest_agent.0';
/** The display's VGA device (instances with display vnc). */
export const DISPLAY_DEVICE_ID = 'video0';

/** The QOM path of a device Corral added (-device id=... / device_add). */
export function peripheralPath(id: string): string {
  return `/machine/peripheral/${id}`;
}

/** The QOM path of an object Corral added (-object id=... / object-add). */
export function objectPath(id: string): string {
  return `/objects/${id}`;
}

/** A disk's block node: given, else `<id>-fmt`. */
export function blockNodeId(d: { id: string; node?: string }): string {
  return d.node ?? `${d.id}-fmt`;
}

/** The iothread a disk (or the SCSI controller) runs its I/O in. */
export function iothreadId(d: { id: string }): string {
  return `io-${d.id}`;
}

/** The socket chardev of a vhost-user disk or NIC. */
export function chardevIdOf(d: { id: string }): string {
  return `${d.id}-chr`;
}

/** A NIC's network back end (-netdev / netdev_add). */
export function netdevIdOf(n: { id: string }): string {
  return `${n.id}-net`;
}
