/**
 * `corral pool rebalance [--dry-run] [--max-moves N]`: even out the hosts' allocation, through a controller.
 *
 * The pure planner (core/rebalance.ts) works on the cluster's own figures: each host's capacity as it reports it
 * and what placement reserved there (hosts.reserved_*, a live migration's destination counted too), the `up` hosts
 * only (none in maintenance, unreachable or fenced, as a source or a destination), and the instances that can move
 * now: running as their host last reported, with their root disk on the shared pool (the only disks that migrate in
 * this build), no migration under way. The move it proposes is checked with the instance's host (running, nothing
 * tying it there: core/migration.ts's blockers); one that cannot move is skipped, with its coded reason, and the
 * next best is planned. With --dry-run each move is applied to the figures and the next planned from them, nothing
 * moving. Otherwise each move is made, one at a time, by the Migrator of `corral migrate` (to the planned host,
 * whose room is checked again under the placement lock), and the next is planned from the cluster's figures as they
 * are after it; one that fails is reported and its instance left out of the rest. At most maxMoves moves are made
 * or tried (default 3).
 *
 * The answer is JSON lines: each move as proposed (both hosts' allocation before and after), each skipped instance,
 * each move's progress and outcome, then the result.
 */
import { PassThrough } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import { CorralError, isCorralError } from '../core/errors.js';
import { migrationBlockers, type MigrationFigures } from '../core/migration.js';
import {
  DEFAULT_MAX_MOVES, DEFAULT_TOLERANCE, MAX_MOVES_LIMIT, planRebalance, planRelief, spreadOf, type RebalanceHost, type RebalanceInstance, type RebalanceMove,
} from '../core/rebalance.js';
import type { InstanceSpec } from '../core/spec.js';
import type { ClusterStore, HostRow } from './cluster-store.js';
import type { ClusterInstances } from './cluster-instances.js';
import type { AgentClient } from './agent-client.js';
import { migrateRequest, type MigrationResult, type Migrator } from './migration.js';

/** progress lines of one migration, at most one this often */
const PROGRESS_EVERY_MS = 1000;

export interface RebalanceDeps {
  store: Pick<ClusterStore, 'listHosts' | 'getHost'>;
  instances: Pick<ClusterInstances, 'listWithStates'>;
  agents: Pick<AgentClient, 'json'>;
  migrator: Pick<Migrator, 'prepare' | 'run'>;
  log: { info: (o: object, m: string) => void; warn: (o: object, m: string) => void };
  /** the spread counted as even (core/rebalance.ts) */
  tolerance?: number;
}

export interface RebalanceRequest { dryRun: boolean; maxMoves: number }

/** A move and what became of it. */
export type MoveOutcome = RebalanceMove & (
  | { outcome: 'proposed' }
  | { outcome: 'migrated'; totalMs: number | null; downtimeMs: number | null }
  | { outcome: 'failed'; code: string; message: string });

export interface Skipped { instance: string; host: string; code: string; reason: string }

export interface RebalanceResult {
  dryRun: boolean;
  moves: MoveOutcome[];
  skipped: Skipped[];
  /** the spread of the hosts' dominant shares before and after (after the proposed moves, with --dry-run) */
  spreadBefore: number;
  spreadAfter: number;
  /** the spread is within the tolerance */
  even: boolean;
  tolerance: number;
}

export type RebalanceLine =
  | ({ type: 'move' } & RebalanceMove)
  | ({ type: 'skipped' } & Skipped)
  | ({ type: 'progress'; instance: string } & MigrationFigures)
  | ({ type: 'outcome' } & MoveOutcome)
  | { type: 'result'; result: RebalanceResult };

/** The request's body, checked (INVALID_SPEC naming the field). */
export function rebalanceRequest(body: unknown): RebalanceRequest {
  const b = (body ?? {}) as Record<string, unknown>;
  if (typeof b !== 'object' || Array.isArray(b)) throw new CorralError('INVALID_SPEC', 'the body is an object: {"dryRun": true, "maxMoves": N}', { field: 'body' });
  for (const k of Object.keys(b)) if (k !== 'dryRun' && k !== 'maxMoves') throw new CorralError('INVALID_SPEC', `${k}: unknown field (a rebalance takes dryRun and maxMoves)`, { field: k });
  const dry = b.dryRun ?? false;
  if (typeof dry !== 'boolean') throw new CorralError('INVALID_SPEC', 'dryRun: must be true or false', { field: 'dryRun' });
  const n = b.maxMoves ?? DEFAULT_MAX_MOVES;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 1 || n > MAX_MOVES_LIMIT) throw new CorralError('INVALID_SPEC', `maxMoves: a whole number from 1 to ${MAX_MOVES_LIMIT}, got ${JSON.stringify(n)}`, { field: 'maxMoves' });
  return { dryRun: dry, maxMoves: n };
}

/** A host's reported capacity (0 when it reported none). */
function capacityOf(h: HostRow): { cpus: number; memory: number } {
  const c = (h.capacity ?? {}) as { cpus?: unknown; memory?: unknown };
  return { cpus: typeof c.cpus === 'number' ? c.cpus : 0, memory: typeof c.memory === 'number' ? c.memory : 0 };
}

export interface PoolFigures { hosts: RebalanceHost[]; instances: RebalanceInstance[] }

/** The planner's picture of the cluster now (see the file's comment). */
export async function poolFigures(d: Pick<RebalanceDeps, 'store' | 'instances'>): Promise<PoolFigures> {
  const hosts = (await d.store.listHosts()).map((h): RebalanceHost => ({
    name: h.name, capacity: capacityOf(h), allocated: { cpus: h.reserved.cpus, memory: h.reserved.memory }, labels: h.labels,
    sharedPool: h.sharedPool !== null, eligible: h.state === 'up',
  }));
  const instances = (await d.instances.listWithStates()).map((i): RebalanceInstance => ({
    name: i.name, host: i.host, cpus: i.cpus, memory: i.memory, hostLabels: i.hostLabels, group: i.group, antiAffinity: i.antiAffinity,
    shared: i.pool === 'shared',
    // only shared-pool disks migrate in this build (core/migration.ts); the host confirms before anything moves
    movable: i.state === 'running' && i.migratingTo === null && i.pool === 'shared',
  }));
  return { hosts, instances };
}

export class Rebalancer {
  constructor(private readonly d: RebalanceDeps) {}

  get tolerance(): number {
    return this.d.tolerance ?? DEFAULT_TOLERANCE;
  }

  /** Why the instance cannot move now, asked of its host (null: it can). */
  async blocker(name: string, hostName: string): Promise<Skipped | null> {
    const skip = (code: string, reason: string): Skipped => ({ instance: name, host: hostName, code, reason });
    try {
      const host = await this.d.store.getHost(hostName);
      if (!host) return skip('HOST_NOT_FOUND', `its host ${hostName} is gone from the cluster`);
      const view = await this.d.agents.json<{ state: string; spec: InstanceSpec }>(host, 'GET', `/v1/instances/${encodeURIComponent(name)}`);
      if (view.state !== 'running') return skip('NOT_MIGRATABLE', `instance "${name}" is ${view.state}: only a running instance is live-migrated`);
      const why = migrationBlockers(view.spec);
      return why.length > 0 ? skip('NOT_MIGRATABLE', `instance "${name}" cannot be live-migrated: ${why.join('; ')}`) : null;
    } catch (e) {
      return skip(isCorralError(e) ? e.code : 'INTERNAL', (e as Error).message);
    }
  }

  /** Plan (and unless dryRun, make) the moves; `emit` gets each line of the answer. */
  async rebalance(req: RebalanceRequest, emit: (l: RebalanceLine) => void): Promise<RebalanceResult> {
    let f = await poolFigures(this.d);
    const spreadBefore = spreadOf(f.hosts);
    const exclude = new Set<string>();
    const moves: MoveOutcome[] = [];
    const skipped: Skipped[] = [];
    while (moves.length < req.maxMoves) {
      const plan = planRebalance(f.hosts, f.instances, { maxMoves: 1, exclude, tolerance: this.tolerance });
      const m = plan.moves[0];
      if (!m) break;
      exclude.add(m.instance); // each instance moves (or is tried) once
      const why = await this.blocker(m.instance, m.from);
      if (why) {
        skipped.push(why);
        emit({ type: 'skipped', ...why });
        continue;
      }
      emit({ type: 'move', ...m });
      if (req.dryRun) {
        moves.push({ ...m, outcome: 'proposed' });
        f = { hosts: plan.hosts, instances: plan.instances };
        continue;
      }
      const out = await this.migrate(m, emit);
      moves.push(out);
      emit({ type: 'outcome', ...out });
      f = await poolFigures(this.d);
    }
    const spreadAfter = spreadOf(f.hosts);
    this.d.log.info({ dryRun: req.dryRun, moves: moves.length, skipped: skipped.length, spreadBefore, spreadAfter }, req.dryRun ? 'rebalance planned' : 'rebalance done');
    return { dryRun: req.dryRun, moves, skipped, spreadBefore, spreadAfter, even: spreadAfter <= this.tolerance + 1e-9, tolerance: this.tolerance };
  }

  /** One move through the Migrator, to its planned host. */
  async migrate(m: RebalanceMove, emit: (l: RebalanceLine) => void): Promise<MoveOutcome> {
    const req = { ...migrateRequest({}), to: m.to };
    let last = 0;
    try {
      const prepared = await this.d.migrator.prepare(m.instance, req);
      const r: MigrationResult = await this.d.migrator.run(m.instance, req, prepared, (fig) => {
        const now = Date.now();
        if (now - last < PROGRESS_EVERY_MS) return;
        last = now;
        emit({ type: 'progress', instance: m.instance, ...fig });
      });
      return { ...m, outcome: 'migrated', totalMs: r.totalMs, downtimeMs: r.downtimeMs };
    } catch (e) {
      return { ...m, outcome: 'failed', code: isCorralError(e) ? e.code : 'INTERNAL', message: (e as Error).message };
    }
  }

  /**
   * One guest off a host whose memory pressure its balloons could not relieve (pressure-rebalance.ts): the move
   * planRelief proposes (not to a host in `avoid`), checked with the host as a rebalance's are and made through the
   * Migrator; null when no guest can go anywhere.
   */
  async relieve(host: string, avoid: ReadonlySet<string>, skippedOut: Skipped[] = []): Promise<MoveOutcome | null> {
    const f = await poolFigures(this.d);
    const exclude = new Set<string>();
    for (;;) {
      const m = planRelief(f.hosts, f.instances, host, { exclude, avoid });
      if (!m) return null;
      const why = await this.blocker(m.instance, host);
      if (why) {
        skippedOut.push(why);
        exclude.add(m.instance);
        continue;
      }
      return this.migrate(m, () => undefined);
    }
  }
}

/** The controller's route (see the file's comment). */
export function controllerRebalanceRoutes(r: Rebalancer) {
  return async (app: FastifyInstance): Promise<void> => {
    app.post('/v1/pool/rebalance', async (req, reply) => {
      const body = rebalanceRequest(req.body);
      const out = new PassThrough();
      const line = (o: RebalanceLine | { type: 'error'; error: unknown }): void => { out.write(`${JSON.stringify(o)}\n`); };
      void reply.type('application/x-ndjson').send(out);
      // it runs to its end whether or not the client stays
      r.rebalance(body, line)
        .then((result) => line({ type: 'result', result }))
        .catch((err: unknown) => line({ type: 'error', ...(isCorralError(err) ? err : new CorralError('INTERNAL', (err as Error).message)).toJSON() }))
        .finally(() => out.end());
      return reply;
    });
  };
}
