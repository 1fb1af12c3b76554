/** /v1/instances/{name}/hostdevs: host PCI devices given to an instance whole (VFIO), and its SR-IOV VFs. */
import type { FastifyInstance, FastifyPluginAsync } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { errors, NameParams } from './schemas-common.js';
import { AttachHostdevBody, HostdevList, HostdevParams } from './schemas-host.js';
import type { Services } from './services.js';

export { AttachHostdevBody, HostdevParams };

export function passthroughRoutes(svc: Services): FastifyPluginAsync {
  return async (base: FastifyInstance) => {
    const app = base.withTypeProvider<TypeBoxTypeProvider>();
    app.get(
      '/v1/instances/:name/hostdevs',
      {
        schema: {
          operationId: 'listInstanceHostdevs', tags: ['passthrough'],
          summary: 'Host PCI devices of an instance: passthrough devices, and the VFs of its SR-IOV NICs',
          params: NameParams, response: { 200: HostdevList, ...errors },
        },
      },
      async (req) => ({ hostdevs: svc.passthrough.list(req.params.name) }),
    );
    app.post(
      '/v1/instances/:name/hostdevs',
      {
        schema: {
          operationId: 'attachInstanceHostdev', tags: ['passthrough'],
          summary: 'Give a host PCI device to a stopped instance (its whole IOMMU group goes to vfio-pci at each start, back to its drivers at stop)',
          params: NameParams, body: AttachHostdevBody, response: { 201: HostdevList, ...errors },
        },
      },
      async (req, reply) => reply.status(201).send({ hostdevs: await svc.passthrough.attach(req.params.name, req.body.address) }),
    );
    app.delete(
      '/v1/instances/:name/hostdevs/:hostdev',
      {
        schema: {
          operationId: 'detachInstanceHostdev', tags: ['passthrough'], summary: 'Take a passthrough device from a stopped instance',
          params: HostdevParams, response: { 200: HostdevList, ...errors },
        },
      },
      async (req) => ({ hostdevs: await svc.passthrough.detach(req.params.name, req.params.hostdev) }),
    );
  };
}
