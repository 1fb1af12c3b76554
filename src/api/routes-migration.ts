/**
 * /v1/instances/NAME/migration: a host's side of a live migration, which a cluster controller drives
 * (src/cluster/migration.ts; services/migration.ts says what each step does).
 */
import type { FastifyInstance, FastifyPluginAsync } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import { CorralError } from '../core/errors.js';
import { errors, NameParams, nullable } from './schemas-common.js';
import { Instance } from './schemas-instances.js';
import type { Services } from './services.js';

const tags = ['instances'];
const n = nullable(Type.Number());
export const MigrationFigures = Type.Object({
  status: Type.String({ description: 'QEMU\'s: setup, active, device, completed, failed, cancelled ...' }),
  totalMs: n, downtimeMs: n, expectedDowntimeMs: n, setupMs: n, transferredBytes: n, remainingBytes: n, totalBytes: n,
  rate: nullable(Type.Number(), 'bytes per second'), dirtyRate: nullable(Type.Number(), 'bytes dirtied per second'), passes: n,
  error: nullable(Type.String()),
}, { title: 'MigrationFigures' });

/** A migration's TLS material for one side (core/migration-transport.ts); the key is handed to QEMU only */
export const TlsMaterial = Type.Object({
  caPem: Type.String({ description: 'the cluster CA' }), certPem: Type.String({ description: 'this side\'s certificate for this migration' }),
  keyPem: Type.String({ description: 'its key' }),
  peer: Type.String({ description: 'the destination: the distinguished name of the one client it lets in; the source: the host name the destination\'s certificate carries' }),
}, { title: 'MigrationTlsMaterial' });
const IncomingBody = Type.Object({
  uuid: Type.String(), spec: Type.Unknown({ description: 'the instance\'s whole configuration on its source host' }),
  address: Type.String({ description: 'the IP address of this host to receive on' }),
  tls: Type.Optional(TlsMaterial),
  postcopy: Type.Optional(Type.Boolean({ description: 'the source may switch to postcopy: checked here first, before anything moves (POSTCOPY_UNAVAILABLE)' })),
  disks: Type.Optional(Type.Array(Type.Unknown(), { description: 'the local disks that move (their size and format, as the source says): made here new and empty, exported over NBD' })),
});
const StartBody = Type.Object({
  uri: Type.String({ description: 'tcp:IP:PORT, as the destination\'s incoming answered' }),
  maxDowntimeMs: Type.Optional(Type.Integer()), bandwidth: Type.Optional(Type.Integer({ description: 'bytes per second' })),
  autoConverge: Type.Optional(Type.Boolean()),
  postcopy: Type.Optional(Type.Boolean({ description: 'set postcopy-ram: the controller may switch to postcopy (POST .../migration/postcopy)' })),
  tls: Type.Optional(TlsMaterial),
});

export function migrationRoutes(svc: Services): FastifyPluginAsync {
  return async (base: FastifyInstance) => {
    const app = base.withTypeProvider<TypeBoxTypeProvider>();
    const m = svc.migration;
    app.post('/v1/instances/:name/migration/incoming', {
      schema: {
        operationId: 'migrationIncoming', tags, summary: 'Receive a live migration: the instance started paused with -incoming, listening on the URI answered',
        params: NameParams, body: IncomingBody,
        response: { 201: Type.Object({ uri: Type.String(), instance: Instance, nbd: Type.Optional(Type.Object({ host: Type.String(), port: Type.Integer() }, { description: 'where the source mirrors the local disks to' })) }), ...errors },
      },
    }, async (req, reply) => reply.status(201).send(await m.incoming(req.params.name, req.body)));
    app.post('/v1/instances/:name/migration', {
      schema: { operationId: 'migrationStart', tags, summary: 'Send a running instance to the URI of an incoming migration', params: NameParams, body: StartBody, response: { 200: MigrationFigures, ...errors } },
    }, async (req) => m.start(req.params.name, req.body));
    app.get('/v1/instances/:name/migration', {
      schema: { operationId: 'migrationStatus', tags, summary: 'The migration\'s figures (QEMU\'s query-migrate)', params: NameParams, response: { 200: MigrationFigures, ...errors } },
    }, async (req) => m.status(req.params.name));
    app.post('/v1/instances/:name/migration/cancel', {
      schema: { operationId: 'migrationCancel', tags, summary: 'Cancel an outgoing migration: the instance keeps running here', params: NameParams, response: { 200: MigrationFigures, ...errors } },
    }, async (req) => m.cancel(req.params.name));
    app.post('/v1/instances/:name/migration/postcopy', {
      schema: { operationId: 'migrationPostcopy', tags, summary: 'Postcopy: the source switches its migration to it; the destination runs the guest once the switch reached it (no rollback after the switch)', params: NameParams, response: { 200: MigrationFigures, ...errors } },
    }, async (req) => m.startPostcopy(req.params.name));
    app.post('/v1/instances/:name/migration/finish', {
      schema: {
        operationId: 'migrationFinish', tags, summary: 'End a completed migration: the destination runs the guest; the source ends its QEMU and forgets the instance',
        params: NameParams, response: { 200: Type.Object({ side: Type.String(), instance: nullable(Instance) }), ...errors },
      },
    }, async (req) => m.finish(req.params.name));
    // the user's command: a controller's own route (src/cluster/migration.ts); a single daemon has no other host
    for (const url of ['/v1/instances/:name/migrate', '/v1/instances/:name/migrate/cancel']) {
      app.post(url, { schema: { operationId: url.endsWith('cancel') ? 'migrateCancelOnDaemon' : 'migrateOnDaemon', tags, summary: 'Live migration: through a cluster controller only (a single daemon answers NOT_A_CLUSTER)', params: NameParams, response: { 200: MigrationFigures, ...errors } } }, async () => {
        throw new CorralError('NOT_A_CLUSTER', 'live migration moves an instance between the hosts of a cluster: run corral migrate against a controller (this is a single daemon)');
      });
    }
  };
}
