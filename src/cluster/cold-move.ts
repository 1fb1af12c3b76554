/**
 * Moving a stopped instance whose root disk is on the shared pool to another host (`corral host evacuate`): nothing
 * runs, so nothing is migrated; its record moves, and its disk stays where it is.
 * 1. the destination is reserved as a live migration's is (ClusterInstances.reserveMigration: under the placement
 *    lock, the placer's choice among the other `up` hosts, with the instance's labels, group and size);
 * 2. the destination records it, stopped, as the source has it (POST .../move-in: the same uuid and spec), taking
 *    over the shared disk (services/move-in.ts);
 * 3. the row names the destination (instance.moved);
 * 4. the source forgets it (DELETE ?forget=true: its shared disk stays). A source that started it meanwhile refuses
 *    (no force): then the destination's record goes and the row names the source again.
 * A failure before 3 removes what the destination recorded and gives the reservation back (instance.move-failed).
 * Whichever record is started, the disk's image lock keeps a second QEMU from opening it.
 */
import { CorralError, isCorralError } from '../core/errors.js';
import type { InstanceSpec } from '../core/spec.js';
import type { HostRow } from './cluster-store.js';
import type { ClusterInstances } from './cluster-instances.js';
import type { AgentClient } from './agent-client.js';
import { summaryOfReply } from './instance-reports.js';

export interface ColdMoveDeps {
  instances: Pick<ClusterInstances, 'reserveMigration' | 'completeMigration' | 'abortMigration' | 'setHost' | 'setView'>;
  agents: Pick<AgentClient, 'json' | 'call'>;
  log: { info: (o: object, m: string) => void; warn: (o: object, m: string) => void };
}

export interface ColdMoveResult {
  instance: string;
  from: string;
  to: string;
  /** the source could not be asked to forget it: its stale record is left there (it cannot run: the row and the disk's lock say so) */
  warning?: string;
}

const path = (name: string, tail = ''): string => `/v1/instances/${encodeURIComponent(name)}${tail}`;

export class ColdMover {
  constructor(private readonly d: ColdMoveDeps) {}

  /** Move `name`, stopped on `from` as `view` says (its uuid and spec, read from `from` just before), to another host. */
  async move(name: string, from: HostRow, view: { uuid: string; spec: InstanceSpec }): Promise<ColdMoveResult> {
    const to = await this.d.instances.reserveMigration(name, from.name);
    const a = this.d.agents;
    let recorded = false;
    try {
      const there = await a.json<unknown>(to, 'POST', path(name, '/move-in'), { uuid: view.uuid, spec: view.spec });
      recorded = true;
      const why = `stopped, its root disk on the shared pool: its record moved from host ${from.name} to host ${to.name}`;
      await this.d.instances.completeMigration(name, to.name, { type: 'instance.moved', host: to.name, instance: name, data: { from: from.name, to: to.name, reason: why } });
      const summary = summaryOfReply(there, name);
      if (summary) await this.d.instances.setView(name, to.name, summary).catch(() => undefined);
    } catch (e) {
      if (recorded) await a.call(to, 'DELETE', `${path(name)}?forget=true`).catch((err: unknown) => this.warn(name, to, err, 'removing the record of a failed move failed'));
      await this.d.instances.abortMigration(name, {
        type: 'instance.move-failed', host: from.name, instance: name,
        data: { from: from.name, to: to.name, reason: (e as Error).message, ...(isCorralError(e) ? { code: e.code } : {}) },
      }).catch((err: unknown) => this.warn(name, from, err, 'recording a failed move failed'));
      throw e;
    }
    // the row names the destination: the source's record goes (without force: one started meanwhile stays)
    let res;
    try {
      res = await a.call(from, 'DELETE', `${path(name)}?forget=true`);
    } catch (e) {
      const warning = `host ${from.name} could not be asked to forget its record of it (${(e as Error).message}): remove it there once it answers`;
      this.d.log.warn({ instance: name, host: from.name }, warning);
      return { instance: name, from: from.name, to: to.name, warning };
    }
    if (res.status >= 300 && !(res.status === 404 && /INSTANCE_NOT_FOUND/.test(res.body.toString()))) {
      // started there meanwhile: it stays there, and the destination's record goes
      await a.call(to, 'DELETE', `${path(name)}?forget=true`).catch((err: unknown) => this.warn(name, to, err, 'removing the record of an undone move failed'));
      const reason = `host ${from.name} refused to let it go (${res.status}: ${res.body.toString().slice(0, 300)}): it was started there meanwhile, it stays there`;
      await this.d.instances.setHost(name, from.name, { type: 'instance.move-failed', host: from.name, instance: name, data: { from: from.name, to: to.name, reason } });
      throw new CorralError('INVALID_STATE', `instance "${name}" could not move: ${reason}`, { name, host: from.name });
    }
    this.d.log.info({ instance: name, from: from.name, to: to.name }, 'stopped instance moved');
    return { instance: name, from: from.name, to: to.name };
  }

  private warn(name: string, h: HostRow, err: unknown, what: string): void {
    this.d.log.warn({ instance: name, host: h.name, error: (err as Error).message }, what);
  }
}
