/**
 * `corral host evacuate HOST`: empty a host for maintenance, through a controller.
 *
 * POST /v1/hosts/NAME/evacuate {parallel} first puts the host in maintenance (nothing new is placed there, and it
 * stays so whatever follows), then moves each instance the cluster has on it, `parallel` at a time (default 2):
 * - running: live-migrated by the Migrator of `corral migrate` (migration.ts), the placer choosing the destination
 *   among the `up` hosts (the evacuated one is in maintenance, so never it);
 * - stopped (or crashed) with its root disk on the shared pool: its record moves to another host (cold-move.ts);
 *   nothing is copied;
 * - anything else is left, with its coded reason: a stopped instance with a local disk (it moves only with the
 *   local-disk migration, which copies its disks while it runs), one that cannot be live-migrated or is neither
 *   running nor stopped (NOT_MIGRATABLE), no host with room (NO_HOST_FITS), a migration that failed
 *   (MIGRATION_FAILED: it runs on where it was), its host not answering (HOST_UNAVAILABLE).
 * The answer is JSON lines: each instance's start, its migration's progress (at most once a second), its outcome,
 * then the result. The events host.evacuating and host.evacuated say how many there were and what became of them.
 * It runs to its end whether or not the client stays. Run again, it moves what is left (the host is in maintenance
 * already; what moved is no longer on it): an evacuation cut short (a controller restart) is simply run again. An
 * instance whose live migration to this host was under way when it began lands here afterwards: run it again.
 */
import { PassThrough } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import { CorralError, isCorralError } from '../core/errors.js';
import { recordMoveBlockers, type MigrationFigures } from '../core/migration.js';
import type { InstanceSpec } from '../core/spec.js';
import type { ClusterStore, HostRow } from './cluster-store.js';
import type { ClusterInstances } from './cluster-instances.js';
import type { ClusterEvents } from './cluster-events.js';
import type { AgentClient } from './agent-client.js';
import { migrateRequest, type Migrator } from './migration.js';
import type { ColdMover } from './cold-move.js';

export const DEFAULT_EVACUATE_PARALLEL = 2;
export const MAX_EVACUATE_PARALLEL = 16;
/** progress lines of one instance's migration, at most one this often */
const PROGRESS_EVERY_MS = 1000;

export interface EvacuationDeps {
  store: Pick<ClusterStore, 'getHost' | 'setMaintenance'>;
  instances: Pick<ClusterInstances, 'list'>;
  agents: Pick<AgentClient, 'json'>;
  events: Pick<ClusterEvents, 'record'>;
  migrator: Pick<Migrator, 'prepare' | 'run'>;
  cold: Pick<ColdMover, 'move'>;
  log: { info: (o: object, m: string) => void; warn: (o: object, m: string) => void };
}

/** What became of one instance. */
export type EvacuationOutcome =
  | { instance: string; outcome: 'migrated'; from: string; to: string; totalMs: number | null; downtimeMs: number | null }
  | { instance: string; outcome: 'moved'; from: string; to: string; warning?: string }
  | { instance: string; outcome: 'left'; code: string; reason: string };

export interface EvacuationResult {
  host: string;
  /** the host is in maintenance (always, once the evacuation began) */
  maintenance: true;
  /** live-migrated, records of stopped instances moved, left on the host */
  migrated: number;
  moved: number;
  left: number;
  instances: EvacuationOutcome[];
}

export type EvacuationLine =
  | { type: 'evacuating'; host: string; instances: number; parallel: number }
  | { type: 'start'; instance: string; how: 'live' | 'stopped' }
  | ({ type: 'progress'; instance: string } & MigrationFigures)
  | ({ type: 'outcome' } & EvacuationOutcome)
  | { type: 'result'; result: EvacuationResult };

/** The request's body, checked (INVALID_SPEC naming the field). */
export function evacuateRequest(body: unknown): { parallel: number } {
  const b = (body ?? {}) as Record<string, unknown>;
  if (typeof b !== 'object' || Array.isArray(b)) throw new CorralError('INVALID_SPEC', 'the body is an object: {"parallel": N}', { field: 'body' });
  for (const k of Object.keys(b)) if (k !== 'parallel') throw new CorralError('INVALID_SPEC', `${k}: unknown field (an evacuation takes parallel)`, { field: k });
  const p = b.parallel ?? DEFAULT_EVACUATE_PARALLEL;
  if (typeof p !== 'number' || !Number.isInteger(p) || p < 1 || p > MAX_EVACUATE_PARALLEL) throw new CorralError('INVALID_SPEC', `parallel: migrations at a time, a whole number from 1 to ${MAX_EVACUATE_PARALLEL}, got ${JSON.stringify(p)}`, { field: 'parallel' });
  return { parallel: p };
}

const left = (instance: string, e: unknown): EvacuationOutcome => ({
  instance, outcome: 'left', code: isCorralError(e) ? e.code : 'INTERNAL', reason: (e as Error).message,
});

/** Run `fn` over `items`, at most `n` at a time. */
async function pool<T>(items: readonly T[], n: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) await fn(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(n, items.length) }, worker));
}

export class Evacuator {
  constructor(private readonly d: EvacuationDeps) {}

  /** The host, now in maintenance (HOST_NOT_FOUND before anything when there is none). */
  async begin(name: string): Promise<HostRow> {
    const h = await this.d.store.getHost(name);
    if (!h) throw new CorralError('HOST_NOT_FOUND', `no host named "${name}" in the cluster (corral host list shows them)`, { host: name });
    return this.d.store.setMaintenance(name, true);
  }

  /** Move everything off `host` (in maintenance: begin()); `emit` gets each line of the answer. */
  async evacuate(host: HostRow, req: { parallel: number }, emit: (l: EvacuationLine) => void): Promise<EvacuationResult> {
    const names = (await this.d.instances.list()).filter((i) => i.host === host.name).map((i) => i.name);
    emit({ type: 'evacuating', host: host.name, instances: names.length, parallel: req.parallel });
    await this.d.events.record({ type: 'host.evacuating', host: host.name, data: { instances: names.length, parallel: req.parallel, reason: 'corral host evacuate: the host is in maintenance, its instances move to other hosts' } });
    this.d.log.info({ host: host.name, instances: names.length, parallel: req.parallel }, 'evacuating host');
    const outcomes = new Map<string, EvacuationOutcome>();
    await pool(names, req.parallel, async (name) => {
      const out = await this.one(host, name, emit).catch((e: unknown) => left(name, e));
      outcomes.set(name, out);
      emit({ type: 'outcome', ...out });
    });
    const instances = names.map((n) => outcomes.get(n)!);
    const count = (o: EvacuationOutcome['outcome']): number => instances.filter((i) => i.outcome === o).length;
    const result: EvacuationResult = { host: host.name, maintenance: true, migrated: count('migrated'), moved: count('moved'), left: count('left'), instances };
    const leftBehind = instances.flatMap((i) => (i.outcome === 'left' ? [{ instance: i.instance, code: i.code }] : []));
    await this.d.events.record({
      type: 'host.evacuated', host: host.name,
      data: {
        migrated: result.migrated, moved: result.moved, left: result.left, leftBehind,
        reason: result.left === 0 ? 'nothing is left on it; it stays in maintenance' : `${result.left} instance${result.left === 1 ? ' is' : 's are'} left on it; it stays in maintenance`,
      },
    }).catch((e: unknown) => this.d.log.warn({ host: host.name, error: (e as Error).message }, 'recording an evacuation\'s end failed'));
    this.d.log.info({ host: host.name, migrated: result.migrated, moved: result.moved, left: result.left }, 'host evacuated');
    return result;
  }

  /** One instance: live-migrated, its record moved, or left (thrown: the caller records why). */
  private async one(host: HostRow, name: string, emit: (l: EvacuationLine) => void): Promise<EvacuationOutcome> {
    const view = await this.d.agents.json<{ state: string; uuid: string; spec: InstanceSpec }>(host, 'GET', `/v1/instances/${encodeURIComponent(name)}`);
    if (view.state === 'stopped' || view.state === 'crashed') {
      const why = recordMoveBlockers(view.spec);
      if (why.length > 0) throw new CorralError('NOT_MIGRATABLE', `instance "${name}" is ${view.state} and cannot move without its disks: ${why.join('; ')}`, { name, blockers: why });
      emit({ type: 'start', instance: name, how: 'stopped' });
      const r = await this.d.cold.move(name, host, view);
      return { instance: name, outcome: 'moved', from: r.from, to: r.to, ...(r.warning ? { warning: r.warning } : {}) };
    }
    // running (anything else is refused by the Migrator's checks: NOT_MIGRATABLE saying its state)
    const mr = migrateRequest({});
    const prepared = await this.d.migrator.prepare(name, mr);
    emit({ type: 'start', instance: name, how: 'live' });
    let last = 0;
    const r = await this.d.migrator.run(name, mr, prepared, (f) => {
      const now = Date.now();
      if (now - last < PROGRESS_EVERY_MS) return;
      last = now;
      emit({ type: 'progress', instance: name, ...f });
    });
    return { instance: name, outcome: 'migrated', from: r.from, to: r.to, totalMs: r.totalMs, downtimeMs: r.downtimeMs };
  }
}

/** The controller's route (see the file's comment). */
export function controllerEvacuationRoutes(e: Evacuator) {
  return async (app: FastifyInstance): Promise<void> => {
    app.post<{ Params: { name: string } }>('/v1/hosts/:name/evacuate', async (req, reply) => {
      const r = evacuateRequest(req.body);
      const host = await e.begin(req.params.name);
      const out = new PassThrough();
      const line = (o: EvacuationLine | { type: 'error'; error: unknown }): void => { out.write(`${JSON.stringify(o)}\n`); };
      void reply.type('application/x-ndjson').send(out);
      // it runs to its end whether or not the client stays
      e.evacuate(host, r, line)
        .then((result) => line({ type: 'result', result }))
        .catch((err: unknown) => line({ type: 'error', ...(isCorralError(err) ? err : new CorralError('INTERNAL', (err as Error).message)).toJSON() }))
        .finally(() => out.end());
      return reply;
    });
  };
}
