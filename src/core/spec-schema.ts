/**
 * The stored instance spec as a TypeBox schema: the one definition of its shape. The TypeScript types of the spec
 * (InstanceSpec, ComputeSpec, InstanceDisk, InstanceNic, InstanceHostdev) are its Static types, the store checks a
 * spec read back against it, and the API shows it as the instance's `spec`. Imports nothing from Corral, so every
 * module of src/core, src/store and src/api can use it without an import circle.
 */
import { Type, type Static, type TLiteral, type TSchema, type TUnion } from '@sinclair/typebox';

const nullable = <T extends TSchema>(t: T, description?: string) => Type.Union([t, Type.Null()], description ? { description } : {});
type Literals<T extends readonly string[]> = { -readonly [K in keyof T]: T[K] extends string ? TLiteral<T[K]> : never };
/** A union of the literals of a list of names, typed as such (the API uses it too). */
export const literals = <T extends readonly string[]>(values: T): TUnion<Literals<T>> => Type.Union(values.map((v) => Type.Literal(v))) as unknown as TUnion<Literals<T>>;

export const DISK_BUSES = ['virtio-blk', 'virtio-scsi', 'ide', 'sata', 'vhost-user-blk'] as const;
export type DiskBus = (typeof DISK_BUSES)[number];

/**
 * emulated: e1000, rtl8139; paravirtual: virtio-net (QEMU userspace back end), vhost-net (vhost-kernel);
 * vhost-user: vhost-user-net (a DPDK/OVS back end's socket); passthrough: sriov (a VF of a host NIC).
 */
export const NIC_MODELS = ['virtio-net', 'e1000', 'rtl8139', 'vhost-net', 'vhost-user-net', 'sriov'] as const;
export type NicModel = (typeof NIC_MODELS)[number];

export const HUGEPAGE_SIZES = ['2M', '1G'] as const;
export type HugepageSize = (typeof HUGEPAGE_SIZES)[number];

/** vnc: a VGA device whose screen QEMU serves over VNC on a unix socket in the runtime dir (the API proxies it); none: no display. */
export const DISPLAYS = ['vnc', 'none'] as const;
export type Display = (typeof DISPLAYS)[number];

export const DiskBusSchema = literals(DISK_BUSES);
export const DisplaySchema = literals(DISPLAYS);
export const NicModelSchema = literals(NIC_MODELS);
export const HugepageSizeSchema = literals(HUGEPAGE_SIZES);
export const FirmwareSchema = Type.Union([Type.Literal('bios'), Type.Literal('uefi')]);
export const AccelChoiceSchema = Type.Union([Type.Literal('auto'), Type.Literal('kvm'), Type.Literal('tcg')]);

/** A volume attached to an instance, as the instance spec stores it. */
export const InstanceDiskSchema = Type.Object({ volume: Type.String(), bus: DiskBusSchema }, { title: 'InstanceDisk' });
export type InstanceDisk = Static<typeof InstanceDiskSchema>;

export const PortForwardSchema = Type.Object(
  {
    proto: Type.Union([Type.Literal('tcp'), Type.Literal('udp')]),
    hostAddr: Type.String({ description: 'host address to listen on: 127.0.0.1 unless the spec named one, 0.0.0.0 = every address (empty, in records made before that default, also every address)' }),
    hostPort: Type.Integer(),
    guestPort: Type.Integer(),
  },
  { title: 'PortForward' },
);
export type PortForward = Static<typeof PortForwardSchema>;

/** A NIC as the instance spec stores it. */
export const InstanceNicSchema = Type.Object(
  {
    id: Type.String({ description: 'QEMU device id: net0, net1, ... (never reused while the NIC exists)' }),
    model: NicModelSchema,
    network: nullable(Type.String(), 'the network it is on; null for vhost-user-net and sriov (their back end is outside Corral\'s networks)'),
    mac: Type.String(),
    queues: Type.Integer({ description: 'virtio queue pairs (virtio-net, vhost-net, vhost-user-net)' }),
    address: Type.Optional(Type.String({ description: 'bridge networks: the IPv4 address reserved for this NIC; DHCP gives it to the NIC\'s MAC only, and the NIC may send from no other' })),
    backend: Type.Optional(Type.String({ description: 'vhost-user-net: the registered vhost-user back end it is on (corral vhost-user list)' })),
    socket: Type.Optional(Type.String({ description: 'vhost-user-net: the back end\'s unix socket (the registered back end\'s)' })),
    sriov: Type.Optional(Type.Object(
      { pf: Type.String(), vlan: nullable(Type.Integer()) },
      { description: 'sriov: the physical function to take a VF of, and the VLAN to put it in' },
    )),
    forwards: Type.Optional(Type.Array(PortForwardSchema, { description: 'user network only: host ports forwarded to the guest' })),
  },
  { title: 'InstanceNic' },
);
export type InstanceNic = Static<typeof InstanceNicSchema>;

/** A host PCI device given to an instance whole (VFIO passthrough). */
export const InstanceHostdevSchema = Type.Object(
  {
    id: Type.String({ description: 'QEMU device id: hostdev0, hostdev1, ... (never reused while the device is attached)' }),
    address: Type.String({ description: 'PCI address, full and lower case: 0000:03:00.0' }),
  },
  { title: 'InstanceHostdev' },
);
export type InstanceHostdev = Static<typeof InstanceHostdevSchema>;

/** cloud-init's NoCloud seed of an instance (src/core/cloud-init.ts): what its files are made from at each start. */
export const CloudInitSpecSchema = Type.Object(
  {
    hostname: Type.String({ description: 'meta-data local-hostname (the instance name unless the create named one)' }),
    sshKeys: Type.Array(Type.String(), { description: 'OpenSSH public keys, authorized for the image\'s default user (meta-data public-keys)' }),
    userData: nullable(Type.String(), 'user-data as given; null: a #cloud-config Corral writes (hostname, ssh_authorized_keys)'),
    networkConfig: nullable(Type.String(), 'network-config (version 1 or 2) as given; null: none (cloud-init\'s fallback: DHCP on the first NIC)'),
  },
  { title: 'CloudInit' },
);
export type CloudInitSpec = Static<typeof CloudInitSpecSchema>;

export const TopologySchema = Type.Object({ sockets: Type.Integer(), cores: Type.Integer(), threads: Type.Integer() });

/** The CPU and memory part of a spec. */
const computeSpec = {
  topology: TopologySchema,
  maxCpus: Type.Integer({ description: 'vCPUs the machine can grow to by hotplug (sockets x cores x threads)' }),
  cpuModel: Type.String({ description: '"auto" (host under KVM, max under TCG) or a QEMU CPU model name' }),
  pin: nullable(Type.Array(Type.Integer()), 'host CPUs the vCPU threads run on: one per vCPU in order, or one set for all; null = anywhere'),
  cpuWeight: nullable(Type.Integer(), 'cgroup CPU weight 1..10000 (v2 cpu.weight; v1 cpu.shares = weight x 1024 / 100); null = default'),
  cpuLimit: nullable(Type.Number(), 'cgroup CPU cap in CPUs (1.5 = one and a half CPUs); null = none'),
  maxMemory: nullable(Type.Integer(), 'bytes the guest can grow to by hotplug (virtio-mem); null = no hotplug'),
  memoryLimit: nullable(Type.Integer(), 'cgroup memory limit in bytes for the whole QEMU process; null = none'),
  prealloc: Type.Boolean(),
  hugepages: nullable(HugepageSizeSchema),
  balloon: Type.Boolean(),
};
export const ComputeSpecSchema = Type.Object(computeSpec);
export type ComputeSpec = Static<typeof ComputeSpecSchema>;

/** A validated specification, as stored. Sizes are bytes. */
export const InstanceSpecSchema = Type.Object(
  {
    image: Type.String(),
    cpus: Type.Integer(),
    memory: Type.Integer({ description: 'bytes' }),
    disk: nullable(Type.Integer(), 'size of the root disk in bytes, or null to keep the image\'s size'),
    firmware: FirmwareSchema,
    accel: AccelChoiceSchema,
    ...computeSpec,
    disks: Type.Array(InstanceDiskSchema, { description: 'volumes attached as disks, in attach order' }),
    rootBus: DiskBusSchema,
    nics: Type.Array(InstanceNicSchema, { description: 'network interfaces, in attach order' }),
    hostdevs: Type.Array(InstanceHostdevSchema, { description: 'host PCI devices passed through whole (VFIO), in attach order; SR-IOV VFs are NICs instead' }),
    rootPool: Type.Optional(literals(['local', 'shared'] as const)),
    ha: Type.Optional(Type.Boolean({ description: 'killed by its host when that host loses its cluster lease; started on another host by the cluster' })),
    /** a cloud-init NoCloud seed disk (read-only virtio-blk, label cidata), written from this at each start; absent: none */
    cloudInit: Type.Optional(CloudInitSpecSchema),
    agent: Type.Boolean({ description: 'a virtio-serial channel for the guest\'s qemu-guest-agent (exec, the guest\'s addresses and OS, shutdown when ACPI is ignored); a spec stored before the field existed reads true' }),
    display: Type.Optional(Type.Literal('vnc', { description: 'vnc: a VGA device whose screen QEMU serves over VNC on a unix socket, the graphical console; absent: no display (none, and every spec stored before the field existed)' })),
  },
  { title: 'InstanceSpec', description: 'the whole stored configuration: topology, limits, pinning, disks, NICs, host devices' },
);
export type InstanceSpec = Static<typeof InstanceSpecSchema>;
