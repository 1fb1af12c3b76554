/**
 * What a user asks for, as TypeBox schemas: the create request and the change `corral set` makes. The API
 * validates bodies against them and core's types are their Static types, so the two cannot drift. Imports nothing
 * from Corral but the spec schema.
 */
import { Type, type Static, type TSchema } from '@sinclair/typebox';
import { AccelChoiceSchema, DisplaySchema, FirmwareSchema, HugepageSizeSchema } from './spec-schema.js';

/**
 * A size: a string with a unit ("512M", "2G"; one without a unit is refused by the service) or a JSON number of
 * bytes. Bodies are validated without type coercion (src/api/server.ts), so neither branch turns into the other.
 */
export const Size = Type.Union([Type.String(), Type.Integer()], {
  description: 'a size with a unit such as 512M or 2G (a string without a unit is refused), or a number of bytes',
});

const Pin = Type.Union([Type.String({ description: 'host CPU list, e.g. 0-3,6' }), Type.Array(Type.Integer())]);

/** The CPU and memory part of a request (create, and the spec a change is applied to). */
export const ComputeRequestSchema = Type.Object({
  sockets: Type.Optional(Type.Integer()),
  cores: Type.Optional(Type.Integer()),
  threads: Type.Optional(Type.Integer()),
  maxCpus: Type.Optional(Type.Integer({ description: 'vCPUs the guest can grow to by hotplug' })),
  cpuModel: Type.Optional(Type.String({ description: 'auto (host under KVM, max under TCG), host, max or a QEMU CPU model name' })),
  pin: Type.Optional(Pin),
  cpuWeight: Type.Optional(Type.Integer({ description: 'cgroup CPU weight 1..10000 (100 = default)' })),
  cpuLimit: Type.Optional(Type.Number({ description: 'cgroup CPU cap in CPUs, e.g. 1.5' })),
  maxMemory: Type.Optional(Size),
  memoryLimit: Type.Optional(Size),
  prealloc: Type.Optional(Type.Boolean()),
  hugepages: Type.Optional(HugepageSizeSchema),
  balloon: Type.Optional(Type.Boolean()),
});
export type ComputeRequest = Static<typeof ComputeRequestSchema>;

/** POST /v1/instances: what a create request carries, before validation (from JSON or the CLI). */
export const CreateRequestSchema = Type.Object(
  {
    name: Type.String({ description: 'DNS label: a-z, 0-9 and -, 1..63 characters' }),
    image: Type.String(),
    cpus: Type.Optional(Type.Integer()),
    memory: Type.Optional(Size),
    disk: Type.Optional(Size),
    firmware: Type.Optional(FirmwareSchema),
    rootBus: Type.Optional(Type.String({ description: 'bus of the root disk: virtio-blk (default), virtio-scsi, ide or sata (not vhost-user-blk)' })),
    network: Type.Optional(Type.String({ description: 'network of the first NIC: a network name, "default"/"user" (user-mode NAT; the default) or "none"' })),
    nicModel: Type.Optional(Type.String({ description: 'model of the first NIC: virtio-net (default), e1000, rtl8139 or vhost-net' })),
    forwards: Type.Optional(Type.Array(Type.String(), { description: 'user network: [tcp|udp:][ADDR:]HOSTPORT:GUESTPORT' })),
    accel: Type.Optional(AccelChoiceSchema),
    start: Type.Optional(Type.Boolean()),
    pool: Type.Optional(Type.String({ description: 'storage pool of the root disk: local (the default: the data dir) or shared (the host\'s --shared-pool, a directory every host of a cluster mounts at the same path)' })),
    ha: Type.Optional(Type.Boolean({ description: 'high availability (shared pool only): the agent kills it when it loses its cluster lease, and the cluster starts it on another host' })),
    agent: Type.Optional(Type.Boolean({ description: 'a virtio-serial channel for the guest\'s qemu-guest-agent (default true; false: --no-agent)' })),
    display: Type.Optional(Type.Union(DisplaySchema.anyOf, { description: 'vnc: a VGA device and a graphical console (VNC on a unix socket, proxied by the API at /v1/instances/NAME/vnc); none (the default): no display' })),
    sshKeys: Type.Optional(Type.Array(Type.String(), { description: 'cloud-init: OpenSSH public keys (one "TYPE BASE64 [COMMENT]" line each) for the image\'s default user' })),
    userData: Type.Optional(Type.String({ description: 'cloud-init user-data: #cloud-config (a YAML mapping), a #! script, #cloud-boothook, #include, "## template: jinja" or MIME multipart' })),
    networkConfig: Type.Optional(Type.String({ description: 'cloud-init network-config, version 1 or 2 (YAML)' })),
    hostname: Type.Optional(Type.String({ description: 'cloud-init: the guest\'s hostname (default: the instance name once any cloud-init field is given)' })),
    adopt: Type.Optional(Type.Boolean({ description: 'shared pool: take over the root disk that another host of the cluster left there for this name, instead of making one (HA restarts)' })),
    ...ComputeRequestSchema.properties,
  },
  { additionalProperties: false, title: 'CreateInstanceRequest' },
);
export type CreateRequest = Static<typeof CreateRequestSchema>;

/** A field `set` may clear with null. */
const Clearable = <T extends TSchema>(t: T) => Type.Optional(Type.Union([t, Type.Null()], { description: 'null clears it' }));

/** PATCH /v1/instances/{name}: what `set` may change; null clears an optional field (validated as a create is). */
export const SpecChangeSchema = Type.Object(
  {
    cpus: Type.Optional(Type.Integer()),
    memory: Type.Optional(Size),
    maxCpus: Clearable(Type.Integer()),
    sockets: Type.Optional(Type.Integer()),
    cores: Type.Optional(Type.Integer()),
    threads: Type.Optional(Type.Integer()),
    cpuModel: Type.Optional(Type.String()),
    pin: Clearable(Type.Union([Type.String(), Type.Array(Type.Integer())])),
    cpuWeight: Clearable(Type.Integer()),
    cpuLimit: Clearable(Type.Number()),
    maxMemory: Clearable(Size),
    memoryLimit: Clearable(Size),
    prealloc: Type.Optional(Type.Boolean()),
    hugepages: Clearable(HugepageSizeSchema),
    balloon: Type.Optional(Type.Boolean()),
    firmware: Type.Optional(FirmwareSchema),
    accel: Type.Optional(AccelChoiceSchema),
    agent: Type.Optional(Type.Boolean({ description: 'the guest agent\'s channel (from the next start)' })),
    display: Clearable(DisplaySchema),
  },
  { additionalProperties: false, title: 'InstanceChange' },
);
export type SpecChange = Static<typeof SpecChangeSchema>;
