/** TypeBox schemas: one definition gives request validation, TypeScript types and the OpenAPI document. */
import { Type, type Static, type TSchema } from '@sinclair/typebox';

/**
 * A size: a string with a unit ("512M", "2G"; one without a unit is refused by the service) or a JSON number of
 * bytes. Bodies are validated without type coercion (server.ts), so neither branch turns into the other.
 */
export const Size = Type.Union([Type.String(), Type.Integer()], {
  description: 'a size with a unit such as 512M or 2G (a string without a unit is refused), or a number of bytes',
});

export const CreateInstanceBody = Type.Object(
  {
    name: Type.String({ description: 'DNS label: a-z, 0-9 and -, 1..63 characters' }),
    image: Type.String(),
    cpus: Type.Optional(Type.Integer()),
    memory: Type.Optional(Size),
    disk: Type.Optional(Size),
    firmware: Type.Optional(Type.Union([Type.Literal('bios'), Type.Literal('uefi')])),
    rootBus: Type.Optional(Type.String({ description: 'bus of the root disk: virtio-blk (default), virtio-scsi, ide or sata (not vhost-user-blk)' })),
    network: Type.Optional(Type.String({ description: 'network of the first NIC: a network name, "default"/"user" (user-mode NAT; the default) or "none"' })),
    nicModel: Type.Optional(Type.String({ description: 'model of the first NIC: virtio-net (default), e1000, rtl8139 or vhost-net' })),
    forwards: Type.Optional(Type.Array(Type.String(), { description: 'user network: [tcp|udp:][ADDR:]HOSTPORT:GUESTPORT' })),
    accel: Type.Optional(Type.Union([Type.Literal('auto'), Type.Literal('kvm'), Type.Literal('tcg')])),
    start: Type.Optional(Type.Boolean()),
    sockets: Type.Optional(Type.Integer()),
    cores: Type.Optional(Type.Integer()),
    threads: Type.Optional(Type.Integer()),
    maxCpus: Type.Optional(Type.Integer({ description: 'vCPUs the guest can grow to by hotplug' })),
    cpuModel: Type.Optional(Type.String({ description: 'auto (host under KVM, max under TCG), host, max or a QEMU CPU model name' })),
    pin: Type.Optional(Type.Union([Type.String({ description: 'host CPU list, e.g. 0-3,6' }), Type.Array(Type.Integer())])),
    cpuWeight: Type.Optional(Type.Integer({ description: 'cgroup CPU weight 1..10000 (100 = default)' })),
    cpuLimit: Type.Optional(Type.Number({ description: 'cgroup CPU cap in CPUs, e.g. 1.5' })),
    maxMemory: Type.Optional(Size),
    memoryLimit: Type.Optional(Size),
    prealloc: Type.Optional(Type.Boolean()),
    hugepages: Type.Optional(Type.Union([Type.Literal('2M'), Type.Literal('1G')])),
    balloon: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false },
);
export type CreateInstanceBody = Static<typeof CreateInstanceBody>;

/** A field `set` may clear with null. */
const Clearable = <T extends TSchema>(t: T) => Type.Optional(Type.Union([t, Type.Null()], { description: 'null clears it' }));

/** PATCH /v1/instances/{name}: change a stopped instance's configuration (validated as a create is). */
export const SetInstanceBody = Type.Object(
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
    hugepages: Clearable(Type.Union([Type.Literal('2M'), Type.Literal('1G')])),
    balloon: Type.Optional(Type.Boolean()),
    firmware: Type.Optional(Type.Union([Type.Literal('bios'), Type.Literal('uefi')])),
    accel: Type.Optional(Type.Union([Type.Literal('auto'), Type.Literal('kvm'), Type.Literal('tcg')])),
  },
  { additionalProperties: false },
);

export const ActionBody = Type.Union([
  Type.Object({ timeout: Type.Optional(Type.Integer({ minimum: 0, maximum: 3600, description: 'seconds to wait for an ACPI power-off before killing' })) }, { additionalProperties: false }),
  Type.Null(),
]);

export const NameParams = Type.Object({ name: Type.String() }, { additionalProperties: false });

export const DeleteQuery = Type.Object({ force: Type.Optional(Type.Boolean()) }, { additionalProperties: false });

export const ImportImageBody = Type.Object(
  {
    name: Type.String(),
    file: Type.String({ description: 'absolute path of the image file on the daemon host' }),
    format: Type.Union([Type.Literal('qcow2'), Type.Literal('raw')]),
  },
  { additionalProperties: false },
);

export const BuildTinyBody = Type.Union([Type.Object({ force: Type.Optional(Type.Boolean()) }, { additionalProperties: false }), Type.Null()]);

export const EventsQuery = Type.Object({ since: Type.Optional(Type.Integer({ minimum: 0 })) }, { additionalProperties: false });

export const ErrorBody = Type.Object({
  error: Type.Object({ code: Type.String(), message: Type.String() }, { additionalProperties: true }),
});

const nullable = <T extends TSchema>(t: T) => Type.Union([t, Type.Null()]);

/** Why the last QEMU of an instance ended. */
export const ExitInfo = Type.Object({
  at: Type.String(), pid: Type.Integer(), state: Type.String(), reason: Type.String(),
  code: nullable(Type.Integer()), signal: nullable(Type.String()), kernel: nullable(Type.String()),
  service: nullable(Type.String()), stderr: nullable(Type.String()),
});

export const Instance = Type.Object({
  name: Type.String(), uuid: Type.String(), state: Type.String(), image: Type.String(), cpus: Type.Integer(), memory: Type.Integer(),
  firmware: Type.String(), network: Type.String(), mac: Type.String(), accel: Type.Union([Type.String(), Type.Null()]),
  pid: Type.Union([Type.Integer(), Type.Null()]),
  disk: Type.Object({ path: Type.String(), allocated: Type.Union([Type.Integer(), Type.Null()]) }),
  uptime: Type.Union([Type.Number(), Type.Null()]), rss: Type.Union([Type.Integer(), Type.Null()]),
  createdAt: Type.String(), startedAt: Type.Union([Type.String(), Type.Null()]), lastError: Type.Union([Type.String(), Type.Null()]),
  lastExit: Type.Union([ExitInfo, Type.Null()]),
  spec: Type.Record(Type.String(), Type.Unknown(), { description: 'the whole stored configuration (topology, limits, pinning, disks, NICs, host devices)' }),
});

/** The reply of stop and restart: the instance, and whether QEMU had to be killed. */
export const StopReply = Type.Composite([
  Instance,
  Type.Object({ killed: Type.Boolean({ description: 'true when the guest did not power off within the timeout and QEMU was killed' }) }),
]);
