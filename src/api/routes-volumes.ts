/** /v1/volumes: volumes of the `default` directory pool, their clones and internal snapshots. */
import type { FastifyInstance, FastifyPluginAsync } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Deleted, errors, NameParams } from './schemas-common.js';
import {
  CloneVolumeBody, CreateVolumeBody, ResizeVolumeBody, Reverted, SnapParams, Snapshot, SnapshotBody, SnapshotDeleted, SnapshotList, Volume,
  VolumeDetails, VolumeList,
} from './schemas-storage.js';
import type { Services } from './services.js';

export { CloneVolumeBody, CreateVolumeBody, ResizeVolumeBody, SnapParams, SnapshotBody };

export function volumeRoutes(svc: Services): FastifyPluginAsync {
  return async (base: FastifyInstance) => {
    const app = base.withTypeProvider<TypeBoxTypeProvider>();
    const v = svc.volumes;
    const tags = ['volumes'];
    app.get(
      '/v1/volumes',
      { schema: { operationId: 'listVolumes', tags, summary: 'List volumes of the default pool', response: { 200: VolumeList, 401: errors[401], 500: errors[500] } } },
      async () => ({ volumes: v.list() }),
    );

    app.post(
      '/v1/volumes',
      {
        schema: {
          operationId: 'createVolume', tags, summary: 'Create a volume (qemu-img create; raw files are sparse)',
          body: CreateVolumeBody, response: { 201: Volume, ...errors },
        },
      },
      async (req, reply) => {
        const vol = await v.create(req.body.name, req.body.size, req.body.format);
        return reply.status(201).send(vol);
      },
    );

    app.get(
      '/v1/volumes/:name',
      { schema: { operationId: 'getVolume', tags, summary: 'A volume with its snapshots and clones', params: NameParams, response: { 200: VolumeDetails, ...errors } } },
      async (req) => v.get(req.params.name),
    );

    app.delete(
      '/v1/volumes/:name',
      {
        schema: {
          operationId: 'deleteVolume', tags, summary: 'Delete a volume (refused while attached, open in a QEMU, or cloned)',
          params: NameParams, response: { 200: Deleted, ...errors },
        },
      },
      async (req) => {
        await v.remove(req.params.name);
        return { deleted: req.params.name };
      },
    );

    app.post(
      '/v1/volumes/:name/resize',
      {
        schema: {
          operationId: 'resizeVolume', tags,
          summary: 'Grow a volume (shrink only with shrink: true); attached to a running instance: live, and never shrinking',
          params: NameParams, body: ResizeVolumeBody, response: { 200: Volume, ...errors },
        },
      },
      async (req) => svc.disks.resizeVolume(req.params.name, req.body.size, req.body.shrink ?? false),
    );

    app.post(
      '/v1/volumes/:name/clone',
      {
        schema: {
          operationId: 'cloneVolume', tags, summary: 'Clone a volume as a qcow2 overlay on it',
          params: NameParams, body: CloneVolumeBody, response: { 201: Volume, ...errors },
        },
      },
      async (req, reply) => reply.status(201).send(await v.clone(req.params.name, req.body.name)),
    );

    app.get(
      '/v1/volumes/:name/snapshots',
      { schema: { operationId: 'listVolumeSnapshots', tags, summary: 'Internal snapshots of a qcow2 volume', params: NameParams, response: { 200: SnapshotList, ...errors } } },
      async (req) => ({ snapshots: await v.snapshots(req.params.name) }),
    );

    app.post(
      '/v1/volumes/:name/snapshots',
      {
        schema: {
          operationId: 'createVolumeSnapshot', tags, summary: 'Take an internal snapshot of a qcow2 volume',
          params: NameParams, body: SnapshotBody, response: { 201: Snapshot, ...errors },
        },
      },
      async (req, reply) => reply.status(201).send(await v.snapshot(req.params.name, req.body.name)),
    );

    app.post(
      '/v1/volumes/:name/snapshots/:snap/revert',
      { schema: { operationId: 'revertVolumeSnapshot', tags, summary: 'Revert a volume to a snapshot', params: SnapParams, response: { 200: Reverted, ...errors } } },
      async (req) => {
        await v.revert(req.params.name, req.params.snap);
        return { reverted: req.params.name, snapshot: req.params.snap };
      },
    );

    app.delete(
      '/v1/volumes/:name/snapshots/:snap',
      { schema: { operationId: 'deleteVolumeSnapshot', tags, summary: 'Delete a snapshot', params: SnapParams, response: { 200: SnapshotDeleted, ...errors } } },
      async (req) => {
        await v.deleteSnapshot(req.params.name, req.params.snap);
        return { deleted: req.params.snap, volume: req.params.name };
      },
    );
  };
}
