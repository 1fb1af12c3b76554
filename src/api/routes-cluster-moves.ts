/**
 * Moves between the hosts of a cluster that are not a live migration (routes-migration.ts has those):
 * - POST /v1/instances/NAME/move-in: a host's part in moving a stopped instance to it (services/move-in.ts), which
 *   a cluster controller drives (src/cluster/cold-move.ts, for `corral host evacuate`);
 * - POST /v1/pool/rebalance: the cluster's (src/cluster/rebalance.ts); a single daemon has no other host to move
 *   anything to, and answers NOT_A_CLUSTER.
 */
import type { FastifyInstance, FastifyPluginAsync } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import { CorralError } from '../core/errors.js';
import { moveIn } from '../services/move-in.js';
import { errors, NameParams } from './schemas-common.js';
import { Instance } from './schemas-instances.js';
import type { Services } from './services.js';

const MoveInBody = Type.Object({
  uuid: Type.String({ description: 'the instance\'s uuid on its old host' }),
  spec: Type.Unknown({ description: 'the instance\'s whole configuration on its old host' }),
});

export function clusterMoveRoutes(svc: Services): FastifyPluginAsync {
  return async (base: FastifyInstance) => {
    const app = base.withTypeProvider<TypeBoxTypeProvider>();
    app.post('/v1/instances/:name/move-in', {
      schema: {
        operationId: 'instanceMoveIn', tags: ['instances'], summary: 'Record here, stopped, an instance moved from another host of the cluster (its root disk on the shared pool)',
        params: NameParams, body: MoveInBody, response: { 201: Instance, ...errors },
      },
    }, async (req, reply) => reply.status(201).send(await moveIn(svc.instances, req.params.name, req.body)));
    app.post('/v1/pool/rebalance', {
      schema: { operationId: 'rebalanceOnDaemon', tags: ['pool'], summary: 'Rebalancing: through a cluster controller only (a single daemon answers NOT_A_CLUSTER)', response: { 200: Type.String({ description: 'through a controller: JSON lines, each proposed move and its outcome, then the result' }), ...errors } },
    }, async () => {
      throw new CorralError('NOT_A_CLUSTER', 'a rebalance moves instances between the hosts of a cluster: run corral pool rebalance against a controller (this is a single daemon)');
    });
  };
}
