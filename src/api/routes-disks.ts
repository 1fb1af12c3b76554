/** /v1/instances/{name}/disks: volumes attached to an instance as disks (virtio-blk, virtio-scsi, ide, sata, vhost-user-blk). */
import type { FastifyInstance, FastifyPluginAsync } from 'fastify';
import { Type, type Static } from '@sinclair/typebox';
import { ErrorBody, NameParams } from './schemas.js';
import type { Services } from './services.js';

export const AttachDiskBody = Type.Object(
  {
    volume: Type.String({ description: 'name of a volume in the default pool' }),
    bus: Type.Optional(Type.String({ description: 'virtio-blk (default, paravirtual), virtio-scsi (paravirtual), ide or sata (emulated; no hotplug), vhost-user-blk (served by a qemu-storage-daemon; the guest memory becomes a shared memfd)' })),
  },
  { additionalProperties: false },
);
export const DiskParams = Type.Object({ name: Type.String(), volume: Type.String() }, { additionalProperties: false });

const errors = { 400: ErrorBody, 404: ErrorBody, 409: ErrorBody };

export function diskRoutes(svc: Services): FastifyPluginAsync {
  return async (app: FastifyInstance) => {
    app.get<{ Params: Static<typeof NameParams> }>(
      '/v1/instances/:name/disks',
      { schema: { summary: 'Volumes attached to an instance', params: NameParams, response: errors } },
      async (req) => ({ disks: svc.disks.list(req.params.name) }),
    );
    app.post<{ Params: Static<typeof NameParams>; Body: Static<typeof AttachDiskBody> }>(
      '/v1/instances/:name/disks',
      { schema: { summary: 'Attach a volume (stopped: recorded for the next start; running: hot-plugged on virtio-blk, virtio-scsi, or vhost-user-blk when its memory is shared)', params: NameParams, body: AttachDiskBody, response: errors } },
      async (req, reply) => reply.status(201).send({ disks: await svc.disks.attach(req.params.name, req.body.volume, req.body.bus) }),
    );
    app.delete<{ Params: Static<typeof DiskParams> }>(
      '/v1/instances/:name/disks/:volume',
      { schema: { summary: 'Detach a volume (running: hot-unplugged; the volume itself is kept)', params: DiskParams, response: errors } },
      async (req) => ({ disks: await svc.disks.detach(req.params.name, req.params.volume) }),
    );
  };
}
