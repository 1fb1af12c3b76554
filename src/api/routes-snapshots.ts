/** /v1/instances/{name}/snapshots: snapshots of all of an instance's disks at one instant, with its RAM when asked. */
import type { FastifyInstance, FastifyPluginAsync } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { errors, NameParams } from './schemas-common.js';
import { CreateSnapshotBody, InstanceSnapParams, InstanceSnapshot, InstanceSnapshotDeleted, InstanceSnapshotList, RestoreSnapshotBody, SnapshotRestored } from './schemas-snapshots.js';
import type { Services } from './services.js';

const tags = ['snapshots'];

export function snapshotRoutes(svc: Services): FastifyPluginAsync {
  return async (base: FastifyInstance) => {
    const app = base.withTypeProvider<TypeBoxTypeProvider>();
    app.get(
      '/v1/instances/:name/snapshots',
      { schema: { operationId: 'listInstanceSnapshots', tags, summary: 'An instance\'s snapshots', params: NameParams, response: { 200: InstanceSnapshotList, ...errors } } },
      async (req) => ({ snapshots: svc.snapshots.list(req.params.name) }),
    );
    app.post(
      '/v1/instances/:name/snapshots',
      {
        schema: {
          operationId: 'createInstanceSnapshot', tags,
          summary: 'Snapshot every disk at one instant (running: frozen by the guest agent when it answers; memory: the RAM and device state too)',
          params: NameParams, body: CreateSnapshotBody, response: { 201: InstanceSnapshot, ...errors },
        },
      },
      async (req, reply) => reply.status(201).send(await svc.snapshots.create(req.params.name, req.body.name, { memory: req.body.memory === true })),
    );
    app.post(
      '/v1/instances/:name/snapshots/:snap/restore',
      {
        schema: {
          operationId: 'restoreInstanceSnapshot', tags,
          summary: 'Restore a snapshot (refused while the instance runs, unless force): a memory snapshot leaves the guest running, a disk-only one leaves the instance stopped',
          params: InstanceSnapParams, body: RestoreSnapshotBody, response: { 200: SnapshotRestored, ...errors },
        },
      },
      async (req) => svc.snapshots.restore(req.params.name, req.params.snap, { force: req.body?.force === true }),
    );
    app.delete(
      '/v1/instances/:name/snapshots/:snap',
      { schema: { operationId: 'deleteInstanceSnapshot', tags, summary: 'Delete a snapshot from every disk', params: InstanceSnapParams, response: { 200: InstanceSnapshotDeleted, ...errors } } },
      async (req) => {
        await svc.snapshots.delete(req.params.name, req.params.snap);
        return { deleted: req.params.snap, instance: req.params.name };
      },
    );
  };
}
