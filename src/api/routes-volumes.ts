/** /v1/volumes: volumes of the `default` directory pool, their clones and internal snapshots. */
import type { FastifyInstance, FastifyPluginAsync } from 'fastify';
import { Type, type Static } from '@sinclair/typebox';
import { ErrorBody, NameParams, Size } from './schemas.js';
import type { Services } from './services.js';

export const CreateVolumeBody = Type.Object(
  {
    name: Type.String({ description: 'DNS label: a-z, 0-9 and -, 1..63 characters' }),
    size: Size,
    format: Type.Optional(Type.Union([Type.Literal('qcow2'), Type.Literal('raw')], { description: 'default qcow2' })),
  },
  { additionalProperties: false },
);
export const ResizeVolumeBody = Type.Object(
  { size: Size, shrink: Type.Optional(Type.Boolean({ description: 'allow making the volume smaller (loses data past the new end)' })) },
  { additionalProperties: false },
);
export const CloneVolumeBody = Type.Object({ name: Type.String({ description: 'name of the new volume' }) }, { additionalProperties: false });
export const SnapshotBody = Type.Object({ name: Type.String({ description: 'snapshot name (DNS label)' }) }, { additionalProperties: false });
export const SnapParams = Type.Object({ name: Type.String(), snap: Type.String() }, { additionalProperties: false });

const errors = { 400: ErrorBody, 404: ErrorBody, 409: ErrorBody };

export function volumeRoutes(svc: Services): FastifyPluginAsync {
  return async (app: FastifyInstance) => {
    const v = svc.volumes;
    app.get('/v1/volumes', { schema: { summary: 'List volumes of the default pool' } }, async () => ({ volumes: v.list() }));

    app.post<{ Body: Static<typeof CreateVolumeBody> }>(
      '/v1/volumes',
      { schema: { summary: 'Create a volume (qemu-img create; raw files are sparse)', body: CreateVolumeBody, response: errors } },
      async (req, reply) => {
        const vol = await v.create(req.body.name, req.body.size, req.body.format);
        return reply.status(201).send(vol);
      },
    );

    app.get<{ Params: Static<typeof NameParams> }>('/v1/volumes/:name', { schema: { summary: 'A volume with its snapshots and clones', params: NameParams, response: errors } }, async (req) =>
      v.get(req.params.name),
    );

    app.delete<{ Params: Static<typeof NameParams> }>('/v1/volumes/:name', { schema: { summary: 'Delete a volume (refused while attached, open in a QEMU, or cloned)', params: NameParams, response: errors } }, async (req) => {
      await v.remove(req.params.name);
      return { deleted: req.params.name };
    });

    app.post<{ Params: Static<typeof NameParams>; Body: Static<typeof ResizeVolumeBody> }>(
      '/v1/volumes/:name/resize',
      {
        schema: {
          summary: 'Grow a volume (shrink only with shrink: true); attached to a running instance: live, and never shrinking',
          params: NameParams, body: ResizeVolumeBody, response: errors,
        },
      },
      async (req) => svc.disks.resizeVolume(req.params.name, req.body.size, req.body.shrink ?? false),
    );

    app.post<{ Params: Static<typeof NameParams>; Body: Static<typeof CloneVolumeBody> }>(
      '/v1/volumes/:name/clone',
      { schema: { summary: 'Clone a volume as a qcow2 overlay on it', params: NameParams, body: CloneVolumeBody, response: errors } },
      async (req, reply) => reply.status(201).send(await v.clone(req.params.name, req.body.name)),
    );

    app.get<{ Params: Static<typeof NameParams> }>('/v1/volumes/:name/snapshots', { schema: { summary: 'Internal snapshots of a qcow2 volume', params: NameParams, response: errors } }, async (req) => ({
      snapshots: await v.snapshots(req.params.name),
    }));

    app.post<{ Params: Static<typeof NameParams>; Body: Static<typeof SnapshotBody> }>(
      '/v1/volumes/:name/snapshots',
      { schema: { summary: 'Take an internal snapshot of a qcow2 volume', params: NameParams, body: SnapshotBody, response: errors } },
      async (req, reply) => reply.status(201).send(await v.snapshot(req.params.name, req.body.name)),
    );

    app.post<{ Params: Static<typeof SnapParams> }>(
      '/v1/volumes/:name/snapshots/:snap/revert',
      { schema: { summary: 'Revert a volume to a snapshot', params: SnapParams, response: errors } },
      async (req) => {
        await v.revert(req.params.name, req.params.snap);
        return { reverted: req.params.name, snapshot: req.params.snap };
      },
    );

    app.delete<{ Params: Static<typeof SnapParams> }>(
      '/v1/volumes/:name/snapshots/:snap',
      { schema: { summary: 'Delete a snapshot', params: SnapParams, response: errors } },
      async (req) => {
        await v.deleteSnapshot(req.params.name, req.params.snap);
        return { deleted: req.params.snap, volume: req.params.name };
      },
    );
  };
}
