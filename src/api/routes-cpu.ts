/** /v1/instances/{name}/cpu (vCPU statistics) and /v1/instances/{name}/cpus (vCPU hotplug). */
import type { FastifyInstance, FastifyPluginAsync } from 'fastify';
import { Type, type Static } from '@sinclair/typebox';
import { ErrorBody, NameParams } from './schemas.js';
import type { Services } from './services.js';

const errors = { 400: ErrorBody, 404: ErrorBody, 409: ErrorBody, 500: ErrorBody };
export const ResizeCpusBody = Type.Object({ count: Type.Integer({ description: 'vCPUs the running guest should have (at most maxCpus)' }) }, { additionalProperties: false });

export function cpuRoutes(svc: Services): FastifyPluginAsync {
  return async (app: FastifyInstance) => {
    app.get<{ Params: Static<typeof NameParams> }>(
      '/v1/instances/:name/cpu',
      { schema: { summary: 'vCPU threads, host CPU time, last CPU, affinity, cgroup values and VM exits (KVM only)', params: NameParams, response: errors } },
      async (req) => svc.cpu.stats(req.params.name),
    );
    app.post<{ Params: Static<typeof NameParams>; Body: Static<typeof ResizeCpusBody> }>(
      '/v1/instances/:name/cpus',
      { schema: { summary: 'Hotplug vCPUs up to maxCpus (a stopped instance stores the count for its next start)', params: NameParams, body: ResizeCpusBody, response: errors } },
      async (req) => svc.cpu.resizeCpus(req.params.name, req.body.count),
    );
  };
}
