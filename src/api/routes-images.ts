/**
 * /v1/images: list, import (a file on the host, or an upload: POST /v1/images/:name/upload?format=, the body the
 * file as application/octet-stream) and build-tiny. Long operations answer with a stream of JSON lines
 * (application/x-ndjson): {"type":"progress",...} lines, then {"type":"result","image":...} or
 * {"type":"error","error":{...}}. Input is checked before the stream starts, so bad input is a plain 400.
 */
import type { FastifyInstance, FastifyPluginAsync } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import { existsSync, statSync } from 'node:fs';
import { CorralError } from '../core/errors.js';
import { validateName } from '../core/spec.js';
import { Deleted, E, errors, NameParams } from './schemas-common.js';
import { BuildTinyBody, Image, ImageJobLine, ImageList, ImgFormat, ImportImageBody } from './schemas-storage.js';
import type { Services } from './services.js';
import { streamJob } from './job-stream.js';
import { acceptStreamedBody, declaredLength, streamedBody, streamUploadJob } from './upload-body.js';

/** A job's reply: a stream of JSON lines, each an ImageJobLine. */
const jobStream = {
  description: 'JSON lines: progress lines, then one result (the image) or one error',
  content: { 'application/x-ndjson': { schema: ImageJobLine } },
};

export function imageRoutes(svc: Services): FastifyPluginAsync {
  return async (base: FastifyInstance) => {
    const app = base.withTypeProvider<TypeBoxTypeProvider>();
    const tags = ['images'];
    app.get(
      '/v1/images',
      { schema: { operationId: 'listImages', tags, summary: 'List images', response: { 200: ImageList, 401: errors[401], 500: errors[500] } } },
      async () => ({ images: svc.images.list() }),
    );

    app.get(
      '/v1/images/:name',
      { schema: { operationId: 'getImage', tags, summary: 'Show an image', params: NameParams, response: { 200: Image, ...errors } } },
      async (req) => svc.images.get(req.params.name),
    );

    app.delete(
      '/v1/images/:name',
      { schema: { operationId: 'deleteImage', tags, summary: 'Delete an image (refused while instances use it)', params: NameParams, response: { 200: Deleted, ...errors } } },
      async (req) => {
        svc.images.remove(req.params.name);
        return { deleted: req.params.name };
      },
    );

    app.post(
      '/v1/images',
      {
        schema: {
          operationId: 'importImage', tags, summary: 'Import a disk image from a file on the host (streams progress as JSON lines)',
          body: ImportImageBody, response: { 200: jobStream, ...errors },
        },
      },
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

    // an image's file comes as it is: the request's stream, never buffered (upload-body.ts)
    acceptStreamedBody(app, 'application/octet-stream');
    app.post(
      '/v1/images/:name/upload',
      {
        schema: {
          operationId: 'uploadImage', tags,
          summary: 'Import a disk image from the request body (application/octet-stream, with its Content-Length; at most CORRAL_UPLOAD_MAX): staged in the data dir, then imported as a host file is (streams progress as JSON lines)',
          params: NameParams, querystring: Type.Object({ format: ImgFormat }, { additionalProperties: false }),
          response: { 200: jobStream, ...errors, 413: E[413] },
        },
      },
      async (req, reply) => {
        const body = streamedBody(req, 'the image file (content-type application/octet-stream)');
        const { name } = req.params;
        const { format } = req.query;
        const length = svc.images.checkUpload(name, format, declaredLength(req));
        return streamUploadJob(reply, body, (p) => svc.images.upload(name, format, body, length, p), 'image');
      },
    );

    app.post(
      '/v1/images/build-tiny',
      {
        schema: {
          operationId: 'buildTinyImage', tags, summary: 'Build the tiny guest image from Debian packages (streams progress as JSON lines)',
          body: BuildTinyBody, response: { 200: jobStream, ...errors },
        },
      },
      async (req, reply) => streamJob(reply, (p) => svc.images.buildTiny(req.body?.force ?? false, p)),
    );
  };
}
