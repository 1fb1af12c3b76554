/**
 * The recovery of live migrations that nobody drives any more: their controller died (killed, its host gone, its
 * database session cut), or gave up without knowing how the migration ended (a host did not answer). Their rows
 * still carry `migrating_to` (migration 12).
 *
 * The sweep runs at each controller's start and every CORRAL_MIGRATION_RECOVERY_MS (default 10 s): for each row
 * with `migrating_to`, it tries the migration's lock (migration-locks.ts) on a session of its own. Not got: a
 * controller drives it (or recovers it) now. Got: nobody does, and this controller settles it while holding the
 * lock, so that no new migration of it starts meanwhile:
 * 1. both agents are asked what their QEMU says (GET .../migration/facts); a host that does not answer is unknown,
 *    except that the HA instance of a fenced host has no live QEMU there (the fence killed it);
 * 2. the pure rules (src/core/migration-recovery.ts) decide: complete, roll back, cancel, or wait;
 * 3. complete: the destination is resumed if it waits paused with the whole guest, and unmarked as an incoming side
 *    (its agent's `finish`), the row moves there, the source's record goes (its `finish` when it waits in postmigrate, a forced delete keeping the
 *    shared disk when its QEMU is gone). Roll back: the destination is removed (forced delete, shared disk kept),
 *    the source resumed if it waits in postmigrate (`resume-source`), the mark goes. Cancel: the source is asked
 *    to cancel, and the facts are asked again until the migration has ended. Wait: nothing, asked again at the
 *    next sweep. A step that fails leaves the mark: the next sweep starts again from the facts.
 * Each settled migration is recorded as instance.migration-recovered (with the decision and its reason, in the
 * transaction that moves or clears the row); a wait is recorded once per reason (instance.migration-unresolved).
 *
 * What a host keeps of a migration that is over is removed through its heartbeat: it reports its incoming sides and
 * its sources waiting in postmigrate, and the controller answers those no migration will finish (leftovers()).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type pg from 'pg';
import { decideRecovery, type RecoveryDecision, type SideFacts } from '../core/migration-recovery.js';
import type { MigrationFacts, MigrationMark } from '../services/migration-recovery.js';
import { parse, type AgentClient } from './agent-client.js';
import type { ClusterEvents } from './cluster-events.js';
import type { ClusterInstances } from './cluster-instances.js';
import type { ClusterStore, HostRow } from './cluster-store.js';
import { summaryOfReply } from './instance-reports.js';
import { MIGRATION_LOCK_KEY } from './migration-locks.js';
import { queryPg } from './pg-errors.js';

const EVERY_MS = 10_000;
/** after a cancel, how long to wait before asking again, and how many times */
const SETTLE_MS = 500;
const SETTLE_ROUNDS = 40;

export interface RecoveryDeps {
  pool: pg.Pool;
  store: Pick<ClusterStore, 'getHost'>;
  instances: Pick<ClusterInstances, 'completeMigration' | 'abortMigration' | 'setView'>;
  agents: Pick<AgentClient, 'call'>;
  events: Pick<ClusterEvents, 'record'>;
  log: { info: (o: object, m: string) => void; warn: (o: object, m: string) => void };
  everyMs?: number;
  settleMs?: number;
}

/** What one recovery did. */
export interface RecoveryOutcome {
  name: string;
  action: RecoveryDecision['action'] | 'none' | 'failed';
  reason: string;
}

interface MarkedRow { host: string; migrating_to: string | null; uuid: string | null; ha: boolean }

/** One side as asked: the facts for the rules, and whether its record is this instance's (same uuid). */
interface Side { facts: SideFacts; host: HostRow | null; mine: boolean }

const path = (name: string, tail = ''): string => `/v1/instances/${encodeURIComponent(name)}${tail}`;

export class MigrationRecovery {
  private timer: NodeJS.Timeout | undefined;
  private running = false;
  private stopped = false;
  /** the last wait recorded per instance (recorded again only when its reason changes) */
  private readonly waits = new Map<string, string>();

  constructor(private readonly d: RecoveryDeps) {}

  start(): void {
    void this.sweep();
    this.timer = setInterval(() => void this.sweep(), this.d.everyMs ?? EVERY_MS);
    this.timer.unref();
  }

  stop(): void {
    this.stopped = true;
    clearInterval(this.timer);
  }

  /** One sweep (see the file's comment): what it did with each migration it could take. */
  async sweep(): Promise<RecoveryOutcome[]> {
    if (this.running || this.stopped) return [];
    this.running = true;
    const out: RecoveryOutcome[] = [];
    let client: pg.PoolClient | null = null;
    try {
      const marked = (await queryPg<{ name: string }>(this.d.pool, 'SELECT name FROM instances WHERE migrating_to IS NOT NULL ORDER BY name')).rows;
      if (marked.length === 0) return out;
      client = await this.d.pool.connect();
      client.on('error', () => undefined);
      for (const { name } of marked) {
        if (this.stopped) break;
        const got = (await client.query<{ ok: boolean }>(`SELECT pg_try_advisory_lock(${MIGRATION_LOCK_KEY}) AS ok`, [name])).rows[0]?.ok === true;
        if (!got) continue; // its driver lives, or another controller recovers it now
        try {
          out.push(await this.recover(name));
        } catch (e) {
          this.d.log.warn({ instance: name, error: (e as Error).message }, 'recovering a live migration failed; trying again at the next sweep');
          out.push({ name, action: 'failed', reason: (e as Error).message });
        } finally {
          await client.query(`SELECT pg_advisory_unlock(${MIGRATION_LOCK_KEY})`, [name]);
        }
      }
    } catch (e) {
      this.d.log.warn({ error: (e as Error).message }, 'the live-migration recovery sweep failed; trying again');
    } finally {
      // never back to the pool: a lock it might still hold would stay with a pooled session
      client?.release(true);
      this.running = false;
    }
    return out;
  }

  /** Settle the migration of `name`, whose lock the caller holds. */
  async recover(name: string): Promise<RecoveryOutcome> {
    let cancelled = false;
    for (let round = 0; ; round++) {
      const row = (await queryPg<MarkedRow>(this.d.pool, 'SELECT host, migrating_to, uuid::text AS uuid, ha FROM instances WHERE name = $1', [name])).rows[0];
      if (!row || row.migrating_to === null) {
        this.waits.delete(name);
        return { name, action: 'none', reason: 'no migration is marked any more' };
      }
      const source = await this.side(name, row, row.host);
      const destination = await this.side(name, row, row.migrating_to);
      const dec = decideRecovery(source.facts, destination.facts);
      if (dec.action === 'cancel') {
        if (round >= SETTLE_ROUNDS) return this.wait(name, row, 'the source\'s migration did not end after it was cancelled: asked again at the next sweep');
        if (!cancelled) {
          this.d.log.warn({ instance: name, reason: dec.reason }, 'recovering a live migration: cancelling it');
          const r = await this.d.agents.call(source.host!, 'POST', path(name, '/migration/cancel'));
          if (r.status >= 300) this.d.log.warn({ instance: name, status: r.status, body: r.body.toString().slice(0, 300) }, 'the source refused the cancel');
          cancelled = true;
        }
        await sleep(this.d.settleMs ?? SETTLE_MS);
        continue;
      }
      if (dec.action === 'wait') return this.wait(name, row, dec.reason);
      this.waits.delete(name);
      const data = { decision: dec.action === 'complete' ? 'completed' : 'rolled-back', reason: dec.reason, from: row.host, to: row.migrating_to, cancelled };
      if (dec.action === 'complete') await this.complete(name, row.migrating_to, source, destination, dec, data);
      else await this.rollBack(name, row.host, source, destination, dec, data);
      this.d.log.warn({ instance: name, ...data }, `live migration of ${name} recovered: ${data.decision}`);
      return { name, action: dec.action, reason: dec.reason };
    }
  }

  private async wait(name: string, row: MarkedRow, reason: string): Promise<RecoveryOutcome> {
    if (this.waits.get(name) !== reason) {
      this.waits.set(name, reason);
      this.d.log.warn({ instance: name, from: row.host, to: row.migrating_to, reason }, 'a live migration nobody drives cannot be settled yet');
      await this.d.events.record({ type: 'instance.migration-unresolved', host: row.host, instance: name, data: { from: row.host, to: row.migrating_to, reason } });
    }
    return { name, action: 'wait', reason };
  }

  /** What host `hostName` says of the instance (see the file's comment, step 1). */
  private async side(name: string, row: MarkedRow, hostName: string): Promise<Side> {
    const host = await this.d.store.getHost(hostName);
    if (!host) return { facts: { kind: 'unknown' }, host: null, mine: false };
    let facts: SideFacts = { kind: 'unknown' };
    let mine = false;
    try {
      const r = await this.d.agents.call(host, 'GET', path(name, '/migration/facts'));
      const body = parse(r.body) as Partial<MigrationFacts> & { error?: { code?: string } };
      if (r.status === 404 && body.error?.code === 'INSTANCE_NOT_FOUND') facts = { kind: 'gone' };
      else if (r.status === 200 && row.uuid !== null && body.uuid !== row.uuid) facts = { kind: 'gone' }; // another instance of that name: not this migration's
      else if (r.status === 200) {
        facts = { kind: 'there', run: body.run ?? null, migration: body.migration ?? 'none', incoming: body.incoming === true };
        mine = true;
      }
    } catch {
      // not answering: unknown
    }
    // an HA instance of a fenced host has no live QEMU there: its agent killed it when it lost its lease, or its
    // watchdog did, or the host is off (ha-manager.ts)
    if (facts.kind === 'unknown' && host.state === 'fenced' && row.ha) facts = { kind: 'gone' };
    return { facts, host, mine };
  }

  private async complete(name: string, to: string, source: Side, destination: Side, dec: RecoveryDecision, data: Record<string, unknown>): Promise<void> {
    let view: unknown = null;
    // its finish resumes it if it waits paused with the whole guest, and makes it an instance of its host (no longer
    // an incoming side: a running one may still be marked, its agent having died right after resuming it)
    const d = destination.facts;
    if (dec.resumeDestination || (d.kind === 'there' && d.incoming)) {
      const r = await this.d.agents.call(destination.host!, 'POST', path(name, '/migration/finish'));
      if (r.status >= 300) throw new Error(`resuming it on host ${to} failed: HTTP ${r.status} ${r.body.toString().slice(0, 300)}`);
      view = (parse(r.body) as { instance?: unknown }).instance ?? null;
    }
    await this.d.instances.completeMigration(name, to, { type: 'instance.migration-recovered', host: to, instance: name, data });
    if (view === null) view = await this.d.agents.call(destination.host!, 'GET', path(name)).then((r) => (r.status === 200 ? parse(r.body) : null), () => null);
    const summary = summaryOfReply(view, name);
    if (summary) await this.d.instances.setView(name, to, summary).catch(() => undefined);
    // the source's record goes: its QEMU waits in postmigrate (finish ends it) or is gone (a forced delete)
    const s = source.facts;
    if (source.mine && s.kind === 'there' && (s.run === 'postmigrate' || s.run === null)) {
      const r = await (s.run === null ? this.d.agents.call(source.host!, 'DELETE', `${path(name)}?force=true&forget=true`) : this.d.agents.call(source.host!, 'POST', path(name, '/migration/finish')))
        .catch((e: unknown) => ({ status: 0, body: Buffer.from((e as Error).message) }));
      if (r.status >= 300 || r.status === 0) this.d.log.warn({ instance: name, host: source.host!.name, body: r.body.toString().slice(0, 300) }, 'the source of a recovered migration could not be removed: its host\'s heartbeat removes it later');
    }
  }

  private async rollBack(name: string, from: string, source: Side, destination: Side, dec: RecoveryDecision, data: Record<string, unknown>): Promise<void> {
    if (destination.mine) {
      const r = await this.d.agents.call(destination.host!, 'DELETE', `${path(name)}?force=true&forget=true`);
      const gone = r.status < 300 || (parse(r.body) as { error?: { code?: string } })?.error?.code === 'INSTANCE_NOT_FOUND';
      if (!gone) throw new Error(`removing it from host ${destination.host!.name} failed: HTTP ${r.status} ${r.body.toString().slice(0, 300)}`);
    }
    if (dec.resumeSource && source.host) {
      const r = await this.d.agents.call(source.host, 'POST', path(name, '/migration/resume-source'));
      if (r.status >= 300) throw new Error(`resuming it on host ${from} failed: HTTP ${r.status} ${r.body.toString().slice(0, 300)}`);
    }
    await this.d.instances.abortMigration(name, { type: 'instance.migration-recovered', host: from, instance: name, data });
  }

  /**
   * Of the records a host reports that a migration left (agent-hooks.ts), those no migration will finish: the
   * cluster has no such instance, or another one of that name (uuid), or its row neither names this host nor, for an
   * incoming side, migrates to it. A source waiting in postmigrate whose row moved away is one too.
   */
  async leftovers(host: string, marks: MigrationMark[]): Promise<string[]> {
    if (marks.length === 0) return [];
    const r = await queryPg<{ name: string }>(this.d.pool,
      `SELECT m.name FROM jsonb_to_recordset($2::jsonb) AS m(name text, uuid text, side text)
         LEFT JOIN instances i ON i.name = m.name
        WHERE i.name IS NULL OR (i.uuid IS NOT NULL AND i.uuid::text <> m.uuid)
           OR (i.host <> $1 AND (m.side = 'outgoing' OR i.migrating_to IS DISTINCT FROM $1))
        ORDER BY m.name`, [host, JSON.stringify(marks)]);
    return r.rows.map((x) => x.name);
  }
}

