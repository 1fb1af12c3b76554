/**
 * A host's part in moving a stopped instance to it from another host of the cluster (src/cluster/cold-move.ts
 * drives it): the instance as its old host has it (the same uuid, so the same MACs and launch plan; the same spec,
 * resizes and hotplugged NICs included), recorded here stopped, its root disk on the shared pool taken over. Nothing
 * is started. What ties an instance to its host (a local disk or volume, which only a live migration's mirrors move;
 * a passthrough device...) refuses the move (core/migration.ts's recordMoveBlockers: NOT_MIGRATABLE naming it). The old host then forgets it (a delete with `forget`:
 * the shared disk stays).
 */
import { Value } from '@sinclair/typebox/value';
import { CorralError } from '../core/errors.js';
import { recordMoveBlockers } from '../core/migration.js';
import { InstanceSpecSchema } from '../core/spec-schema.js';
import type { InstanceSpec } from '../core/spec.js';
import type { InstanceService, InstanceView } from './instances.js';

export async function moveIn(instances: Pick<InstanceService, 'createIncoming'>, name: string, body: { uuid?: unknown; spec?: unknown }): Promise<InstanceView> {
  if (typeof body.uuid !== 'string' || !/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/.test(body.uuid)) throw new CorralError('INVALID_SPEC', 'uuid: the instance\'s uuid on its old host', { field: 'uuid' });
  if (!Value.Check(InstanceSpecSchema, body.spec)) throw new CorralError('INVALID_SPEC', 'spec: the instance\'s whole configuration as its old host has it', { field: 'spec' });
  const spec = body.spec as InstanceSpec;
  const why = recordMoveBlockers(spec);
  if (why.length > 0) throw new CorralError('NOT_MIGRATABLE', `instance "${name}" cannot move as a stopped record: ${why.join('; ')}`, { name, blockers: why });
  return instances.createIncoming(name, body.uuid, spec, { stopped: true });
}
