/** /v1/instances/{name}/hostdevs: host PCI devices given to an instance whole (VFIO), and its SR-IOV VFs. */
import type { FastifyInstance, FastifyPluginAsync } from 'fastify';
import { Type, type Static } from '@sinclair/typebox';
import { ErrorBody, NameParams } from './schemas.js';
import type { Services } from './services.js';

export const AttachHostdevBody = Type.Object(
  {
    address: Type.Union([
      Type.String({ description: 'PCI address of the host device, 0000:03:00.0 or 03:00.0', maxLength: 32 }),
      Type.Array(Type.String({ maxLength: 32 }), { minItems: 1, maxItems: 8, description: 'several devices at once (those of one IOMMU group that are all on host drivers)' }),
    ]),
  },
  { additionalProperties: false },
);
export const HostdevParams = Type.Object(
  { name: Type.String(), hostdev: Type.String({ description: 'the device id (hostdev0, ...) or its PCI address', maxLength: 32 }) },
  { additionalProperties: false },
);

const errors = { 400: ErrorBody, 404: ErrorBody, 409: ErrorBody };

export function passthroughRoutes(svc: Services): FastifyPluginAsync {
  return async (app: FastifyInstance) => {
    app.get<{ Params: Static<typeof NameParams> }>(
      '/v1/instances/:name/hostdevs',
      { schema: { summary: 'Host PCI devices of an instance: passthrough devices, and the VFs of its SR-IOV NICs', params: NameParams, response: errors } },
      async (req) => ({ hostdevs: svc.passthrough.list(req.params.name) }),
    );
    app.post<{ Params: Static<typeof NameParams>; Body: Static<typeof AttachHostdevBody> }>(
      '/v1/instances/:name/hostdevs',
      {
        schema: {
          summary: 'Give a host PCI device to a stopped instance (its whole IOMMU group goes to vfio-pci at each start, back to its drivers at stop)',
          params: NameParams, body: AttachHostdevBody, response: errors,
        },
      },
      async (req, reply) => reply.status(201).send({ hostdevs: await svc.passthrough.attach(req.params.name, req.body.address) }),
    );
    app.delete<{ Params: Static<typeof HostdevParams> }>(
      '/v1/instances/:name/hostdevs/:hostdev',
      { schema: { summary: 'Take a passthrough device from a stopped instance', params: HostdevParams, response: errors } },
      async (req) => ({ hostdevs: await svc.passthrough.detach(req.params.name, req.params.hostdev) }),
    );
  };
}
