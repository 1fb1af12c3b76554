/** Schemas of the host: its facts and inventory, its PCI devices and SR-IOV, and the devices given to an instance. */
import { Type, type Static } from '@sinclair/typebox';
import { Dict, nullable } from './schemas-common.js';

// ---- GET /v1/host ----

const Hugepages = Type.Object({
  size: Type.Integer({ description: 'page size in bytes' }),
  total: Type.Integer({ description: 'pages in the pool' }),
  free: Type.Integer({ description: 'pages not in use' }),
});

const CgroupVersion = Type.Union([Type.Literal('v1'), Type.Literal('v2'), Type.Literal('hybrid'), Type.Literal('none')]);

export const HostInventory = Type.Object({
  cpu: Type.Object({
    vendor: Type.String(),
    model: Type.String(),
    flags: Type.Array(Type.String()),
    virtualization: nullable(Type.Union([Type.Literal('vmx'), Type.Literal('svm')])),
    hypervisor: Type.Boolean({ description: 'this host is itself a guest' }),
    topology: Type.Object({
      cpus: Type.Array(Type.Object({ cpu: Type.Integer(), socket: Type.Integer(), core: Type.Integer(), siblings: Type.Array(Type.Integer()) })),
      sockets: Type.Integer(),
      coresPerSocket: Type.Integer(),
      threadsPerCore: Type.Integer(),
    }),
  }),
  numa: Type.Array(Type.Object({
    id: Type.Integer(), cpus: Type.Array(Type.Integer()), memTotal: Type.Integer(), memFree: Type.Integer(), hugepages: Type.Array(Hugepages),
  }), { description: 'empty on a host without NUMA information (one node holding everything)' }),
  memory: Type.Object({
    total: Type.Integer(),
    available: Type.Integer(),
    hugepages: Type.Array(Hugepages),
    transparentHugepages: nullable(Type.String(), 'always, madvise or never; null without THP'),
    ksm: Type.Union([
      Type.Object({ available: Type.Literal(false) }),
      Type.Object({ available: Type.Literal(true), run: Type.Integer(), pagesShared: Type.Integer(), pagesSharing: Type.Integer(), pagesUnshared: Type.Integer() }),
    ]),
  }),
  cgroups: Type.Object({
    version: CgroupVersion,
    root: Type.String(),
    controllers: Type.Array(Type.String()),
    v1: Dict(Type.String(), 'v1 controller -> its hierarchy directory'),
    unified: nullable(Type.Object({ path: Type.String(), controllers: Type.Array(Type.String()) })),
    mountsVersion: nullable(CgroupVersion),
    confirmedByMounts: nullable(Type.Boolean()),
  }),
});

export const Host = Type.Object(
  {
    hostname: Type.String(),
    accelerator: Type.Union([Type.Literal('kvm'), Type.Literal('tcg')]),
    acceleratorReason: Type.String(),
    acceleratorForced: Type.Boolean(),
    qemu: Type.Object({ binary: Type.String(), version: Type.String(), machines: Type.Integer(), devices: Type.Integer() }),
    cpus: Type.Integer(),
    cpuModel: Type.String(),
    memory: Type.Object({ total: Type.Integer(), available: Type.Integer() }),
    inventory: HostInventory,
  },
  { title: 'Host' },
);
export type Host = Static<typeof Host>;
export type HostInventory = Static<typeof HostInventory>;

// ---- PCI devices and SR-IOV ----

const PciAddress = (description: string) => Type.String({ description, maxLength: 32 });

export const SriovBody = Type.Object(
  {
    pf: PciAddress('the physical function, 0000:03:00.0 or 03:00.0'),
    vfs: Type.Integer({ minimum: 0, description: 'the number of VFs wanted (0 removes them)' }),
  },
  { additionalProperties: false },
);
export const PfParams = Type.Object({ pf: PciAddress('the physical function, 0000:03:00.0 or 03:00.0') }, { additionalProperties: false });

export const PciDevice = Type.Object(
  {
    address: Type.String({ description: 'full address, domain included, lower case: 0000:03:00.0' }),
    vendor: nullable(Type.String(), 'vendor id, 4 hex digits'),
    device: nullable(Type.String(), 'device id, 4 hex digits'),
    class: nullable(Type.String(), 'class code, 6 hex digits'),
    classCode: nullable(Type.String(), 'class and subclass, 4 hex digits'),
    className: Type.String(),
    driver: nullable(Type.String()),
    iommuGroup: nullable(Type.Integer()),
    iommuGroupPeers: Type.Array(Type.String(), { description: 'the other devices in the same IOMMU group' }),
    numaNode: nullable(Type.Integer()),
    sriov: nullable(Type.Union([
      Type.Object({ totalVfs: Type.Integer(), numVfs: Type.Integer(), vfs: Type.Array(Type.String()) }),
      Type.Object({ physfn: Type.String() }),
    ]), 'a physical function with its VFs, or a virtual function with its PF'),
  },
  { title: 'PciDevice' },
);
export type PciDevice = Static<typeof PciDevice>;
export const PciDeviceList = Type.Object({ devices: Type.Array(PciDevice) });

export const SriovState = Type.Object(
  {
    pf: Type.String(),
    netdev: nullable(Type.String()),
    totalVfs: Type.Integer(),
    numVfs: Type.Integer(),
    vfs: Type.Array(Type.Object({
      index: Type.Integer(),
      address: Type.String(),
      driver: nullable(Type.String()),
      free: Type.Boolean({ description: 'not bound to vfio-pci and not given to an instance' }),
    })),
  },
  { title: 'SriovState' },
);
export type SriovState = Static<typeof SriovState>;

// ---- devices given to an instance ----

export const AttachHostdevBody = Type.Object(
  {
    address: Type.Union([
      PciAddress('PCI address of the host device, 0000:03:00.0 or 03:00.0'),
      Type.Array(Type.String({ maxLength: 32 }), { minItems: 1, maxItems: 8, description: 'several devices at once (those of one IOMMU group that are all on host drivers)' }),
    ]),
  },
  { additionalProperties: false },
);
export const HostdevParams = Type.Object(
  { name: Type.String(), hostdev: PciAddress('the device id (hostdev0, ...) or its PCI address') },
  { additionalProperties: false },
);

export const Hostdev = Type.Object(
  {
    id: Type.String(),
    kind: Type.Union([Type.Literal('passthrough'), Type.Literal('sriov-vf')]),
    address: nullable(Type.String(), 'the host device (sriov-vf: the VF taken at start; null while stopped)'),
    pf: nullable(Type.String(), 'sriov-vf: the physical function'),
    vlan: nullable(Type.Integer()),
    className: nullable(Type.String()),
    driver: nullable(Type.String()),
    iommuGroup: nullable(Type.Integer()),
    bound: Type.Boolean({ description: 'bound to vfio-pci for this instance now' }),
  },
  { title: 'Hostdev' },
);
export type Hostdev = Static<typeof Hostdev>;
export const HostdevList = Type.Object({ hostdevs: Type.Array(Hostdev) });
