/**
 * Copies, archives and images made from instances (services/copies.ts, export.ts, import-archive.ts). The long ones
 * answer with JSON lines (application/x-ndjson) as image jobs do: progress lines, then one result or one error.
 * - POST /v1/instances/:name/copy {name, full?, snapshots?}: a new stopped instance (with snapshots: its disks whole
 *   with their snapshots and the records, a stopped source only);
 * - POST /v1/instances/:name/publish {image}: a new image from a stopped instance's root disk (admin);
 * - POST /v1/instances/:name/export: prepares the archive (result: its id and size), then
 *   GET /v1/exports/:id is the archive itself (application/x-tar, with its length; gone once downloaded);
 * - POST /v1/instances/import[?name=NEW]: the archive as the request body (application/x-tar, streamed, never
 *   buffered), checked whole before anything is made.
 */
import type { FastifyInstance, FastifyPluginAsync } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import { CorralError } from '../core/errors.js';
import { validateName } from '../core/names.js';
import type { CopyService } from '../services/copies.js';
import type { ExportService } from '../services/export.js';
import type { ArchiveImporter } from '../services/import-archive.js';
import { ErrorBody, NameParams, errors } from './schemas-common.js';
import { streamJob } from './job-stream.js';
import type { Services } from './services.js';
import { acceptStreamedBody, declaredLength, streamedBody, streamUploadJob } from './upload-body.js';

const tags = ['instances'];
const JobLine = Type.Union([
  Type.Object({ type: Type.Literal('progress'), step: Type.String(), message: Type.String(), percent: Type.Optional(Type.Number()) }),
  Type.Object({ type: Type.Literal('result') }, { additionalProperties: true, description: 'the result under `instance`, `image` or `export`' }),
  Type.Object({ type: Type.Literal('error'), error: ErrorBody.properties.error }),
], { title: 'CopyJobLine' });
const jobStream = (what: string) => ({ description: `JSON lines: progress lines, then one result (${what}) or one error`, content: { 'application/x-ndjson': { schema: JobLine } } });
const TarBody = { description: 'the archive (a tar file)', content: { 'application/x-tar': { schema: Type.Unsafe<Buffer>({ type: 'string', format: 'binary' }) } } };

export function copyRoutes(svc: Services): FastifyPluginAsync {
  return async (base: FastifyInstance) => {
    const app = base.withTypeProvider<TypeBoxTypeProvider>();
    const need = <T>(s: T | undefined): T => {
      if (!s) throw new CorralError('UNSUPPORTED', 'this daemon does not make copies or archives');
      return s;
    };
    const copies = (): CopyService => need(svc.copies);
    const exports = (): ExportService => need(svc.exports);
    const importer = (): ArchiveImporter => need(svc.archiveImport);
    // an archive comes as it is: the body is the request's stream, never buffered (no body limit applies)
    acceptStreamedBody(app, 'application/x-tar');

    app.post('/v1/instances/:name/copy', {
      schema: {
        operationId: 'copyInstance', tags, summary: 'Copy an instance (linked to its image, or --full: flattened); a running one through a point-in-time backup',
        params: NameParams,
        body: Type.Object({
          name: Type.String({ description: 'the new instance' }), full: Type.Optional(Type.Boolean()),
          snapshots: Type.Optional(Type.Boolean({ description: 'carry the snapshots: the disks copied whole with them, and the records (a stopped instance only; not with full)' })),
        }, { additionalProperties: false }),
        response: { 200: jobStream('the new instance'), ...errors },
      },
    }, async (req, reply) => {
      validateName('name', req.body.name);
      svc.instances.rowOf(req.params.name);
      if (svc.instances.listRows().some((r) => r.name === req.body.name)) throw new CorralError('ALREADY_EXISTS', `instance "${req.body.name}" already exists`, { field: 'name' });
      const c = copies();
      return streamJob(reply, (p) => c.copy(req.params.name, req.body.name, { full: req.body.full === true, snapshots: req.body.snapshots === true }, p), 'instance');
    });

    app.post('/v1/instances/:name/publish', {
      schema: {
        operationId: 'publishInstance', tags: ['images'], summary: 'Make an image of a stopped instance\'s root disk (flattened, its sha256 recorded)',
        params: NameParams, body: Type.Object({ image: Type.String({ description: 'the new image' }) }, { additionalProperties: false }),
        response: { 200: jobStream('the image'), ...errors },
      },
    }, async (req, reply) => {
      validateName('image', req.body.image);
      svc.instances.rowOf(req.params.name);
      if (svc.images.list().some((i) => i.name === req.body.image)) throw new CorralError('ALREADY_EXISTS', `image "${req.body.image}" already exists`, { field: 'image' });
      const c = copies();
      return streamJob(reply, (p) => c.publish(req.params.name, req.body.image, p), 'image');
    });

    app.post('/v1/instances/:name/export', {
      schema: {
        operationId: 'exportInstance', tags, summary: 'Prepare an archive of an instance (a running one through a point-in-time backup); download it from /v1/exports/{id}',
        params: NameParams,
        body: Type.Union([Type.Object({
          snapshots: Type.Optional(Type.Boolean({ description: 'keep the disks whole (gzip-compressed) with their internal snapshots, and the snapshot records (a stopped instance only)' })),
        }, { additionalProperties: false }), Type.Null()]),
        response: { 200: jobStream('export: id, size, diskBytes, manifest'), ...errors },
      },
    }, async (req, reply) => {
      svc.instances.rowOf(req.params.name);
      const x = exports();
      const snapshots = req.body?.snapshots === true;
      return streamJob(reply, (p) => x.prepare(req.params.name, { snapshots }, p), 'export');
    });

    app.get('/v1/exports/:id', {
      schema: {
        operationId: 'downloadExport', tags, summary: 'The archive prepared by an export (once: it goes when the download ends)',
        params: Type.Object({ id: Type.String() }, { additionalProperties: false }), response: { 200: TarBody, ...errors },
      },
    }, async (req, reply) => {
      const a = exports().open(req.params.id);
      reply.raw.on('close', a.done);
      return reply.type('application/x-tar').header('content-length', a.size).send(a.stream);
    });

    app.post('/v1/instances/import', {
      schema: {
        operationId: 'importInstance', tags, summary: 'Make a stopped instance from an archive (the body), every checksum verified before anything is made',
        querystring: Type.Object({ name: Type.Optional(Type.String({ description: 'the new instance (default: the archive\'s)' })) }, { additionalProperties: false }),
        response: { 200: jobStream('the new instance'), ...errors },
      },
    }, async (req, reply) => {
      const body = streamedBody(req, 'the archive (content-type application/x-tar)');
      const name = req.query.name;
      if (name !== undefined) {
        validateName('name', name);
        if (svc.instances.listRows().some((r) => r.name === name)) throw new CorralError('ALREADY_EXISTS', `instance "${name}" already exists`, { field: 'name' });
      }
      const imp = importer();
      return streamUploadJob(reply, body, (p) => imp.import(body, name, declaredLength(req), p), 'instance');
    });
  };
}
