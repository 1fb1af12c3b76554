/** /v1/networks: the built-in `default` user network and bridge networks (bridge + DHCP + isolation/NAT). */
import type { FastifyInstance, FastifyPluginAsync } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Deleted, errors, NameParams } from './schemas-common.js';
import { CreateNetworkBody, Network, NetworkDetails, NetworkList } from './schemas-network.js';
import type { Services } from './services.js';

export { CreateNetworkBody };

export function networkRoutes(svc: Services): FastifyPluginAsync {
  return async (base: FastifyInstance) => {
    const app = base.withTypeProvider<TypeBoxTypeProvider>();
    const n = svc.networks;
    app.get(
      '/v1/networks',
      { schema: { operationId: 'listNetworks', tags: ['networks'], summary: 'List networks (default first)', response: { 200: NetworkList, 401: errors[401], 500: errors[500] } } },
      async () => ({ networks: n.list() }),
    );

    app.post(
      '/v1/networks',
      {
        schema: {
          operationId: 'createNetwork', tags: ['networks'], summary: 'Create a network (bridge: a Linux bridge with DHCP, isolation and optional NAT)',
          body: CreateNetworkBody, response: { 201: Network, ...errors },
        },
      },
      async (req, reply) => reply.status(201).send(await n.create(req.body)),
    );

    app.get(
      '/v1/networks/:name',
      {
        schema: {
          operationId: 'getNetwork', tags: ['networks'], summary: 'A network with its bridge, dnsmasq and DHCP leases',
          params: NameParams, response: { 200: NetworkDetails, ...errors },
        },
      },
      async (req) => n.get(req.params.name),
    );

    app.delete(
      '/v1/networks/:name',
      {
        schema: {
          operationId: 'deleteNetwork', tags: ['networks'], summary: 'Delete a network (refused while instances use it; default cannot be deleted)',
          params: NameParams, response: { 200: Deleted, ...errors },
        },
      },
      async (req) => {
        await n.delete(req.params.name);
        return { deleted: req.params.name };
      },
    );
  };
}
