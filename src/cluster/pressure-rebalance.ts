/**
 * The memory-pressure controller's last resort, on a cluster controller run with --auto-rebalance
 * (CORRAL_AUTO_REBALANCE=1). A host whose balloons cannot free enough memory says so with an event of its own,
 * memory.unrelieved (services/pressure.ts), which reaches the cluster with its heartbeat and every controller through
 * its event feed. The controller then moves one guest off that host: Rebalancer.relieve (core/rebalance.ts's
 * planRelief: the move that leaves the pool most even, not to another host that reported pressure lately), checked
 * with the host and made through the Migrator of `corral migrate`.
 *
 * At most one such move per host per cooldown (CORRAL_AUTO_REBALANCE_COOLDOWN_S, default 300 s), decided on the
 * database, so that of several controllers one acts: the move is claimed by writing the event
 * host.pressure-rebalance, which is written only if that host has none younger than the cooldown (on the database's
 * clock, under an advisory lock). What came of it is host.pressure-rebalanced (the instance, where to, the outcome),
 * besides the migration's own events.
 */
import type pg from 'pg';
import type { StoredEvent } from '../store/store.js';
import type { ClusterEvents } from './cluster-events.js';
import { fromPg } from './pg-errors.js';
import type { MoveOutcome, Rebalancer, Skipped } from './rebalance.js';

export const DEFAULT_AUTO_REBALANCE_COOLDOWN_MS = 300_000;
/** "pres" in ASCII: serialises the claims of pressure moves across controllers */
export const PRESSURE_LOCK_KEY = '1886545267';

export interface PressureRebalanceDeps {
  feed: { subscribe(fn: (ev: StoredEvent) => void): () => void };
  /** claim this host's move now (false: one was made within the cooldown) */
  claim: (host: string, data: Record<string, unknown>) => Promise<boolean>;
  rebalancer: Pick<Rebalancer, 'relieve'>;
  events: Pick<ClusterEvents, 'record'>;
  log: { info: (o: object, m: string) => void; warn: (o: object, m: string) => void };
  cooldownMs?: number;
  now?: () => number;
}

/** What came of one host's pressure. */
export type PressureAction = 'busy' | 'cooling down' | { move: MoveOutcome | null; skipped: Skipped[] };

/** Claim a host's pressure move: the host.pressure-rebalance event, unless it has one younger than cooldownMs. */
export async function claimPressureMove(pool: pg.Pool, host: string, cooldownMs: number, data: Record<string, unknown>): Promise<boolean> {
  let client: pg.PoolClient;
  try {
    client = await pool.connect();
  } catch (e) {
    throw fromPg(e);
  }
  try {
    await client.query('BEGIN');
    await client.query('SELECT pg_advisory_xact_lock($1::bigint)', [PRESSURE_LOCK_KEY]);
    const r = await client.query(
      `INSERT INTO events (type, host, data) SELECT 'host.pressure-rebalance', $1, $2::jsonb
        WHERE NOT EXISTS (SELECT 1 FROM events WHERE type = 'host.pressure-rebalance' AND host = $1 AND at > now() - $3::float8 * interval '1 millisecond')`,
      [host, JSON.stringify(data), cooldownMs]);
    await client.query('COMMIT');
    return r.rowCount === 1;
  } catch (e) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw fromPg(e);
  } finally {
    client.release();
  }
}

export class PressureRebalancer {
  private unsubscribe: (() => void) | null = null;
  private readonly busy = new Set<string>();
  /** hosts that reported pressure, and when (no guest is moved to them within the cooldown) */
  private readonly pressured = new Map<string, number>();

  constructor(private readonly d: PressureRebalanceDeps) {}

  private get cooldownMs(): number {
    return this.d.cooldownMs ?? DEFAULT_AUTO_REBALANCE_COOLDOWN_MS;
  }

  start(): void {
    this.unsubscribe = this.d.feed.subscribe((ev) => {
      const host = ev.data.host;
      if (ev.type !== 'memory.unrelieved' || typeof host !== 'string') return;
      void this.onPressure(host, ev.data).catch((e: unknown) => this.d.log.warn({ host, error: (e as Error).message }, 'moving a guest off a host under memory pressure failed'));
    });
  }

  stop(): void {
    this.unsubscribe?.();
    this.unsubscribe = null;
  }

  /** A host reported memory pressure its balloons cannot relieve: move one guest off it (see the file's comment). */
  async onPressure(host: string, report: Record<string, unknown> = {}): Promise<PressureAction> {
    const now = (this.d.now ?? Date.now)();
    this.pressured.set(host, now);
    if (this.busy.has(host)) return 'busy';
    this.busy.add(host);
    try {
      const reason = `memory pressure on host ${host} that ballooning could not relieve${typeof report.short === 'number' ? ` (${report.short} bytes short of the threshold)` : ''}: one guest moves off it`;
      if (!(await this.d.claim(host, { reason, report }))) return 'cooling down';
      const avoid = new Set([...this.pressured].filter(([h, at]) => h !== host && now - at < this.cooldownMs).map(([h]) => h));
      const skipped: Skipped[] = [];
      const move = await this.d.rebalancer.relieve(host, avoid, skipped);
      const data = move === null
        ? { moved: false, skipped: skipped.map((s) => ({ instance: s.instance, code: s.code })), reason: 'no guest on it can move to another host now' }
        : {
          moved: move.outcome === 'migrated', instance: move.instance, to: move.to, outcome: move.outcome,
          ...(move.outcome === 'failed' ? { code: move.code } : {}), reason: move.outcome === 'migrated' ? `${move.instance} live-migrated to ${move.to}` : `moving ${move.instance} to ${move.to} failed`,
        };
      await this.d.events.record({ type: 'host.pressure-rebalanced', host, ...(move ? { instance: move.instance } : {}), data });
      this.d.log.info({ host, ...data }, 'memory pressure: auto-rebalance acted');
      return { move, skipped };
    } finally {
      this.busy.delete(host);
    }
  }
}
