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
 * Failure safety (migration-watch.ts, migration-locks.ts, migration-recovery.ts): the controller driving a migration
 * holds its lock (a PostgreSQL session lock: a controller that dies lets it go); it watches the destination while the
 * source sends and cancels when the destination is lost (outcome destination-lost); a source that fails ends it
 * (source-lost). A rollback removes the destination first and resumes a source that completed only once the
 * destination is gone; when it cannot be sure of both sides (a host not answering), or the destination may run,
 * the row keeps its mark (migrating_to) and the recovery sweep settles it once the hosts answer.
 * POST /v1/instances/NAME/migrate/cancel asks the source's agent to cancel (any controller may: the one driving the
 * migration sees QEMU's `cancelled` and rolls back).
 * The transport (migration-transport.ts): each step carries its side's TLS pair unless the network is trusted; with
 * `postcopy`, the switch comes after the first pass (core/migration-transport.ts), and from then nothing is rolled
 * back: a failure leaves the source paused and the destination as it is (outcome postcopy-failed).
 */
import { setTimeout as sleep } from 'node:timers/promises';
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
import { checkDestinations } from './migration-checks.js';
import type { DriverLock, MigrationLocks } from './migration-locks.js';
import { sourceLost, watchDestination, type DestinationWatch, type WatchOptions } from './migration-watch.js';
import type { MigrationTransport, TransportPlan } from './migration-transport.js';
import { postcopyBroken, shouldStartPostcopy } from '../core/migration-transport.js';
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
  /** which controller drives a migration (none: not checked) */
  locks?: Pick<MigrationLocks, 'acquire'>;
  watch?: WatchOptions;
  /** TLS on the stream from the cluster CA unless the network is trusted (migration-transport.ts); absent: plain TCP */
  transport?: Pick<MigrationTransport, 'plan'>;
}

export interface MigrateRequest { to?: string; options: MigrationOptions; timeoutS: number }

/** The final figures the CLI prints with --json. */
export interface MigrationResult extends Partial<DiskResult> {
  instance: string; from: string; to: string; totalMs: number | null; downtimeMs: number | null; setupMs: number | null;
  transferredBytes: number | null; totalBytes: number | null; passes: number | null;
  /** whether the stream was encrypted (TLS), and whether the migration was switched to postcopy */
  tls: boolean; postcopy: boolean;
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

export function resultOf(name: string, from: string, to: string, f: MigrationFigures, how: { tls: boolean; postcopy: boolean } = { tls: false, postcopy: false }): MigrationResult {
  return { instance: name, from, to, totalMs: f.totalMs, downtimeMs: f.downtimeMs, setupMs: f.setupMs, transferredBytes: f.transferredBytes, totalBytes: f.totalBytes, passes: f.passes, ...how };
}


export class Migrator {
  constructor(private readonly d: MigrationDeps) {}

  private path(name: string, tail = ''): string {
    return `/v1/instances/${encodeURIComponent(name)}${tail}`;
  }

  /** The migration's lock, the checks and the destination's reservation; what run() needs then (it releases the lock). */
  async prepare(name: string, req: MigrateRequest): Promise<{ from: HostRow; to: HostRow; uuid: string; spec: InstanceSpec; lock?: DriverLock | null; disks?: DiskMover | null }> {
    const lock = this.d.locks ? await this.d.locks.acquire(name) : null;
    if (this.d.locks && !lock) throw new CorralError('NOT_MIGRATABLE', `instance "${name}" is being migrated, or its migration recovered, by a controller: try again later`, { name });
    try {
      return { ...(await this.check(name, req)), lock };
    } catch (e) {
      await lock?.release();
      throw e;
    }
  }

  private async check(name: string, req: MigrateRequest): Promise<{ from: HostRow; to: HostRow; uuid: string; spec: InstanceSpec; disks: DiskMover | null }> {
    const { host: from } = await hostOf(this.d, name);
    if (req.to !== undefined && !(await this.d.store.getHost(req.to))) throw new CorralError('HOST_NOT_FOUND', `no host named "${req.to}" in the cluster (corral host list shows them)`, { host: req.to });
    const view = await this.d.agents.json<{ state: string; uuid: string; spec: InstanceSpec; accel?: 'kvm' | 'tcg' | null }>(from, 'GET', this.path(name));
    assertMigratable(name, view.spec);
    if (view.state !== 'running') throw new CorralError('NOT_MIGRATABLE', `instance "${name}" is ${view.state}: only a running instance is live-migrated`, { name, state: view.state });
    // the destination's CPU and memory (migration-checks.ts): a named one refused, the unfit left out of the choice
    const unfit = checkDestinations({ name, spec: view.spec, accel: view.accel ?? null }, from, await this.d.store.listHosts(), req.to);
    const to = await this.d.instances.reserveMigration(name, from.name, req.to, unfit);
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
    /** the destination may run the guest, or nobody can say: the row keeps its mark for the recovery */
    let undecided = false;
    let last: MigrationFigures | null = null;
    let watch: DestinationWatch | null = null;
    const how = { tls: false, postcopy: false };
    try {
      const address = await hostIp(to);
      const plan: TransportPlan = this.d.transport ? await this.d.transport.plan(from, to, address) : { tls: false, incoming: {}, start: {} };
      how.tls = plan.tls;
      await disks?.sendImage(from, to, onDisks);
      const inc = await a.json<{ uri: string; nbd?: { host: string; port: number } }>(to, 'POST', this.path(name, '/migration/incoming'), { uuid: p.uuid, spec: p.spec, address, ...plan.incoming, ...(req.options.postcopy ? { postcopy: true } : {}), ...disks?.incomingBody() }, INCOMING_TIMEOUT_MS);
      incoming = true;
      started = true; // from here the source may have paused: a rollback asks it to run on
      watch = watchDestination(a, to, name, this.d.watch);
      // the disks' mirrors over NBD, with the source's side of the TLS pair (the RAM's migration takes it again)
      await disks?.mirror(from, inc.nbd, req.options.bandwidth, { at: deadline, s: req.timeoutS }, onDisks, plan.start);
      await a.json(from, 'POST', this.path(name, '/migration'), { uri: inc.uri, ...req.options, bandwidth: req.options.bandwidth ?? undefined, ...plan.start });
      let cancelled = false;
      let lostWhy: string | null = null;
      let destinationRuns = false;
      for (;;) {
        last = await a.json<MigrationFigures>(from, 'GET', this.path(name, '/migration')).catch((e: unknown) => { throw sourceLost(name, from, e); });
        progress(last);
        const out = migrationOutcome(last.status);
        if (out === 'completed') break;
        if (how.postcopy && postcopyBroken(last.status)) throw postcopyFailed(name, from, to, `QEMU says ${last.status}${last.error ? `: ${last.error}` : ''}`);
        if (out !== null) {
          const why = lostWhy !== null ? `was cancelled: ${lostWhy}` : cancelled ? `ran past its timeout (${req.timeoutS} s) and was cancelled` : out === 'cancelled' ? 'was cancelled' : `failed: ${last.error ?? 'QEMU gave no reason'}`;
          throw new CorralError('MIGRATION_FAILED', `the migration of instance "${name}" ${why}: it runs on host ${from.name}`, { name, outcome: lostWhy !== null ? 'destination-lost' : cancelled ? 'timeout' : out, host: from.name });
        }
        if (p.lock?.lost) throw new CorralError('MIGRATION_FAILED', `the controller lost its database session while migrating instance "${name}": the cluster's migration recovery settles it`, { name, outcome: 'unknown', host: from.name });
        if (!cancelled && !how.postcopy && watch.lost !== null) {
          cancelled = true;
          lostWhy = watch.lost;
          this.d.log.warn({ instance: name, to: to.name, why: lostWhy }, 'the destination of a live migration is lost: cancelling');
          await a.json(from, 'POST', this.path(name, '/migration/cancel')).catch(() => undefined); // (the next poll says how it ended)
        }
        if (!cancelled && !how.postcopy && Date.now() > deadline) {
          cancelled = true;
          await a.json(from, 'POST', this.path(name, '/migration/cancel'));
        }
        if (req.options.postcopy && !how.postcopy && !cancelled && shouldStartPostcopy(last)) await this.startPostcopy(name, from, how);
        if (how.postcopy && !destinationRuns && last.status === 'postcopy-active') {
          // the destination runs the guest while the rest of its pages come; if it cannot be told, it runs at finish
          destinationRuns = true;
          await a.json(to, 'POST', this.path(name, '/migration/postcopy')).catch((e: unknown) => {
            this.d.log.warn({ instance: name, host: to.name, error: (e as Error).message }, 'the destination of a postcopy migration did not run the guest yet: it will once the migration completes');
          });
        }
        await sleep(this.d.pollMs ?? POLL_MS);
      }
      watch.stop();
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
          undecided = true;
          throw new CorralError('MIGRATION_FAILED', `the migration of instance "${name}" reached its switch-over, but host ${to.name} could not be asked whether it runs the guest: the source on host ${from.name} is left paused (never two copies) until it answers: the cluster's migration recovery then settles it`, { name, outcome: 'unknown', host: from.name, to: to.name });
        }
        if (now.state !== 'running') throw e;
        fin = { instance: now };
      }
      // the destination runs the guest now: whatever follows, the source never runs again
      incoming = false;
      started = false;
      undecided = true;
      const result: MigrationResult = { ...resultOf(name, from.name, to.name, last, how), ...disks?.result() };
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
      // after the switch to postcopy nothing is rolled back: the destination holds the guest's newest state, and the
      // mark stays for the recovery (which waits on a postcopy it cannot settle: a person decides)
      const err = how.postcopy && !(isCorralError(e) && e.details.outcome === 'postcopy-failed') ? postcopyFailed(name, from, to, (e as Error).message) : e;
      if (how.postcopy) {
        incoming = started = false;
        undecided = true;
      }
      // (a driver that lost its lock acts no more: the recovery has the migration now)
      if (!p.lock?.lost) {
        await this.rollback(name, from, to, { incoming, started, undecided }, err, last, how);
        // what the destination made for the local disks (volumes, an image it received) goes once its instance has;
        // never while the destination may run the guest
        if (!undecided) await disks?.abandon(to).catch((x: unknown) => this.d.log.warn({ instance: name, error: (x as Error).message }, 'removing what a failed migration made on its destination failed'));
      }
      throw err;
    } finally {
      watch?.stop();
      await p.lock?.release();
    }
  }

  /**
   * Ask the source to switch to postcopy. `how.postcopy` is set before the call: an answer lost on the way may hide
   * a switch, and from a switch on nothing may be rolled back; a refusal the source answered (QEMU's, or a migration
   * that is no longer active) is no switch.
   */
  private async startPostcopy(name: string, from: HostRow, how: { postcopy: boolean }): Promise<void> {
    how.postcopy = true;
    try {
      await this.d.agents.json(from, 'POST', this.path(name, '/migration/postcopy'));
    } catch (e) {
      if (isCorralError(e) && e.code !== 'HOST_UNAVAILABLE') {
        how.postcopy = false;
        throw e;
      }
      this.d.log.warn({ instance: name, error: (e as Error).message }, 'the switch to postcopy got no answer: it is taken as made');
    }
  }

  /**
   * Undo a migration that failed: the destination goes first (a source that completed may run again only once its
   * destination is gone), then the source is asked to cancel and, if it waits in postmigrate, to run again. The mark
   * goes only when both sides are known to be settled; otherwise (`undecided`, a host that did not answer) it stays
   * for the recovery sweep (migration-recovery.ts).
   */
  private async rollback(name: string, from: HostRow, to: HostRow, o: { incoming: boolean; started: boolean; undecided: boolean }, e: unknown, last: MigrationFigures | null, how?: { tls: boolean; postcopy: boolean }): Promise<void> {
    const a = this.d.agents;
    const warn = (what: string) => (err: unknown): false => {
      this.d.log.warn({ instance: name, error: (err as Error).message }, what);
      return false;
    };
    const removed = !o.incoming || await a.call(to, 'DELETE', `${this.path(name)}?force=true&forget=true`)
      .then((r) => r.status < 300 || r.status === 404, warn('removing the destination of a failed migration failed'));
    let sourceAnswered = !o.started;
    if (o.started) {
      // (its status call resumes a source a failed switch-over left paused; an agent's own refusal is an answer too)
      sourceAnswered = await a.json<MigrationFigures>(from, 'POST', this.path(name, '/migration/cancel')).catch(() => a.json(from, 'GET', this.path(name, '/migration')))
        .then(() => true, (err: unknown) => (isCorralError(err) && err.code !== 'HOST_UNAVAILABLE') || warn('resuming the source of a failed migration failed')(err));
      // a source that completed waits in postmigrate: it runs again now that its destination is gone (only such a one)
      if (removed) await a.call(from, 'POST', this.path(name, '/migration/resume-source')).catch(warn('resuming the source of a failed migration failed'));
    }
    const settled = !o.undecided && removed && sourceAnswered;
    const reason = (e as Error).message;
    const event = {
      type: 'instance.migration-failed', host: from.name, instance: name,
      data: {
        from: from.name, to: to.name, reason, ...(isCorralError(e) ? { code: e.code, ...(e.details.outcome ? { outcome: e.details.outcome } : {}) } : {}),
        ...(last ? resultOf(name, from.name, to.name, last, how) : how ?? {}),
        ...(settled ? {} : { then: 'the migration stays marked until the cluster\'s migration recovery settles it (a host did not answer, or the destination may run)' }),
      },
    };
    await (settled ? this.d.instances.abortMigration(name, event) : this.d.events.record(event)).catch(warn('recording a failed migration failed'));
  }

  async cancel(name: string): Promise<MigrationFigures> {
    const { host } = await hostOf(this.d, name);
    return this.d.agents.json<MigrationFigures>(host, 'POST', this.path(name, '/migration/cancel'));
  }
}

/**
 * A migration that failed after its switch to postcopy: the guest's state is split between the hosts and neither
 * copy can run it on its own (QEMU's docs: in postcopy, a failure of either side loses the guest). The source stays
 * paused (never resumed) and the destination is left as it is (not killed): MIGRATION_FAILED, outcome postcopy-failed.
 */
function postcopyFailed(name: string, from: HostRow, to: HostRow, why: string): CorralError {
  return new CorralError('MIGRATION_FAILED', `the migration of instance "${name}" failed after it switched to postcopy (${why}): the guest ran on host ${to.name}, which still lacks memory pages that stayed on host ${from.name}, so neither copy can run it on its own; the source on ${from.name} is left paused (it never runs again by Corral's hand) and the destination on ${to.name} is left as it is; the guest's run is lost: delete one copy (corral delete on its host), then start it again from its disk`, { name, outcome: 'postcopy-failed', host: from.name, to: to.name });
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
