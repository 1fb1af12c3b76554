/** /v1/networks: the built-in `default` user network and bridge networks (bridge + DHCP + isolation/NAT). */
import type { FastifyInstance, FastifyPluginAsync } from 'fastify';
import { Type, type Static } from '@sinclair/typebox';
import { ErrorBody, NameParams } from './schemas.js';
import type { Services } from './services.js';

export const CreateNetworkBody = Type.Object(
  {
    name: Type.String({ description: 'DNS label: a-z, 0-9 and -, 1..63 characters' }),
    kind: Type.Optional(Type.Union([Type.Literal('user'), Type.Literal('bridge')], { description: 'default bridge' })),
    cidr: Type.Optional(Type.String({ description: 'bridge networks: IPv4 subnet, /8 to /29, e.g. 10.10.0.0/24' })),
    nat: Type.Optional(Type.Boolean({ description: 'bridge networks: masquerade out of the host (default true); false makes an isolated network' })),
  },
  { additionalProperties: false },
);

const errors = { 400: ErrorBody, 404: ErrorBody, 409: ErrorBody };

export function networkRoutes(svc: Services): FastifyPluginAsync {
  return async (app: FastifyInstance) => {
    const n = svc.networks;
    app.get('/v1/networks', { schema: { summary: 'List networks (default first)' } }, async () => ({ networks: n.list() }));

    app.post<{ Body: Static<typeof CreateNetworkBody> }>(
      '/v1/networks',
      { schema: { summary: 'Create a network (bridge: a Linux bridge with DHCP, isolation and optional NAT)', body: CreateNetworkBody, response: errors } },
      async (req, reply) => reply.status(201).send(await n.create(req.body)),
    );

    app.get<{ Params: Static<typeof NameParams> }>(
      '/v1/networks/:name',
      { schema: { summary: 'A network with its bridge, dnsmasq and DHCP leases', params: NameParams, response: errors } },
      async (req) => n.get(req.params.name),
    );

    app.delete<{ Params: Static<typeof NameParams> }>(
      '/v1/networks/:name',
      { schema: { summary: 'Delete a network (refused while instances use it; default cannot be deleted)', params: NameParams, response: errors } },
      async (req) => {
        await n.delete(req.params.name);
        return { deleted: req.params.name };
      },
    );
  };
}
