/**
 * /v1/instances/NAME/migration/facts and /migration/resume-source: a host's side of recovering a live migration
 * that nobody drives any more (services/migration-recovery.ts says what each does; a controller calls them).
 */
import type { FastifyInstance, FastifyPluginAsync } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import { errors, NameParams, nullable } from './schemas-common.js';
import type { Services } from './services.js';

const tags = ['instances'];
export const MigrationFacts = Type.Object({
  name: Type.String(), uuid: Type.String(), state: Type.String({ description: 'the record\'s state' }),
  run: nullable(Type.String(), 'QEMU\'s run state (running, paused, inmigrate, postmigrate ...); null: no QEMU'),
  migration: Type.String({ description: 'query-migrate\'s status (none, active, completed, failed, cancelled ...)' }),
  incoming: Type.Boolean({ description: 'the incoming side of a live migration not finished yet' }),
}, { title: 'MigrationFacts' });

export function migrationRecoveryRoutes(svc: Services): FastifyPluginAsync {
  return async (base: FastifyInstance) => {
    const app = base.withTypeProvider<TypeBoxTypeProvider>();
    const r = svc.migrationRecovery;
    app.get('/v1/instances/:name/migration/facts', {
      schema: { operationId: 'migrationFacts', tags, summary: 'What this host\'s QEMU says of an instance\'s live migration now (for a controller recovering it)', params: NameParams, response: { 200: MigrationFacts, ...errors } },
    }, async (req) => r.facts(req.params.name));
    app.post('/v1/instances/:name/migration/resume-source', {
      schema: {
        operationId: 'migrationResumeSource', tags, summary: 'Run again a source whose migration completed but whose destination was removed (only one waiting in postmigrate)',
        params: NameParams, response: { 200: MigrationFacts, ...errors },
      },
    }, async (req) => r.resumeSource(req.params.name));
  };
}
