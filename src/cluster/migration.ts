/**
 * Live migration through a controller. Shared-pool disks stay where they are; local disks (a root overlay on the
 * host's local pool, attached volumes) move with the instance over NBD (migration-disks.ts has those steps).
 *
 * POST /v1/instances/NAME/migrate checks first, answering an error before anything moves: the instance is running
 * on an `up` host, nothing ties it to that host (core/migration.ts names the disk or device: NOT_MIGRATABLE), and
 * the destination (`to`, or the placer's choice as for an HA move, without fencing) takes it: reserved under the
 * placement lock (ClusterInstances.reserveMigration). Then it streams JSON lines while it:
 * 1. asks the destination's agent for an incoming QEMU (the same spec and uuid, `-incoming defer`, listening on
 *    tcp:<its address>:<free port>);
 * 2. asks the source's agent to migrate there with the parameters, and polls query-migrate (progress lines) until
 *    QEMU says completed, failed or cancelled, or the timeout (then it cancels);
 * 3. completed: the destination runs the guest (`cont`), the row moves there (instance.migrated, with QEMU's
 *    figures), and the source's QEMU (paused in postmigrate) ends and its record goes (the shared disk stays).
 * Anything else: the destination's QEMU is killed and its record removed, the source runs on (resumed if a failed
 * switch-over left it paused), the reservation goes (instance.migration-failed). The destination runs only once
 * the source has completed, and the source runs again only while the destination has not: never two copies. A
 * destination whose `finish` answer is lost is asked whether it runs: if it does, it is the owner; if it cannot be
 * asked, the source is left paused (MIGRATION_FAILED, outcome `unknown`) rather than resumed on a guess.
 * POST /v1/instances/NAME/migrate/cancel asks the source's agent to cancel (any controller may: the one driving the
 * migration sees QEMU's `cancelled` and rolls back).
 */
import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import { PassThrough } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import { CorralError, isCorralError } from '../core/errors.js';
import { assertMigratable, migrationOptions, migrationOutcome, DEFAULT_MIGRATION_TIMEOUT_S, type MigrationFigures, type MigrationOptions } from '../core/migration.js';
import type { InstanceSpec } from '../core/spec.js';
import type { HostRow, ClusterStore } from './cluster-store.js';
import type { ClusterInstances } from './cluster-instances.js';
import type { ClusterEvents } from './cluster-events.js';
import { noApi, type AgentClient } from './agent-client.js';
import { hostOf } from './controller-instances.js';
import { summaryOfReply } from './instance-reports.js';
import { DiskMover, type DiskProgress, type DiskResult } from './migration-disks.js';

const POLL_MS = 100;
/** how long an agent may take to start the incoming QEMU */
const INCOMING_TIMEOUT_MS = 60_000;

export interface MigrationDeps {
  store: ClusterStore;
  instances: ClusterInstances;
  agents: AgentClient;
  events: Pick<ClusterEvents, 'record'>;
  log: { info: (o: object, m: string) => void; warn: (o: object, m: string) => void };
  pollMs?: number;
}

export interface MigrateRequest { to?: string; options: MigrationOptions; timeoutS: number }

/** The final figures the CLI prints with --json. */
export interface MigrationResult extends Partial<DiskResult> {
  instance: string; from: string; to: string; totalMs: number | null; downtimeMs: number | null; setupMs: number | null;
  transferredBytes: number | null; totalBytes: number | null; passes: number | null;
}

/** The request's body, checked (INVALID_SPEC naming the field). */
export function migrateRequest(body: Record<string, unknown>): MigrateRequest {
  const to = body.to;
  if (to !== undefined && typeof to !== 'string') throw new CorralError('INVALID_SPEC', 'to: must be a host name', { field: 'to' });
  const t = body.timeoutS ?? DEFAULT_MIGRATION_TIMEOUT_S;
  if (typeof t !== 'number' || !Number.isInteger(t) || t < 1 || t > 86_400) throw new CorralError('INVALID_SPEC', `timeoutS: whole seconds from 1 to 86400, got ${JSON.stringify(t)}`, { field: 'timeoutS' });
  return { ...(to !== undefined ? { to: to as string } : {}), options: migrationOptions(body), timeoutS: t };
}

/** The IP address of a host's agent (its joined address), which its incoming QEMU listens on. */
export async function hostIp(h: HostRow): Promise<string> {
  if (!h.address) throw noApi(h);
  const name = new URL(h.address).hostname.replace(/^\[|\]$/g, '');
  return isIP(name) !== 0 ? name : (await lookup(name)).address;
}

export function resultOf(name: string, from: string, to: string, f: MigrationFigures): MigrationResult {
  return { instance: name, from, to, totalMs: f.totalMs, downtimeMs: f.downtimeMs, setupMs: f.setupMs, transferredBytes: f.transferredBytes, totalBytes: f.totalBytes, passes: f.passes };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export class Migrator {
  constructor(private readonly d: MigrationDeps) {}

  private path(name: string, tail = ''): string {
    return `/v1/instances/${encodeURIComponent(name)}${tail}`;
  }

  /** The checks and the destination's reservation; what run() needs then. */
  async prepare(name: string, req: MigrateRequest): Promise<{ from: HostRow; to: HostRow; uuid: string; spec: InstanceSpec; disks?: DiskMover | null }> {
    const { host: from } = await hostOf(this.d, name);
    if (req.to !== undefined && !(await this.d.store.getHost(req.to))) throw new CorralError('HOST_NOT_FOUND', `no host named "${req.to}" in the cluster (corral host list shows them)`, { host: req.to });
    const view = await this.d.agents.json<{ state: string; uuid: string; spec: InstanceSpec }>(from, 'GET', this.path(name));
    assertMigratable(name, view.spec);
    if (view.state !== 'running') throw new CorralError('NOT_MIGRATABLE', `instance "${name}" is ${view.state}: only a running instance is live-migrated`, { name, state: view.state });
    const to = await this.d.instances.reserveMigration(name, from.name, req.to);
    // local disks: what moves, checked on both hosts before anything does (migration-disks.ts)
    const disks = await DiskMover.prepare(this.d.agents, name, view.spec, from, to, this.d.pollMs).catch(async (e: unknown) => {
      await this.d.instances.abortMigration(name, {
        type: 'instance.migration-failed', host: from.name, instance: name,
        data: { from: from.name, to: to.name, reason: (e as Error).message, ...(isCorralError(e) ? { code: e.code } : {}) },
      }).catch(() => undefined);
      throw e;
    });
    return { from, to, uuid: view.uuid, spec: view.spec, disks };
  }

  /** Steps 1 to 3 of the file's comment; `progress` gets each poll's figures, `onDisks` the local disks' progress. */
  async run(name: string, req: MigrateRequest, p: Awaited<ReturnType<Migrator['prepare']>>, progress: (f: MigrationFigures) => void, onDisks: (d: DiskProgress) => void = () => undefined): Promise<MigrationResult> {
    const { from, to, disks } = p;
    const deadline = Date.now() + req.timeoutS * 1000;
    const a = this.d.agents;
    let incoming = false;
    let started = false;
    let last: MigrationFigures | null = null;
    try {
      await disks?.sendImage(from, to, onDisks);
      const inc = await a.json<{ uri: string; nbd?: { host: string; port: number } }>(to, 'POST', this.path(name, '/migration/incoming'), { uuid: p.uuid, spec: p.spec, address: await hostIp(to), ...disks?.incomingBody() }, INCOMING_TIMEOUT_MS);
      incoming = true;
      started = true; // from here the source may have paused: a rollback asks it to run on
      await disks?.mirror(from, inc.nbd, req.options.bandwidth, { at: deadline, s: req.timeoutS }, onDisks);
      await a.json(from, 'POST', this.path(name, '/migration'), { uri: inc.uri, ...req.options, bandwidth: req.options.bandwidth ?? undefined });
      let cancelled = false;
      for (;;) {
        last = await a.json<MigrationFigures>(from, 'GET', this.path(name, '/migration'));
        progress(last);
        const out = migrationOutcome(last.status);
        if (out === 'completed') break;
        if (out !== null) {
          throw new CorralError('MIGRATION_FAILED', cancelled ? `the migration of instance "${name}" ran past its timeout (${req.timeoutS} s) and was cancelled: it runs on host ${from.name}`
            : `the migration of instance "${name}" ${out === 'cancelled' ? 'was cancelled' : `failed: ${last.error ?? 'QEMU gave no reason'}`}: it runs on host ${from.name}`, { name, outcome: cancelled ? 'timeout' : out, host: from.name });
        }
        if (!cancelled && Date.now() > deadline) {
          cancelled = true;
          await a.json(from, 'POST', this.path(name, '/migration/cancel'));
        }
        await sleep(this.d.pollMs ?? POLL_MS);
      }
      // the source is paused in postmigrate: its mirrors end first (the destination's disks then equal its own), then
      // the destination takes over
      await disks?.complete(from);
      let fin: { instance: unknown };
      try {
        fin = await a.json<{ instance: unknown }>(to, 'POST', this.path(name, '/migration/finish'));
      } catch (e) {
        // a finish whose answer was lost may have happened: a destination that runs is the one true owner, and the
        // source must never run again beside it (nor after it wrote to the shared disk); one that cannot be asked
        // leaves the source paused, never resumed on a guess
        const now = await a.json<{ state?: string }>(to, 'GET', this.path(name)).catch(() => null);
        if (now === null) {
          started = false;
          incoming = false;
          throw new CorralError('MIGRATION_FAILED', `the migration of instance "${name}" reached its switch-over, but host ${to.name} could not be asked whether it runs the guest: the source on host ${from.name} is left paused (never two copies); look at host ${to.name}, then resume or delete one`, { name, outcome: 'unknown', host: from.name, to: to.name });
        }
        if (now.state !== 'running') throw e;
        fin = { instance: now };
      }
      // the destination runs the guest now: whatever follows, the source never runs again
      incoming = false;
      started = false;
      const result: MigrationResult = { ...resultOf(name, from.name, to.name, last), ...disks?.result() };
      await this.d.instances.completeMigration(name, to.name, { type: 'instance.migrated', host: to.name, instance: name, data: { ...result } });
      const summary = summaryOfReply(fin.instance, name);
      if (summary) await this.d.instances.setView(name, to.name, summary).catch(() => undefined);
      await a.json(from, 'POST', this.path(name, '/migration/finish')).catch((e: unknown) => {
        // its QEMU is paused and never runs again on its own; the host's next report shows it left behind
        this.d.log.warn({ instance: name, host: from.name, error: (e as Error).message }, 'the source of a completed migration could not be cleaned up');
      });
      this.d.log.info({ instance: name, from: from.name, to: to.name, totalMs: result.totalMs, downtimeMs: result.downtimeMs }, 'instance live-migrated');
      return result;
    } catch (e) {
      await this.rollback(name, from, to, incoming, started, e, last);
      // what the destination made for the local disks (volumes, an image it received) goes once its instance has
      await disks?.abandon(to).catch((err: unknown) => this.d.log.warn({ instance: name, error: (err as Error).message }, 'removing what a failed migration made on its destination failed'));
      throw e;
    }
  }

  private async rollback(name: string, from: HostRow, to: HostRow, incoming: boolean, started: boolean, e: unknown, last: MigrationFigures | null): Promise<void> {
    const a = this.d.agents;
    const warn = (what: string) => (err: unknown): void => this.d.log.warn({ instance: name, error: (err as Error).message }, what);
    if (incoming) await a.call(to, 'DELETE', `${this.path(name)}?force=true&forget=true`).catch(warn('removing the destination of a failed migration failed'));
    // (its status call resumes a source a failed switch-over left paused; cancel resumes one that completed
    // while the destination could not take over)
    if (started) {
      await a.json<MigrationFigures>(from, 'POST', this.path(name, '/migration/cancel')).catch(() => a.json(from, 'GET', this.path(name, '/migration'))).catch(warn('resuming the source of a failed migration failed'));
    }
    const reason = (e as Error).message;
    await this.d.instances.abortMigration(name, {
      type: 'instance.migration-failed', host: from.name, instance: name,
      data: { from: from.name, to: to.name, reason, ...(isCorralError(e) ? { code: e.code } : {}), ...(last ? resultOf(name, from.name, to.name, last) : {}) },
    }).catch(warn('recording a failed migration failed'));
  }

  async cancel(name: string): Promise<MigrationFigures> {
    const { host } = await hostOf(this.d, name);
    return this.d.agents.json<MigrationFigures>(host, 'POST', this.path(name, '/migration/cancel'));
  }
}

/** The controller's routes (see the file's comment). */
export function controllerMigrationRoutes(m: Migrator) {
  return async (app: FastifyInstance): Promise<void> => {
    app.post<{ Params: { name: string } }>('/v1/instances/:name/migrate', async (req, reply) => {
      const name = req.params.name;
      const r = migrateRequest((req.body ?? {}) as Record<string, unknown>);
      const prepared = await m.prepare(name, r);
      const out = new PassThrough();
      const line = (o: unknown): void => { out.write(`${JSON.stringify(o)}\n`); };
      void reply.type('application/x-ndjson').send(out);
      // it runs to its end whether or not the client stays
      m.run(name, r, prepared, (f) => line({ type: 'progress', ...f }), (d) => line({ type: 'disks', ...d }))
        .then((result) => line({ type: 'result', result }))
        .catch((e: unknown) => line({ type: 'error', ...(isCorralError(e) ? e : new CorralError('INTERNAL', (e as Error).message)).toJSON() }))
        .finally(() => out.end());
      return reply;
    });
    app.post<{ Params: { name: string } }>('/v1/instances/:name/migrate/cancel', async (req) => m.cancel(req.params.name));
  };
}
