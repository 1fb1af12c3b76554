/** /v1/instances/{name}/memory: memory statistics and the memory map (GET), live resize (POST {size}). */
import type { FastifyInstance, FastifyPluginAsync } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import { errors, NameParams } from './schemas-common.js';
import { MemoryStats, ResizeMemoryBody, StoppedMemoryResize } from './schemas-compute.js';
import type { Services } from './services.js';

export function memoryRoutes(svc: Services): FastifyPluginAsync {
  return async (base: FastifyInstance) => {
    const app = base.withTypeProvider<TypeBoxTypeProvider>();
    app.get(
      '/v1/instances/:name/memory',
      {
        schema: {
          operationId: 'getInstanceMemory', tags: ['memory'],
          summary: 'Memory of a running instance: configured, guest-visible, host-resident, guest-reported, and the guest-physical -> host-virtual map with residency',
          params: NameParams, response: { 200: MemoryStats, ...errors },
        },
      },
      async (req) => svc.memory.stats(req.params.name),
    );
    app.post(
      '/v1/instances/:name/memory',
      {
        schema: {
          operationId: 'resizeInstanceMemory', tags: ['memory'],
          summary: 'Resize an instance\'s memory. Running: virtio-mem above the boot size (up to maxMemory), the balloon at or below it; kept as the instance memory. Stopped: the boot size of the next start ({name, memory, state})',
          params: NameParams, body: ResizeMemoryBody,
          response: { 200: Type.Union([MemoryStats, StoppedMemoryResize], { description: 'a running instance\'s memory now, or the size a stopped one starts with' }), ...errors },
        },
      },
      async (req) => svc.memory.resizeMemory(req.params.name, req.body.size),
    );
  };
}
