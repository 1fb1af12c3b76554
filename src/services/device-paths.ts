/**
 * "See the path": each disk and NIC of an instance with its virtualization approach (emulated, paravirtual,
 * vhost-kernel, vhost-user, passthrough, sriov-vf), the QEMU device, and the data path in one line. Pure:
 * derived from the launch plan, the same data the QEMU command line is built from.
 */
import type { LaunchPlan } from '../qemu/argv.js';
import { DEFAULT_BLOCK_IO } from '../qemu/argv-disks.js';

export type Approach = 'emulated' | 'paravirtual' | 'vhost-kernel' | 'vhost-user' | 'passthrough' | 'sriov-vf';

export interface DevicePath {
  kind: 'disk' | 'nic' | 'memory' | 'other';
  id: string;
  approach: Approach;
  qemuDevice: string;
  dataPath: string;
}

const DISK_DEVICES: Record<LaunchPlan['disks'][number]['bus'], { device: string; approach: Approach; guest: string; via: (id: string) => string }> = {
  'virtio-blk': { device: 'virtio-blk-pci', approach: 'paravirtual', guest: 'virtio-blk', via: (id) => `iothread io-${id} in QEMU` },
  'virtio-scsi': { device: 'scsi-hd on virtio-scsi-pci (scsi0)', approach: 'paravirtual', guest: 'virtio-scsi', via: () => 'virtio-scsi controller scsi0 (iothread io-scsi0) in QEMU -> scsi-hd' },
  ide: { device: 'ide-hd', approach: 'emulated', guest: 'ide', via: () => 'QEMU emulated IDE controller (PIIX)' },
  sata: { device: 'ide-hd on ich9-ahci (sata0)', approach: 'emulated', guest: 'sata', via: () => 'QEMU emulated AHCI controller (ICH9) sata0' },
  'vhost-user-blk': { device: 'vhost-user-blk-pci', approach: 'vhost-user', guest: 'virtio-blk (vhost-user)', via: () => 'shared guest memory' },
};

const NIC_DEVICES: Record<LaunchPlan['nics'][number]['model'], { approach: Approach; guest: string }> = {
  'virtio-net-pci': { approach: 'paravirtual', guest: 'virtio-net' },
  e1000: { approach: 'emulated', guest: 'e1000 (emulated Intel 82540EM)' },
};

/**
 * `backends`: the pid of the process serving each vhost-user disk (by device id) while the instance runs;
 * null or absent when none runs.
 */
export function devicePaths(plan: LaunchPlan, backends: Record<string, number | null> = {}): DevicePath[] {
  const out: DevicePath[] = [];
  const io = plan.blockIo ?? DEFAULT_BLOCK_IO;
  const open = `${io.direct ? 'O_DIRECT' : 'page cache'}, ${io.aio === 'native' && !io.direct ? 'threads' : io.aio} AIO`;
  for (const d of plan.disks) {
    const k = DISK_DEVICES[d.bus];
    if (d.bus === 'vhost-user-blk') {
      // No QEMU in the data path: the guest's rings live in shared memory that the storage daemon maps.
      const pid = backends[d.id] ?? null;
      const qsd = pid === null ? 'qemu-storage-daemon (started with the instance)' : `qemu-storage-daemon ${pid}`;
      out.push({
        kind: 'disk', id: d.id, approach: k.approach, qemuDevice: k.device,
        dataPath: `guest ${k.guest} -> ${k.via(d.id)} -> ${qsd} (socket ${d.socket ?? '?'}) -> its block layer (${d.format}; ${open}) -> ${d.path}`,
      });
      continue;
    }
    out.push({
      kind: 'disk', id: d.id, approach: k.approach, qemuDevice: k.device,
      dataPath: `guest ${k.guest} -> ${k.via(d.id)} -> QEMU block layer (${d.format}; ${open}) -> ${d.path}`,
    });
  }
  for (const n of plan.nics) {
    const k = NIC_DEVICES[n.model];
    out.push({
      kind: 'nic', id: n.id, approach: k.approach, qemuDevice: n.model,
      dataPath: `guest ${k.guest} (${n.mac}) -> QEMU userspace user-mode network (slirp NAT) -> host sockets`,
    });
  }
  if (plan.balloon) {
    out.push({ kind: 'memory', id: 'balloon0', approach: 'paravirtual', qemuDevice: 'virtio-balloon-pci', dataPath: 'guest virtio-balloon -> QEMU: pages the guest frees or gives up return to the host (free page reporting, deflate-on-oom)' });
  }
  if (plan.maxMemory !== null) {
    out.push({ kind: 'memory', id: 'vmem0-dev', approach: 'paravirtual', qemuDevice: 'virtio-mem-pci', dataPath: `guest virtio-mem -> QEMU memory backend vmem0 (up to ${Math.floor((plan.maxMemory - plan.memory) / (1024 * 1024))} MiB hotpluggable)${plan.memoryBacking.share ? ', a shared memfd' : ''}` });
  }
  if (plan.memoryBacking.share) {
    out.push({ kind: 'memory', id: 'mem0', approach: 'vhost-user', qemuDevice: 'memory-backend-memfd (share=on)', dataPath: 'guest RAM -> a shared memfd, mapped by QEMU and by each vhost-user backend' });
  }
  out.push({ kind: 'other', id: 'serial0', approach: 'emulated', qemuDevice: 'isa-serial (16550A)', dataPath: 'guest ttyS0 -> QEMU chardev socket -> console.sock (+ console.log)' });
  out.push({ kind: 'other', id: 'rng0', approach: 'paravirtual', qemuDevice: 'virtio-rng-pci', dataPath: 'guest virtio-rng -> QEMU rng backend -> host /dev/urandom' });
  out.push({ kind: 'other', id: 'panic0', approach: 'emulated', qemuDevice: 'pvpanic-pci', dataPath: 'guest kernel panic -> QMP GUEST_PANICKED -> instance crashed' });
  return out;
}
