/** /v1/instances/{name}/disks: volumes attached to an instance as disks (virtio-blk, virtio-scsi, ide, sata, vhost-user-blk). */
import type { FastifyInstance, FastifyPluginAsync } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { errors, NameParams } from './schemas-common.js';
import { AttachDiskBody, DiskList, DiskParams } from './schemas-storage.js';
import type { Services } from './services.js';

export { AttachDiskBody, DiskParams };

export function diskRoutes(svc: Services): FastifyPluginAsync {
  return async (base: FastifyInstance) => {
    const app = base.withTypeProvider<TypeBoxTypeProvider>();
    app.get(
      '/v1/instances/:name/disks',
      { schema: { operationId: 'listInstanceDisks', tags: ['disks'], summary: 'Volumes attached to an instance', params: NameParams, response: { 200: DiskList, ...errors } } },
      async (req) => ({ disks: svc.disks.list(req.params.name) }),
    );
    app.post(
      '/v1/instances/:name/disks',
      {
        schema: {
          operationId: 'attachInstanceDisk', tags: ['disks'],
          summary: 'Attach a volume (stopped: recorded for the next start; running: hot-plugged on virtio-blk, virtio-scsi, or vhost-user-blk when its memory is shared)',
          params: NameParams, body: AttachDiskBody, response: { 201: DiskList, ...errors },
        },
      },
      async (req, reply) => reply.status(201).send({ disks: await svc.disks.attach(req.params.name, req.body.volume, req.body.bus) }),
    );
    app.delete(
      '/v1/instances/:name/disks/:volume',
      {
        schema: {
          operationId: 'detachInstanceDisk', tags: ['disks'], summary: 'Detach a volume (running: hot-unplugged; the volume itself is kept)',
          params: DiskParams, response: { 200: DiskList, ...errors },
        },
      },
      async (req) => ({ disks: await svc.disks.detach(req.params.name, req.params.volume) }),
    );
  };
}
