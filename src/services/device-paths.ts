/**
 * "See the path": each disk and NIC of an instance with its virtualization approach (emulated, paravirtual,
 * vhost-kernel, vhost-user, passthrough, sriov-vf), the QEMU device, and the data path in one line. Pure:
 * derived from the launch plan, the same data the QEMU command line is built from.
 */
import { AGENT_PORT_ID, AGENT_PORT_NAME, BALLOON_ID, DISPLAY_DEVICE_ID, RAM_BACKEND_ID } from '../core/device-ids.js';
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

const NIC_GUEST: Record<LaunchPlan['nics'][number]['model'], { emulated: boolean; guest: string }> = {
  'virtio-net-pci': { emulated: false, guest: 'virtio-net' },
  e1000: { emulated: true, guest: 'e1000 (emulated Intel 82540EM)' },
  rtl8139: { emulated: true, guest: 'rtl8139 (emulated Realtek RTL8139)' },
};

/** A NIC's approach and data path: by its device and its back end. */
export function nicPath(n: LaunchPlan['nics'][number]): { approach: Approach; dataPath: string } {
  const g = NIC_GUEST[n.model];
  const guest = `guest ${g.guest} (${n.mac})`;
  const b = n.backend;
  const queues = b.type === 'user' ? 1 : b.queues;
  const q = queues > 1 ? ` x ${queues} queue pairs` : '';
  const device = g.emulated ? 'QEMU device emulation' : `QEMU userspace virtio-net${q}`;
  if (b.type === 'vhost-user') return { approach: 'vhost-user', dataPath: `${guest} -> shared guest memory${q} -> vhost-user back end on ${b.socket} (no QEMU in the data path)` };
  if (b.type === 'tap' && b.vhost) return { approach: 'vhost-kernel', dataPath: `${guest} -> vhost-net kernel worker${q} (no QEMU in the data path) -> tap ${b.ifname} -> bridge of network "${n.network ?? '?'}"` };
  const approach: Approach = g.emulated ? 'emulated' : 'paravirtual';
  if (b.type === 'tap') return { approach, dataPath: `${guest} -> ${device} -> tap ${b.ifname} -> bridge of network "${n.network ?? '?'}"` };
  const fwd = b.hostfwd.length > 0 ? ` (forwards ${b.hostfwd.join(', ')})` : '';
  return { approach, dataPath: `${guest} -> ${device} -> QEMU user-mode network (slirp NAT${fwd}) -> host sockets` };
}

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
  for (const n of plan.nics) out.push({ kind: 'nic', id: n.id, qemuDevice: n.model, ...nicPath(n) });
  for (const h of plan.hostdevs ?? []) {
    const dataPath = h.kind === 'sriov-vf'
      ? `guest VF driver${h.mac ? ` (${h.mac})` : ''} -> SR-IOV virtual function ${h.address} of ${h.pf ?? 'its PF'} -> the NIC's own switch (IOMMU-mapped DMA; no QEMU, no host kernel in the data path)`
      : `guest driver -> host device ${h.address} (vfio-pci, IOMMU-mapped DMA; no QEMU in the data path)`;
    out.push({ kind: h.kind === 'sriov-vf' ? 'nic' : 'other', id: h.id, approach: h.kind, qemuDevice: 'vfio-pci', dataPath });
  }
  if (plan.balloon) {
    out.push({ kind: 'memory', id: BALLOON_ID, approach: 'paravirtual', qemuDevice: 'virtio-balloon-pci', dataPath: 'guest virtio-balloon -> QEMU: pages the guest frees or gives up return to the host (free page reporting, deflate-on-oom)' });
  }
  if (plan.maxMemory !== null) {
    out.push({ kind: 'memory', id: 'vmem0-dev', approach: 'paravirtual', qemuDevice: 'virtio-mem-pci', dataPath: `guest virtio-mem -> QEMU memory backend vmem0 (up to ${Math.floor((plan.maxMemory - plan.memory) / (1024 * 1024))} MiB hotpluggable)${plan.memoryBacking.share ? ', a shared memfd' : ''}` });
  }
  if (plan.memoryBacking.share) {
    out.push({ kind: 'memory', id: RAM_BACKEND_ID, approach: 'vhost-user', qemuDevice: 'memory-backend-memfd (share=on)', dataPath: 'guest RAM -> a shared memfd, mapped by QEMU and by each vhost-user backend' });
  }
  out.push({ kind: 'other', id: 'serial0', approach: 'emulated', qemuDevice: 'isa-serial (16550A)', dataPath: 'guest ttyS0 -> QEMU chardev socket -> console.sock (+ console.log)' });
  out.push({ kind: 'other', id: 'rng0', approach: 'paravirtual', qemuDevice: 'virtio-rng-pci', dataPath: 'guest virtio-rng -> QEMU rng backend -> host /dev/urandom' });
  if (plan.paths.agent !== undefined) {
    out.push({ kind: 'other', id: AGENT_PORT_ID, approach: 'paravirtual', qemuDevice: 'virtserialport on virtio-serial-pci', dataPath: `guest qemu-guest-agent (${AGENT_PORT_NAME}) -> QEMU chardev socket -> qga.sock -> the daemon's agent client` });
  }
  if (plan.paths.vnc !== undefined) {
    out.push({ kind: 'other', id: DISPLAY_DEVICE_ID, approach: 'emulated', qemuDevice: 'VGA (std)', dataPath: 'guest VGA framebuffer -> QEMU VNC server -> vnc.sock -> the API\'s websocket (/v1/instances/NAME/vnc) -> noVNC in the web console' });
  }
  out.push({ kind: 'other', id: 'panic0', approach: 'emulated', qemuDevice: 'pvpanic-pci', dataPath: 'guest kernel panic -> QMP GUEST_PANICKED -> instance crashed' });
  return out;
}
