/** /v1/vhost-user: the vhost-user back ends an admin registered; a vhost-user-net NIC names one of them. */
import type { FastifyInstance, FastifyPluginAsync } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Deleted, errors, NameParams } from './schemas-common.js';
import { CreateVhostUserBody, VhostUserBackend, VhostUserList } from './schemas-network.js';
import type { Services } from './services.js';

export { CreateVhostUserBody };

export function vhostUserRoutes(svc: Services): FastifyPluginAsync {
  return async (base: FastifyInstance) => {
    const app = base.withTypeProvider<TypeBoxTypeProvider>();
    const v = svc.vhostUser;
    app.get(
      '/v1/vhost-user',
      { schema: { operationId: 'listVhostUserBackends', tags: ['vhost-user'], summary: 'List registered vhost-user back ends', response: { 200: VhostUserList, 401: errors[401], 500: errors[500] } } },
      async () => ({ backends: v.list().map((b) => v.view(b)) }),
    );
    app.post(
      '/v1/vhost-user',
      {
        schema: {
          operationId: 'addVhostUserBackend', tags: ['vhost-user'], summary: 'Register a vhost-user back end (a DPDK/OVS socket) that vhost-user-net NICs may use',
          body: CreateVhostUserBody, response: { 201: VhostUserBackend, ...errors },
        },
      },
      async (req, reply) => reply.status(201).send(v.view(await v.add(req.body))),
    );
    app.get(
      '/v1/vhost-user/:name',
      {
        schema: {
          operationId: 'getVhostUserBackend', tags: ['vhost-user'], summary: 'A registered vhost-user back end, whether it listens, the NICs on it',
          params: NameParams, response: { 200: VhostUserBackend, ...errors },
        },
      },
      async (req) => v.view(v.get(req.params.name)),
    );
    app.delete(
      '/v1/vhost-user/:name',
      {
        schema: {
          operationId: 'removeVhostUserBackend', tags: ['vhost-user'], summary: 'Remove a vhost-user back end (refused while a NIC uses it)',
          params: NameParams, response: { 200: Deleted, ...errors },
        },
      },
      async (req) => {
        await v.remove(req.params.name);
        return { deleted: req.params.name };
      },
    );
  };
}
