/**
 * Instances for the launch-plan goldens, made the way the API makes them: validateCreate on a create request,
 * the first NIC planned as the NIC service plans it, then volumes, NICs and host devices attached with the
 * same pure checks their services use. What other services add to a launch (resolved volumes, bound host
 * devices, network kinds) is given as they would give it.
 */
import { validateCreate, type Accelerator, type CreateRequest, type HostLimits } from '../../../src/core/spec.js';
import { planAttach, type DiskBus } from '../../../src/core/disks.js';
import { DEFAULT_NETWORK, macFor, planNic, type InstanceNic, type NicHost, type NicRequest } from '../../../src/core/nics.js';
import { planHostdevAttach } from '../../../src/core/hostdevs.js';
import { GiB } from '../../../src/core/units.js';
import type { InstanceRow } from '../../../src/store/store.js';
import type { ImageRecord } from '../../../src/storage/images.js';
import type { LaunchExtras, NetworkKindOf } from '../../../src/services/runtime.js';

export const DATA_DIR = '/var/lib/corral';
export const UUID = '0b7c9a52-6d3e-4a51-9a53-3f1d2b1e9c01';
const HOST: HostLimits = { cpus: 16, memory: 64 * GiB, cpuList: Array.from({ length: 16 }, (_, i) => i) };

/** Networks the host has: the built-in user-mode one and one bridge. */
const KINDS: Record<string, 'user' | 'bridge'> = { [DEFAULT_NETWORK]: 'user', br0: 'bridge' };
const networkKind: NetworkKindOf = (n) => KINDS[n] ?? null;
const nicHost: NicHost = {
  networkKind: (n) => { const k = KINDS[n]; if (!k) throw new Error(`no network ${n}`); return k; },
  vhostNet: true,
  isSocket: () => true,
  vhostUserBackend: (name) => ({ name, socket: VHU_NET }),
  reserveAddress: () => '10.0.0.10',
};

export const IMAGES: Record<'kernel' | 'disk', ImageRecord> = {
  kernel: {
    name: 'tiny', kind: 'kernel', format: 'qcow2', disk: `${DATA_DIR}/images/tiny/disk.qcow2`, kernel: `${DATA_DIR}/images/tiny/vmlinuz`,
    initrd: `${DATA_DIR}/images/tiny/initrd.img`, cmdline: 'console=ttyS0 quiet panic=-1', virtualSize: 64 * 1024 * 1024, createdAt: 'x', source: 'tiny',
  },
  disk: { name: 'debian', kind: 'disk', format: 'qcow2', disk: `${DATA_DIR}/images/debian/disk.qcow2`, virtualSize: 2 * GiB, createdAt: 'x', source: 'import' },
};

export interface Case {
  /** the create request, less name and image */
  create?: Omit<CreateRequest, 'name' | 'image'>;
  image?: 'kernel' | 'disk';
  accel?: Accelerator;
  /** NICs attached after create (`corral nic attach`) */
  nics?: NicRequest[];
  /** volumes attached (`corral disk attach`); raw: a raw volume */
  volumes?: Array<{ volume: string; bus: DiskBus; raw?: boolean }>;
  /** host PCI devices given whole (`corral hostdev attach`) */
  hostdevs?: string[];
  /** the launch does not know the network kinds (no NIC service): every network reads as user-mode */
  noNetworkKinds?: boolean;
  /** a change made after create, as a resize would */
  change?: (row: InstanceRow) => void;
}

/** The stored row and the launch extras of a case. */
export function build(name: string, c: Case): { row: InstanceRow; image: ImageRecord; accel: Accelerator; extras: LaunchExtras } {
  const image = IMAGES[c.image ?? 'kernel'];
  const req: CreateRequest = { name, image: image.name, ...c.create };
  const { spec } = validateCreate(req, HOST);
  const taken = new Set<string>();
  const addNic = (nics: InstanceNic[], r: NicRequest): InstanceNic[] => {
    const nic = planNic(UUID, nics, r, nicHost, taken);
    taken.add(nic.mac);
    return [...nics, nic];
  };
  // the first NIC, as the NIC service plans it at create
  let nics: InstanceNic[] = [];
  if (req.network !== 'none') {
    const first: NicRequest = { network: req.network === undefined || req.network === 'user' ? DEFAULT_NETWORK : req.network, model: req.nicModel };
    if (req.forwards !== undefined) first.forwards = req.forwards;
    nics = addNic(nics, first);
  }
  for (const r of c.nics ?? []) nics = addNic(nics, r);
  spec.nics = nics;
  for (const v of c.volumes ?? []) spec.disks = planAttach(name, spec.disks, v.volume, v.bus, null, spec.rootBus);
  for (const a of c.hostdevs ?? []) spec.hostdevs = planHostdevAttach(name, spec.hostdevs, a);
  const row: InstanceRow = {
    uuid: UUID, name, spec, state: 'stopped', accel: null, pid: null, pidStart: null, mac: spec.nics[0]?.mac ?? macFor(UUID),
    createdAt: 'x', startedAt: null, lastError: null, updatedAt: 'x',
  };
  c.change?.(row);
  const extras: LaunchExtras = {
    volumes: (c.volumes ?? []).map((v) => ({ volume: v.volume, bus: v.bus, path: `${DATA_DIR}/volumes/${v.volume}/disk.${v.raw ? 'raw' : 'qcow2'}`, format: v.raw ? 'raw' : 'qcow2' })),
    hostdevs: boundHostdevs(row),
  };
  if (!c.noNetworkKinds) extras.networkKind = networkKind;
  return { row, image, accel: c.accel ?? 'tcg', extras };
}

/** What the passthrough service gives a launch once it has bound the devices: whole devices, then one VF per SR-IOV NIC. */
function boundHostdevs(row: InstanceRow): NonNullable<LaunchExtras['hostdevs']> {
  const out: NonNullable<LaunchExtras['hostdevs']> = row.spec.hostdevs.map((h) => ({ id: h.id, address: h.address, kind: 'passthrough' as const }));
  let vf = 0;
  for (const n of row.spec.nics) {
    if (n.model === 'sriov' && n.sriov) out.push({ id: n.id, address: `0000:3b:02.${vf++}`, kind: 'sriov-vf', mac: n.mac, pf: n.sriov.pf });
  }
  return out;
}

const VHU_NET = '/run/openvswitch/vhu0.sock';

/** Every root and volume bus, NIC model, memory backend, firmware, boot kind and accelerator, and passthrough. */
export const CASES: Record<string, Case> = {
  // the default instance: tiny kernel image, virtio-blk root, one virtio-net NIC on user-mode NAT, balloon, BIOS, TCG
  'default-tcg': {},
  'default-kvm': { accel: 'kvm' },
  'root-virtio-scsi': { create: { rootBus: 'virtio-scsi' } },
  'root-ide': { create: { rootBus: 'ide' } },
  'root-sata': { create: { rootBus: 'sata', cpus: 2 } },
  'volumes-every-bus': {
    create: { cpus: 2 },
    volumes: [{ volume: 'data-blk', bus: 'virtio-blk' }, { volume: 'data-scsi', bus: 'virtio-scsi', raw: true }, { volume: 'data-ide', bus: 'ide' }, { volume: 'data-sata', bus: 'sata' }],
  },
  // one controller per kind shared by the root and the volumes: IDE units fill both buses, SCSI and AHCI take the next slots
  'controllers-shared': {
    create: { rootBus: 'ide' },
    volumes: [
      { volume: 'i1', bus: 'ide' }, { volume: 's1', bus: 'virtio-scsi' }, { volume: 'i2', bus: 'ide' }, { volume: 'a1', bus: 'sata' },
      { volume: 's2', bus: 'virtio-scsi' }, { volume: 'i3', bus: 'ide' }, { volume: 'a2', bus: 'sata' },
    ],
  },
  'volume-vhost-user-blk': { create: { cpus: 2 }, volumes: [{ volume: 'fast1', bus: 'vhost-user-blk', raw: true }] },
  'volume-vhost-user-blk-virtio-mem': { create: { maxMemory: '1GiB' }, volumes: [{ volume: 'fast1', bus: 'vhost-user-blk' }] },
  'volume-long-name': { volumes: [{ volume: 'a-volume-whose-name-is-long-enough', bus: 'virtio-blk' }] },
  'nic-user-forwards': { create: { forwards: ['tcp:2222:22', 'udp:127.0.0.1:5353:53'] } },
  'nic-none': { create: { network: 'none' } },
  'nic-virtio-net-bridge': { create: { network: 'br0', cpus: 4 }, nics: [{ network: 'br0', queues: 4 }] },
  'nic-vhost-net': { accel: 'kvm', create: { network: 'br0', nicModel: 'vhost-net' }, nics: [{ network: 'br0', model: 'vhost-net', queues: 2 }] },
  'nic-vhost-user-net': { create: { cpus: 2 }, nics: [{ model: 'vhost-user-net', backend: 'ovs0', queues: 2 }] },
  'nic-e1000-rtl8139': { create: { nicModel: 'e1000' }, nics: [{ network: 'br0', model: 'rtl8139' }] },
  'nic-sriov': { accel: 'kvm', nics: [{ model: 'sriov', pf: '0000:3b:00.0', vlan: 100 }, { model: 'sriov', pf: '0000:3b:00.0' }] },
  'nic-bridge-kinds-unknown': { create: { network: 'br0' }, noNetworkKinds: true },
  'mem-hugepages-2m': { create: { memory: '512MiB', hugepages: '2M' } },
  'mem-hugepages-1g-prealloc': { accel: 'kvm', create: { memory: '2GiB', hugepages: '1G', prealloc: true } },
  'mem-prealloc': { create: { prealloc: true } },
  'mem-virtio-mem': { create: { maxMemory: '1GiB' } },
  'mem-virtio-mem-hugepages-prealloc': { accel: 'kvm', create: { memory: '1GiB', maxMemory: '4GiB', hugepages: '1G', prealloc: true } },
  'mem-vhost-user-hugepages': { create: { memory: '512MiB', hugepages: '2M' }, nics: [{ model: 'vhost-user-net', backend: 'ovs0' }] },
  // resized up to maxMemory while running: the next start boots with all of it and no virtio-mem device
  'mem-resized-to-max': { create: { maxMemory: '1GiB' }, change: (r) => { r.spec.memory = r.spec.maxMemory!; } },
  'mem-balloon-off': { create: { balloon: false } },
  // created with --no-agent: no virtio-serial channel for a guest agent
  'agent-off': { create: { agent: false } },
  // created with --display vnc: a VGA device and QEMU's VNC server on vnc.sock, after the agent's channel
  'display-vnc': { create: { display: 'vnc' } },
  'display-vnc-uefi-no-agent': { image: 'disk', create: { display: 'vnc', firmware: 'uefi', agent: false } },
  // --display none is the default: nothing changes (the same argv as default-tcg)
  'display-none': { create: { display: 'none' } },
  'disk-image-bios': { image: 'disk', create: { disk: '8GiB' } },
  'disk-image-uefi-kvm': { image: 'disk', accel: 'kvm', create: { firmware: 'uefi', cpus: 4, memory: '2GiB' } },
  'kernel-image-uefi': { create: { firmware: 'uefi' } },
  'cpu-topology-hotplug': { create: { cpus: 2, maxCpus: 8, sockets: 2, threads: 2 } },
  'cpu-named-model-kvm': { accel: 'kvm', create: { cpus: 2, cpuModel: 'Skylake-Server' } },
  'hostdevs-passthrough': { accel: 'kvm', create: { memory: '1GiB' }, hostdevs: ['0000:03:00.0', '0000:04:00.1'] },
};
