/**
 * The controller's routes that move many instances: `corral host evacuate` (evacuation.ts, with cold-move.ts for
 * stopped instances) and `corral pool rebalance` (rebalance.ts), both through the Migrator of `corral migrate`.
 */
import type { FastifyInstance } from 'fastify';
import type { ClusterStore } from './cluster-store.js';
import type { ClusterInstances } from './cluster-instances.js';
import type { ClusterEvents } from './cluster-events.js';
import type { AgentClient } from './agent-client.js';
import type { Migrator } from './migration.js';
import { ColdMover } from './cold-move.js';
import { controllerEvacuationRoutes, Evacuator } from './evacuation.js';
import { controllerRebalanceRoutes, Rebalancer } from './rebalance.js';

export interface MoveDeps {
  store: ClusterStore;
  instances: ClusterInstances;
  agents: AgentClient;
  events: Pick<ClusterEvents, 'record'>;
  migrator: Migrator;
  log: { info: (o: object, m: string) => void; warn: (o: object, m: string) => void };
}

export function controllerMoveRoutes(d: MoveDeps) {
  return async (app: FastifyInstance): Promise<void> => {
    const cold = new ColdMover({ instances: d.instances, agents: d.agents, log: d.log });
    await app.register(controllerEvacuationRoutes(new Evacuator({ ...d, cold })));
    await app.register(controllerRebalanceRoutes(new Rebalancer(d)));
  };
}
