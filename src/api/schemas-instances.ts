/** Schemas of /v1/instances: the instance as shown, its stored spec, why its QEMU ended, actions, devices, the pool. */
import { Type, type Static } from '@sinclair/typebox';
import { STATES } from '../core/state.js';
import { CreateRequestSchema, SpecChangeSchema } from '../core/request-schema.js';
import { InstanceSpecSchema, literals } from '../core/spec-schema.js';
import { nullable } from './schemas-common.js';
import { GuestInfo } from './schemas-guest.js';

export { Size } from '../core/request-schema.js';

/** POST /v1/instances: core's create request schema (its Static type is core's CreateRequest). */
export const CreateInstanceBody = CreateRequestSchema;
export type CreateInstanceBody = Static<typeof CreateInstanceBody>;
/** PATCH /v1/instances/{name}: core's change schema (its Static type is core's SpecChange). */
export const SetInstanceBody = SpecChangeSchema;
export type SetInstanceBody = Static<typeof SetInstanceBody>;
/** The stored configuration of an instance: core's spec schema, which the store checks records against too. */
export const InstanceSpec = InstanceSpecSchema;
export type InstanceSpec = Static<typeof InstanceSpec>;

export const InstanceStateSchema = literals(STATES);
export const AcceleratorSchema = Type.Union([Type.Literal('kvm'), Type.Literal('tcg')]);

export const ActionBody = Type.Union([
  Type.Object({ timeout: Type.Optional(Type.Integer({ minimum: 0, maximum: 3600, description: 'seconds to wait for an ACPI power-off before killing' })) }, { additionalProperties: false }),
  Type.Null(),
]);

export const DeleteQuery = Type.Object({
  force: Type.Optional(Type.Boolean()),
  forget: Type.Optional(Type.Boolean({ description: 'keep its root disk on the shared pool: another host of the cluster took the instance over' })),
}, { additionalProperties: false });

/** Why the last QEMU of an instance ended. */
export const ExitInfo = Type.Object(
  {
    at: Type.String(),
    pid: Type.Integer(),
    state: Type.Union([Type.Literal('stopped'), Type.Literal('crashed')]),
    reason: Type.String({ description: 'one line for people: what happened and why' }),
    code: nullable(Type.Integer(), 'exit code, when its parent (this daemon) saw it end normally'),
    signal: nullable(Type.String(), 'the signal that ended it, when its parent (this daemon) saw it'),
    kernel: nullable(Type.String(), 'what the kernel logged about it: a segfault, an OOM kill'),
    service: nullable(Type.String(), 'what a service knows, e.g. the VM cgroup\'s memory limit was reached'),
    stderr: nullable(Type.String(), 'QEMU\'s own last error line on stderr'),
  },
  { title: 'ExitInfo' },
);
export type ExitInfo = Static<typeof ExitInfo>;

export const Instance = Type.Object(
  {
    name: Type.String(),
    uuid: Type.String(),
    state: InstanceStateSchema,
    image: Type.String(),
    cpus: Type.Integer(),
    memory: Type.Integer({ description: 'bytes' }),
    firmware: Type.String(),
    network: Type.String({ description: 'the first NIC\'s network (or model when it has none), or "none"' }),
    mac: Type.String(),
    accel: nullable(AcceleratorSchema, 'the accelerator the running QEMU uses; null when not running'),
    pid: nullable(Type.Integer()),
    disk: Type.Object({ path: Type.String(), allocated: nullable(Type.Integer(), 'bytes allocated on disk') }),
    uptime: nullable(Type.Number({ description: 'seconds' })),
    rss: nullable(Type.Integer({ description: 'bytes resident' })),
    createdAt: Type.String(),
    startedAt: nullable(Type.String()),
    lastError: nullable(Type.String()),
    lastExit: nullable(ExitInfo, 'why the last QEMU ended; null before any exit'),
    spec: InstanceSpec,
    updatedAt: Type.String({ description: 'when the instance\'s record last changed on its host (that host\'s clock)' }),
    guest: Type.Optional(GuestInfo),
  },
  { title: 'Instance' },
);
export type Instance = Static<typeof Instance>;

export const InstanceList = Type.Object({ instances: Type.Array(Instance) });

/** The reply of stop and restart: the instance, whether QEMU had to be killed, and how the guest went down. */
export const StopReply = Type.Composite(
  [Instance, Type.Object({
    killed: Type.Boolean({ description: 'true when the guest did not power off within the timeout and QEMU was killed' }),
    stoppedBy: nullable(literals(['acpi', 'agent', 'kill'] as const), 'how the guest went down: acpi (the power button), agent (the guest agent\'s guest-shutdown, asked after half the timeout when ACPI was ignored), kill (SIGKILL at the timeout); null when there was no QEMU to stop'),
  })],
  { title: 'StopReply' },
);
export type StopReply = Static<typeof StopReply>;

/** The reply of PATCH /v1/instances/{name}. */
export const SetReply = Type.Object({ instance: Instance, changed: Type.Array(Type.String({ description: 'the spec fields that changed' })) });
export type SetReply = Static<typeof SetReply>;

/** A disk or NIC of an instance with its virtualization approach and data path. */
export const DevicePath = Type.Object(
  {
    kind: literals(['disk', 'nic', 'memory', 'other'] as const),
    id: Type.String(),
    approach: literals(['emulated', 'paravirtual', 'vhost-kernel', 'vhost-user', 'passthrough', 'sriov-vf'] as const),
    qemuDevice: Type.String(),
    dataPath: Type.String(),
  },
  { title: 'DevicePath' },
);
export type DevicePath = Static<typeof DevicePath>;
export const DeviceList = Type.Object({ devices: Type.Array(DevicePath) });

const cpusMemory = Type.Object({ cpus: Type.Integer(), memory: Type.Integer({ description: 'bytes' }) });

/** GET /v1/pool: capacity (host x ratio, less the reserve), allocated, free. */
export const Pool = Type.Object(
  {
    capacity: cpusMemory,
    allocated: Type.Object({ cpus: Type.Integer(), memory: Type.Integer(), instances: Type.Integer({ description: 'instances holding resources' }) }),
    free: cpusMemory,
    ratios: Type.Object({ cpu: Type.Number(), memory: Type.Number() }),
    reservedMemory: Type.Integer({ description: 'bytes kept for the host' }),
  },
  { title: 'Pool' },
);
export type Pool = Static<typeof Pool>;
