/**
 * /v1/instances/{name}/nics: an instance's network interfaces, every model, live attach and detach;
 * /v1/instances/{name}/nic-stats: a running instance's NIC counters (the tap's, or the guest agent's).
 */
import type { FastifyInstance, FastifyPluginAsync } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { errors, NameParams } from './schemas-common.js';
import { AttachNicBody, NicList, NicParams, NicStats } from './schemas-network.js';
import type { Services } from './services.js';

export { AttachNicBody, NicParams };

export function nicRoutes(svc: Services): FastifyPluginAsync {
  return async (base: FastifyInstance) => {
    const app = base.withTypeProvider<TypeBoxTypeProvider>();
    app.get(
      '/v1/instances/:name/nics',
      { schema: { operationId: 'listInstanceNics', tags: ['nics'], summary: 'Network interfaces of an instance', params: NameParams, response: { 200: NicList, ...errors } } },
      async (req) => ({ nics: svc.nics.list(req.params.name) }),
    );
    app.get(
      '/v1/instances/:name/nic-stats',
      {
        schema: {
          operationId: 'getInstanceNicStats', tags: ['nics'],
          summary: 'Bytes and packets each NIC of a running instance received and sent, as the guest sees them, and their source (tap or guest-agent)',
          params: NameParams, response: { 200: NicStats, ...errors },
        },
      },
      async (req): Promise<NicStats> => {
        const { row, nics } = await svc.metrics.nics(req.params.name);
        return {
          name: row.name,
          nics: (row.spec.nics ?? []).map((n) => {
            const c = nics.find((x) => x.nic === n.id);
            return {
              nic: n.id, model: n.model, network: n.network, mac: n.mac, source: c?.source ?? null,
              rxBytes: c?.rxBytes ?? null, rxPackets: c?.rxPackets ?? null, txBytes: c?.txBytes ?? null, txPackets: c?.txPackets ?? null,
            };
          }),
        };
      },
    );
    app.post(
      '/v1/instances/:name/nics',
      {
        schema: {
          operationId: 'attachInstanceNic', tags: ['nics'], summary: 'Attach a NIC (stopped: recorded for the next start; running: hot-plugged)',
          params: NameParams, body: AttachNicBody, response: { 201: NicList, ...errors },
        },
      },
      async (req, reply) => reply.status(201).send({ nics: await svc.nics.attach(req.params.name, req.body) }),
    );
    app.delete(
      '/v1/instances/:name/nics/:nic',
      {
        schema: {
          operationId: 'detachInstanceNic', tags: ['nics'], summary: 'Detach a NIC (running: hot-unplugged, its tap removed)',
          params: NicParams, response: { 200: NicList, ...errors },
        },
      },
      async (req) => ({ nics: await svc.nics.detach(req.params.name, req.params.nic) }),
    );
  };
}
