/**
 * A cluster's audit log: the table `audit` (migration 9), one row per line a daemon's audit.log would have (the
 * entries of src/api/audit.ts), written by every controller, so that `corral audit` through any of them shows what
 * was done through all of them. An agent's heartbeat that is accepted is not written (it is the host's
 * last_heartbeat already, one every few seconds per host); a refused one is. The table keeps the latest `keep`
 * rows. A write that fails never fails the request: it is said once, and again only after one has succeeded.
 */
import type pg from 'pg';
import type { Role } from '../core/tokens.js';
import type { AuditEntry, AuditSink } from '../services/audit.js';
import { fromPg } from './pg-errors.js';

/** the rows kept, and how often (in writes of one controller) the older ones are deleted */
export const AUDIT_KEEP_ROWS = 1_000_000;
const PRUNE_EVERY = 1000;

const HEARTBEAT_PATH = '/v1/cluster/heartbeat';

interface AuditDbRow {
  at: Date; who: string | null; role: Role | null; peer: string | null; method: string; path: string;
  resource: string | null; status: number; code: string | null; ms: number;
}

export interface ClusterAuditOptions {
  keep?: number;
  /** where a failure to write is said (default: stderr) */
  warn?: (message: string) => void;
}

export class ClusterAudit implements AuditSink {
  private failing = false;
  private writes = 0;
  private readonly keep: number;
  private readonly warn: (message: string) => void;

  constructor(private readonly pool: pg.Pool, opts: ClusterAuditOptions = {}) {
    this.keep = opts.keep ?? AUDIT_KEEP_ROWS;
    this.warn = opts.warn ?? ((m) => { process.stderr.write(`${m}\n`); });
  }

  /** Write one entry. Never throws. */
  async record(e: AuditEntry): Promise<void> {
    if (e.path === HEARTBEAT_PATH && e.status < 400) return;
    try {
      await this.pool.query(
        'INSERT INTO audit (at, who, role, peer, method, path, resource, status, code, ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)',
        [e.time, e.who, e.role, e.peer, e.method, e.path, e.resource, e.status, e.code, e.ms]);
      if (++this.writes % PRUNE_EVERY === 0) await this.pool.query('DELETE FROM audit WHERE id <= (SELECT max(id) FROM audit) - $1', [this.keep]);
      if (this.failing) this.warn('corral: the cluster\'s audit table is written again');
      this.failing = false;
    } catch (err) {
      if (!this.failing) this.warn(`corral: cannot write the cluster's audit table (${(err as Error).message}); requests go on, unaudited until it can be written again`);
      this.failing = true;
    }
  }

  /** The last `limit` entries, oldest first. */
  async recent(limit: number): Promise<AuditEntry[]> {
    let r: pg.QueryResult<AuditDbRow>;
    try {
      r = await this.pool.query<AuditDbRow>(
        'SELECT at, who, role, peer, method, path, resource, status, code, ms FROM audit ORDER BY id DESC LIMIT $1', [limit]);
    } catch (e) {
      throw fromPg(e);
    }
    return r.rows.reverse().map((x) => ({
      time: x.at.toISOString(), who: x.who, role: x.role, via: 'tcp' as const, peer: x.peer, method: x.method, path: x.path,
      resource: x.resource, status: x.status, code: x.code, ms: x.ms,
    }));
  }
}
