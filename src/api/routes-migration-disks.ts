/**
 * /v1/instances/NAME/migration/disks and /migration/image: a host's side of moving an instance's local disks in a
 * live migration, which a cluster controller drives (src/cluster/migration-disks.ts; services/migration-disks.ts
 * says what each step does). The image routes carry the root overlay's base image to a destination that lacks it:
 * the source sends each file as it is, the destination receives them into its image store (sha256 checked) and
 * commits the image whole.
 */
import { createReadStream, statSync } from 'node:fs';
import type { FastifyInstance, FastifyPluginAsync } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import { CorralError } from '../core/errors.js';
import { errors, NameParams, nullable } from './schemas-common.js';
import { parseRole } from '../services/image-transfer.js';
import type { MigrationDiskService } from '../services/migration-disks.js';
import type { Services } from './services.js';
import { acceptStreamedBody, streamedBody } from './upload-body.js';
import { TlsMaterial } from './routes-migration.js';
import { migrationTlsMaterial } from '../core/migration-transport.js';

const tags = ['instances'];

const Disk = Type.Object({
  id: Type.String(), node: Type.String(), role: Type.String({ description: 'root or volume' }), volume: Type.Optional(Type.String()),
  format: Type.String(), virtualSize: Type.Number(), sync: Type.String({ description: 'top (the root overlay over the same base image) or full' }),
});
const Image = Type.Object({
  name: Type.String(), kind: Type.String(), format: Type.String(), digest: Type.String({ description: 'sha256 over each file\'s role and sha256' }),
  files: Type.Array(Type.Object({ role: Type.String(), size: Type.Number(), sha256: Type.String() })),
});
const ImageRecordFields = Type.Object({ cmdline: Type.Optional(Type.String()), createdAt: Type.String(), source: Type.String() });
const Facts = Type.Object({ disks: Type.Array(Disk), image: nullable(Image), imageRecord: nullable(ImageRecordFields) }, { title: 'MigrationDiskFacts' });
const Check = Type.Object({ volumesTaken: Type.Array(Type.String()), image: nullable(Image) }, { title: 'MigrationDiskCheck' });
export const MirrorFigures = Type.Object({
  status: Type.String({ description: 'copying, ready, failed, cancelled or none' }), doneBytes: Type.Number(), totalBytes: Type.Number(),
  disks: Type.Array(Type.Object({
    disk: Type.String(), volume: nullable(Type.String()), status: Type.String(), doneBytes: Type.Number(), totalBytes: Type.Number(), ready: Type.Boolean(),
    error: nullable(Type.String()),
  })),
  error: nullable(Type.String()),
}, { title: 'MirrorFigures' });
const MirrorBody = Type.Object({
  host: Type.String({ description: 'the destination\'s address, as its incoming answered' }), port: Type.Integer(),
  speed: Type.Optional(Type.Integer({ description: 'bytes per second for each mirror (the migration\'s bandwidth)' })),
  tls: Type.Optional(TlsMaterial),
});
const RoleParams = Type.Object({ name: Type.String(), role: Type.String({ description: 'disk, kernel or initrd' }) }, { additionalProperties: false });
const Binary = { description: 'the file\'s bytes', content: { 'application/octet-stream': { schema: Type.Unsafe<Buffer>({ type: 'string', format: 'binary' }) } } };

export function migrationDiskRoutes(svc: Services): FastifyPluginAsync {
  return async (base: FastifyInstance) => {
    const app = base.withTypeProvider<TypeBoxTypeProvider>();
    const disks = (): MigrationDiskService => {
      if (!svc.migrationDisks) throw new CorralError('NOT_MIGRATABLE', 'this host does not move local disks');
      return svc.migrationDisks;
    };
    // an image file comes as it is: the body is the request's stream, never buffered (no body limit applies)
    acceptStreamedBody(app, 'application/octet-stream');

    app.get('/v1/instances/:name/migration/disks', {
      schema: { operationId: 'migrationDiskFacts', tags, summary: 'The local disks that move with the instance (size, format) and its root overlay\'s base image', params: NameParams, response: { 200: Facts, ...errors } },
    }, async (req) => disks().facts(req.params.name));
    app.post('/v1/instances/:name/migration/disks/check', {
      schema: {
        operationId: 'migrationDiskCheck', tags, summary: 'A destination\'s answers before anything moves: volume names taken here, its copy of the base image, room for the disks',
        params: NameParams, body: Type.Object({ disks: Type.Array(Type.Unknown()), image: Type.Unknown({ description: 'the base image\'s identity as the source says, or null' }) }), response: { 200: Check, ...errors },
      },
    }, async (req) => disks().check(req.body));
    app.post('/v1/instances/:name/migration/disks/mirror', {
      schema: { operationId: 'migrationDiskMirror', tags, summary: 'Mirror each local disk into the destination\'s NBD exports', params: NameParams, body: MirrorBody, response: { 200: MirrorFigures, ...errors } },
    }, async (req) => {
      // the source's side of the migration's TLS pair: the NBD clients use it, then the RAM's migration (made once)
      const service = disks();
      const material = migrationTlsMaterial(req.body.tls);
      const ids = material ? await svc.migration.tls.setup(req.params.name, 'client', material) : null;
      return service.mirror(req.params.name, req.body, ids ? { creds: ids.creds, hostname: ids.hostname } : undefined);
    });
    app.get('/v1/instances/:name/migration/disks/mirror', {
      schema: { operationId: 'migrationDiskMirrorStatus', tags, summary: 'The mirrors\' figures (bytes done and total per disk, ready or not)', params: NameParams, response: { 200: MirrorFigures, ...errors } },
    }, async (req) => disks().mirrorStatus(req.params.name));
    app.post('/v1/instances/:name/migration/disks/complete', {
      schema: {
        operationId: 'migrationDiskComplete', tags, summary: 'After the switch-over: end each ready mirror gracefully (the destination\'s disks then equal the source\'s)',
        params: NameParams, response: { 200: Type.Object({ bytes: Type.Number(), ms: Type.Number() }), ...errors },
      },
    }, async (req) => disks().complete(req.params.name));
    app.post('/v1/instances/:name/migration/disks/abort', {
      schema: {
        operationId: 'migrationDiskAbort', tags, summary: 'A given-up migration: remove the disks, volumes and image made here for it (once the instance is deleted here)',
        params: NameParams, response: { 200: Type.Object({ aborted: Type.String() }), ...errors },
      },
    }, async (req) => {
      await disks().abortIncoming(req.params.name);
      return { aborted: req.params.name };
    });

    app.get('/v1/instances/:name/migration/image/:role', {
      schema: { operationId: 'migrationImageFile', tags, summary: 'A file of the instance\'s base image, as it is (for a destination that lacks the image)', params: RoleParams, response: { 200: Binary, ...errors } },
    }, async (req, reply) => {
      const path = disks().imageFile(req.params.name, parseRole(req.params.role));
      return reply.type('application/octet-stream').header('content-length', statSync(path).size).send(createReadStream(path));
    });
    app.post('/v1/instances/:name/migration/image', {
      schema: {
        operationId: 'migrationImageBegin', tags, summary: 'Begin receiving a base image for an incoming migration (missing here, room checked)',
        params: NameParams, body: Type.Object({ image: Image }), response: { 200: Type.Object({ image: Type.String() }), ...errors },
      },
    }, async (req) => {
      disks().imageBegin(req.params.name, req.body.image as never);
      return { image: req.body.image.name };
    });
    app.put('/v1/instances/:name/migration/image/:role', {
      schema: {
        operationId: 'migrationImageReceive', tags, summary: 'Receive a file of the image begun (its size and sha256 checked as it is written)',
        params: RoleParams, response: { 200: Type.Object({ sha256: Type.String(), size: Type.Number() }), ...errors },
      },
    }, async (req) => {
      const body = streamedBody(req, 'the file\'s bytes (application/octet-stream)');
      return disks().imageReceive(req.params.name, parseRole(req.params.role), body);
    });
    app.post('/v1/instances/:name/migration/image/commit', {
      schema: {
        operationId: 'migrationImageCommit', tags, summary: 'Commit the image received (its disk inspected as an import is)',
        params: NameParams, body: ImageRecordFields,
        response: { 200: Type.Object({ image: Type.String(), virtualSize: Type.Number() }), ...errors },
      },
    }, async (req) => {
      const img = await disks().imageCommit(req.params.name, req.body as never);
      return { image: img.name, virtualSize: img.virtualSize };
    });
  };
}
