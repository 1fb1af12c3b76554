/** /v1/instances/{name}/history: the short history behind the charts; /v1/history: the latest memory of each, summed. */
import type { FastifyInstance, FastifyPluginAsync } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { errors, NameParams } from './schemas-common.js';
import { HistoryQuery, HistorySummary, InstanceHistory } from './schemas-history.js';
import { reclaimed } from '../services/history.js';
import type { Services } from './services.js';

export function historyRoutes(svc: Pick<Services, 'instances' | 'history'>): FastifyPluginAsync {
  return async (base: FastifyInstance) => {
    const app = base.withTypeProvider<TypeBoxTypeProvider>();
    app.get(
      '/v1/instances/:name/history',
      {
        schema: {
          operationId: 'getInstanceHistory', tags: ['history'],
          summary: 'The instance\'s recent samples (every 5 s, an hour kept): vCPU time and CPU %, resident, configured and balloon memory, disk and NIC bytes and bytes/s',
          params: NameParams, querystring: HistoryQuery, response: { 200: InstanceHistory, ...errors },
        },
      },
      async (req) => {
        const row = svc.instances.rowOf(req.params.name);
        const h = svc.history;
        return { name: row.name, stepMs: h.stepMs, capacity: h.capacity, series: h.series(row.uuid, req.query.since), nicSources: h.nicSources(row.uuid) };
      },
    );
    app.get(
      '/v1/history',
      {
        schema: {
          operationId: 'getHistorySummary', tags: ['history'],
          summary: 'The latest memory figures of each running instance, and the memory reclaimed from them (configured less guest RAM resident; the balloons\' share of it)',
          response: { 200: HistorySummary, 401: errors[401], 500: errors[500] },
        },
      },
      async () => {
        const h = svc.history;
        const latest = h.latestMemory();
        return { stepMs: h.stepMs, capacity: h.capacity, passMs: h.lastPassMs, instances: latest, reclaimed: reclaimed(latest) };
      },
    );
  };
}
