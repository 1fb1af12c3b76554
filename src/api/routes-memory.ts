/** /v1/instances/{name}/memory: memory statistics and the memory map (GET), live resize (POST {size}). */
import type { FastifyInstance, FastifyPluginAsync } from 'fastify';
import { Type, type Static } from '@sinclair/typebox';
import { ErrorBody, NameParams, Size } from './schemas.js';
import type { Services } from './services.js';

const errors = { 400: ErrorBody, 404: ErrorBody, 409: ErrorBody, 500: ErrorBody };
const ResizeBody = Type.Object(
  { size: Size },
  { additionalProperties: false },
);

export function memoryRoutes(svc: Services): FastifyPluginAsync {
  return async (app: FastifyInstance) => {
    app.get<{ Params: Static<typeof NameParams> }>(
      '/v1/instances/:name/memory',
      {
        schema: {
          summary: 'Memory of a running instance: configured, guest-visible, host-resident, guest-reported, and the guest-physical -> host-virtual map with residency',
          params: NameParams, response: errors,
        },
      },
      async (req) => svc.memory.stats(req.params.name),
    );
    app.post<{ Params: Static<typeof NameParams>; Body: Static<typeof ResizeBody> }>(
      '/v1/instances/:name/memory',
      {
        schema: {
          summary: 'Resize an instance\'s memory. Running: virtio-mem above the boot size (up to maxMemory), the balloon at or below it; kept as the instance memory. Stopped: the boot size of the next start ({name, memory, state})',
          params: NameParams, body: ResizeBody, response: errors,
        },
      },
      async (req) => svc.memory.resizeMemory(req.params.name, req.body.size),
    );
  };
}
