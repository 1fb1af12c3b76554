/**
 * /v1/images: list, import and build-tiny. Long operations answer with a stream of JSON lines
 * (application/x-ndjson): {"type":"progress",...} lines, then {"type":"result","image":...} or
 * {"type":"error","error":{...}}. Input is checked before the stream starts, so bad input is a plain 400.
 */
import type { FastifyInstance, FastifyPluginAsync, FastifyReply } from 'fastify';
import { PassThrough } from 'node:stream';
import { existsSync, statSync } from 'node:fs';
import type { Static } from '@sinclair/typebox';
import { Type } from '@sinclair/typebox';
import { CorralError, isCorralError } from '../core/errors.js';
import { validateName } from '../core/spec.js';
import type { ImageRecord, Progress } from '../storage/images.js';
import { BuildTinyBody, ErrorBody, ImportImageBody, NameParams } from './schemas.js';
import type { Services } from './services.js';

function streamJob(reply: FastifyReply, job: (progress: Progress) => Promise<ImageRecord>): FastifyReply {
  const out = new PassThrough();
  const line = (o: unknown): void => {
    out.write(`${JSON.stringify(o)}\n`);
  };
  void reply.type('application/x-ndjson').send(out);
  job((ev) => line({ type: 'progress', ...ev }))
    .then((image) => line({ type: 'result', image }))
    .catch((e: unknown) => line({ type: 'error', ...(isCorralError(e) ? e : new CorralError('INTERNAL', (e as Error).message)).toJSON() }))
    .finally(() => out.end());
  return reply;
}

export function imageRoutes(svc: Services): FastifyPluginAsync {
  return async (app: FastifyInstance) => {
    app.get('/v1/images', { schema: { summary: 'List images' } }, async () => ({ images: svc.images.list() }));

    app.get<{ Params: Static<typeof NameParams> }>('/v1/images/:name', { schema: { params: NameParams, response: { 404: ErrorBody } } }, async (req) =>
      svc.images.get(req.params.name),
    );

    app.delete<{ Params: Static<typeof NameParams> }>('/v1/images/:name', { schema: { params: NameParams } }, async (req) => {
      svc.images.remove(req.params.name);
      return { deleted: req.params.name };
    });

    app.post<{ Body: Static<typeof ImportImageBody> }>(
      '/v1/images',
      { schema: { summary: 'Import a disk image from a file on the host (streams progress as JSON lines)', body: ImportImageBody, response: { 400: ErrorBody, 409: ErrorBody } } },
      async (req, reply) => {
        const { name, file, format } = req.body;
        validateName('name', name);
        if (!file.startsWith('/') || !existsSync(file) || !statSync(file).isFile()) {
          throw new CorralError('INVALID_SPEC', `file: "${file}" is not an absolute path to a regular file`, { field: 'file' });
        }
        if (svc.images.list().some((i) => i.name === name)) throw new CorralError('ALREADY_EXISTS', `image "${name}" already exists`, { field: 'name' });
        return streamJob(reply, (p) => svc.images.import(name, file, format, p));
      },
    );

    app.post<{ Body: Static<typeof BuildTinyBody> }>(
      '/v1/images/build-tiny',
      { schema: { summary: 'Build the tiny guest image from Debian packages (streams progress as JSON lines)', body: BuildTinyBody, response: { 200: Type.Any() } } },
      async (req, reply) => streamJob(reply, (p) => svc.images.buildTiny(req.body?.force ?? false, p)),
    );
  };
}
