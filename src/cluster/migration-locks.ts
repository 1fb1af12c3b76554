/**
 * Which controller drives a live migration: the one holding the instance's migration lock, a PostgreSQL session
 * advisory lock on a connection of this controller's own (one connection holds the locks of all the migrations this
 * controller drives). PostgreSQL lets it go when that session ends, so a controller that dies (killed, its host
 * gone, its database connection cut) drives nothing any more, and the recovery sweep of any controller
 * (migration-recovery.ts) takes the migration over: it takes the same lock, on a session of its own, while it
 * works. A driver whose connection is lost learns it (`lost`) and stops acting, leaving the rest to the sweep.
 *
 * The key: a 64-bit hash of "corral migration NAME" (hashtextextended), in the one-key space of advisory locks
 * (the cluster's other locks are small constants: placement, the HA manager).
 */
import type pg from 'pg';
import { fromPg } from './pg-errors.js';

/** SQL for the lock key of the instance named by parameter $1. */
export const MIGRATION_LOCK_KEY = `hashtextextended('corral migration ' || $1::text, 0)`;

export interface DriverLock {
  /** the session that held it ended: another controller may recover the migration now */
  readonly lost: boolean;
  release(): Promise<void>;
}

export class MigrationLocks {
  private client: pg.PoolClient | null = null;
  private connecting: Promise<pg.PoolClient> | null = null;
  private readonly held = new Map<string, { lost: boolean }>();

  constructor(private readonly pool: pg.Pool, private readonly log: { warn: (o: object, m: string) => void }) {}

  private conn(): Promise<pg.PoolClient> {
    if (this.client) return Promise.resolve(this.client);
    this.connecting ??= this.pool.connect().then((c) => {
      c.on('error', (e: Error) => this.lose(c, e.message));
      c.on('end', () => this.lose(c, 'the connection ended'));
      this.client = c;
      return c;
    }).finally(() => { this.connecting = null; });
    return this.connecting;
  }

  /** The session is gone, and the locks with it. */
  private lose(c: pg.PoolClient, why: string): void {
    if (this.client !== c) return;
    this.client = null;
    if (this.held.size > 0) this.log.warn({ instances: [...this.held.keys()], why }, 'the database session holding live migrations\' locks ended: their recovery takes them over');
    for (const h of this.held.values()) h.lost = true;
    this.held.clear();
    c.release(true);
  }

  /** The lock of instance `name`'s migration, or null when a controller (this one too) holds it already. */
  async acquire(name: string): Promise<DriverLock | null> {
    if (this.held.has(name)) return null; // (a session takes its own advisory lock again: refused here)
    let c: pg.PoolClient;
    let ok: boolean;
    try {
      c = await this.conn();
      ok = (await c.query<{ ok: boolean }>(`SELECT pg_try_advisory_lock(${MIGRATION_LOCK_KEY}) AS ok`, [name])).rows[0]?.ok === true;
    } catch (e) {
      throw fromPg(e);
    }
    if (!ok || this.held.has(name)) {
      if (ok) await c.query(`SELECT pg_advisory_unlock(${MIGRATION_LOCK_KEY})`, [name]).catch(() => undefined);
      return null;
    }
    const h = { lost: false };
    this.held.set(name, h);
    return {
      get lost() { return h.lost; },
      release: async () => {
        if (this.held.get(name) !== h) return;
        this.held.delete(name);
        await c.query(`SELECT pg_advisory_unlock(${MIGRATION_LOCK_KEY})`, [name]).catch(() => undefined);
      },
    };
  }

  async close(): Promise<void> {
    const c = this.client;
    this.client = null;
    for (const h of this.held.values()) h.lost = true;
    this.held.clear();
    c?.release(true);
  }
}
