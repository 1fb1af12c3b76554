/**
 * NICs on the QEMU command line and in QMP hotplug: the back end (-netdev / netdev_add, plus -chardev /
 * chardev-add for vhost-user) and the guest-visible device (-device / device_add). Pure; the launch
 * (argv.ts) and hotplug (services/nics.ts) build from the same functions.
 */

/** Where a NIC's packets go on the host. */
import { chardevIdOf, netdevIdOf } from '../core/device-ids.js';
export type NicBackend =
  | { type: 'user'; hostfwd: string[] }
  /** a tap device Corral made and put on a bridge; vhost: the vhost-net kernel worker moves the packets */
  | { type: 'tap'; ifname: string; vhost: boolean; queues: number }
  /** a vhost-user back end (DPDK, OVS) on a unix socket; the guest memory is shared with it */
  | { type: 'vhost-user'; socket: string; queues: number };

export interface PlanNic {
  id: string;
  /** the QEMU device */
  model: 'virtio-net-pci' | 'e1000' | 'rtl8139';
  mac: string;
  backend: NicBackend;
  /** the Corral network it is on (shown in device paths; QEMU does not need it) */
  network?: string;
}

export function netdevId(n: Pick<PlanNic, 'id'>): string {
  return netdevIdOf(n);
}

export function chardevId(n: Pick<PlanNic, 'id'>): string {
  return chardevIdOf(n);
}

/** -netdev / netdev_add arguments. */
export function netdevArgs(n: PlanNic): Record<string, unknown> {
  const b = n.backend;
  if (b.type === 'user') return b.hostfwd.length > 0 ? { type: 'user', id: netdevId(n), hostfwd: b.hostfwd.map((str) => ({ str })) } : { type: 'user', id: netdevId(n) };
  if (b.type === 'tap') {
    const o: Record<string, unknown> = { type: 'tap', id: netdevId(n), ifname: b.ifname, script: 'no', downscript: 'no', vhost: b.vhost };
    if (b.queues > 1) o.queues = b.queues;
    return o;
  }
  const o: Record<string, unknown> = { type: 'vhost-user', id: netdevId(n), chardev: chardevId(n) };
  if (b.queues > 1) o.queues = b.queues;
  return o;
}

/** The chardev a vhost-user NIC needs, as QMP chardev-add arguments (the command line takes the same, flattened). */
export function chardevAdd(n: PlanNic): Record<string, unknown> | null {
  if (n.backend.type !== 'vhost-user') return null;
  return { id: chardevId(n), backend: { type: 'socket', data: { addr: { type: 'unix', data: { path: n.backend.socket } }, server: false } } };
}

/** -device / device_add arguments. */
export function nicDevice(n: PlanNic): Record<string, unknown> {
  const dev: Record<string, unknown> = { driver: n.model, netdev: netdevId(n), id: n.id, mac: n.mac };
  const queues = n.backend.type === 'user' ? 1 : n.backend.queues;
  if (n.model === 'virtio-net-pci' && queues > 1) Object.assign(dev, { mq: true, vectors: 2 * queues + 2 });
  return dev;
}
