/** TypeBox schemas: one definition gives request validation, TypeScript types and the OpenAPI document. */
import { Type, type Static, type TSchema } from '@sinclair/typebox';

/** The create request, the change `set` makes and sizes are core's schemas: the service's types are theirs. */
import { CreateRequestSchema, SpecChangeSchema, Size } from '../core/request-schema.js';

export { Size };
export const CreateInstanceBody = CreateRequestSchema;
export type CreateInstanceBody = Static<typeof CreateInstanceBody>;
export const SetInstanceBody = SpecChangeSchema;

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
