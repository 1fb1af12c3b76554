/** /v1/instances/{name}/nics: an instance's network interfaces, every model, live attach and detach. */
import type { FastifyInstance, FastifyPluginAsync } from 'fastify';
import { Type, type Static } from '@sinclair/typebox';
import { ErrorBody, NameParams } from './schemas.js';
import type { Services } from './services.js';

export const AttachNicBody = Type.Object(
  {
    network: Type.Optional(Type.String({ description: 'network name (default: the user-mode network "default"); not for vhost-user-net or sriov' })),
    model: Type.Optional(Type.String({ description: 'virtio-net (default), e1000, rtl8139, vhost-net, vhost-user-net or sriov' })),
    queues: Type.Optional(Type.Integer({ description: 'queue pairs (virtio models on a bridge network or vhost-user)' })),
    socket: Type.Optional(Type.String({ description: 'vhost-user-net: the back end\'s unix socket' })),
    pf: Type.Optional(Type.String({ description: 'sriov: the physical function (PCI address) to take a VF of' })),
    vlan: Type.Optional(Type.Integer({ description: 'sriov: VLAN id set on the VF' })),
    mac: Type.Optional(Type.String({ description: 'MAC address (default: a stable one derived from the instance)' })),
    forwards: Type.Optional(Type.Array(Type.String(), { description: 'user network: [tcp|udp:][ADDR:]HOSTPORT:GUESTPORT' })),
  },
  { additionalProperties: false },
);
export const NicParams = Type.Object({ name: Type.String(), nic: Type.String({ description: 'NIC id (net0, net1, ...) or MAC' }) }, { additionalProperties: false });

const errors = { 400: ErrorBody, 404: ErrorBody, 409: ErrorBody };

export function nicRoutes(svc: Services): FastifyPluginAsync {
  return async (app: FastifyInstance) => {
    app.get<{ Params: Static<typeof NameParams> }>(
      '/v1/instances/:name/nics',
      { schema: { summary: 'Network interfaces of an instance', params: NameParams, response: errors } },
      async (req) => ({ nics: svc.nics.list(req.params.name) }),
    );
    app.post<{ Params: Static<typeof NameParams>; Body: Static<typeof AttachNicBody> }>(
      '/v1/instances/:name/nics',
      { schema: { summary: 'Attach a NIC (stopped: recorded for the next start; running: hot-plugged)', params: NameParams, body: AttachNicBody, response: errors } },
      async (req, reply) => reply.status(201).send({ nics: await svc.nics.attach(req.params.name, req.body) }),
    );
    app.delete<{ Params: Static<typeof NicParams> }>(
      '/v1/instances/:name/nics/:nic',
      { schema: { summary: 'Detach a NIC (running: hot-unplugged, its tap removed)', params: NicParams, response: errors } },
      async (req) => ({ nics: await svc.nics.detach(req.params.name, req.params.nic) }),
    );
  };
}
