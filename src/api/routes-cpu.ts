/** /v1/instances/{name}/cpu (vCPU statistics) and /v1/instances/{name}/cpus (vCPU hotplug). */
import type { FastifyInstance, FastifyPluginAsync } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import { errors, NameParams } from './schemas-common.js';
import { CpuStats, ResizeCpusBody, StoppedCpuResize } from './schemas-compute.js';
import type { Services } from './services.js';

export { ResizeCpusBody };

export function cpuRoutes(svc: Services): FastifyPluginAsync {
  return async (base: FastifyInstance) => {
    const app = base.withTypeProvider<TypeBoxTypeProvider>();
    app.get(
      '/v1/instances/:name/cpu',
      {
        schema: {
          operationId: 'getInstanceCpu', tags: ['cpu'],
          summary: 'vCPU threads, host CPU time, last CPU, affinity, cgroup values and VM exits (KVM only)',
          params: NameParams, response: { 200: CpuStats, ...errors },
        },
      },
      async (req) => svc.cpu.stats(req.params.name),
    );
    app.post(
      '/v1/instances/:name/cpus',
      {
        schema: {
          operationId: 'resizeInstanceCpus', tags: ['cpu'],
          summary: 'Hotplug vCPUs up to maxCpus (a stopped instance stores the count for its next start)',
          params: NameParams, body: ResizeCpusBody,
          response: { 200: Type.Union([CpuStats, StoppedCpuResize], { description: 'a running instance\'s vCPUs now, or the count a stopped one starts with' }), ...errors },
        },
      },
      async (req) => svc.cpu.resizeCpus(req.params.name, req.body.count),
    );
  };
}
