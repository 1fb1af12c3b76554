/**
 * The cluster's records in PostgreSQL (the tables of migrations.ts): the cluster CA, join tokens, hosts and the
 * serials of revoked agent certificates. Each method is one statement (or one transaction), so several controllers
 * may call them at once: what must happen once is decided by the database (ON CONFLICT, a conditional UPDATE),
 * and every time comparison (token expiry, heartbeat age) is made on the database's clock, now(), never a host's.
 * A host's state is computed in SQL from its row: fenced, else maintenance, else unreachable when its last
 * heartbeat is older than `unreachableAfterMs` (or it never sent one), else up.
 * A change worth telling (a host joined, removed, put in maintenance, fenced, back) records its event
 * (cluster-events.ts) in the same statement, through a CTE: both are written, or neither.
 */
import type pg from 'pg';
import { CorralError } from '../core/errors.js';
import { MAX_LABELS, validateLabelChanges, validateLabels } from '../core/labels.js';
import type { CpuReport } from '../core/cpu-models.js';
import type { MemoryReport } from '../core/migration-checks.js';
import type { ClusterSettings } from '../core/migration-transport.js';
import { CHECK_VIOLATION, constraintOf, errorCode, FOREIGN_KEY_VIOLATION, INVALID_TEXT, queryPg, UNIQUE_VIOLATION } from './pg-errors.js';

export type HostState = 'up' | 'maintenance' | 'unreachable' | 'fenced';

export interface NewHost {
  name: string;
  uuid: string;
  /** the agent's API URL, https://IP:PORT */
  address: string;
  certSerial: string;
  certFingerprint: string;
  labels?: Record<string, string>;
  agentVersion?: string | null;
}

export interface HostRow {
  name: string;
  uuid: string;
  address: string;
  certSerial: string;
  certFingerprint: string;
  labels: Record<string, string>;
  maintenance: boolean;
  /** where the host mounts the cluster's shared storage, as it last reported; null: none */
  sharedPool: string | null;
  /** what the instances placed on it reserve (kept by a trigger on the instances table) */
  reserved: { cpus: number; memory: number; instances: number };
  /** ISO 8601 times, to the millisecond (the database's clock) */
  fencedAt: string | null;
  fenceReason: string | null;
  /** what the agent last reported, as it sent it */
  capacity: unknown;
  allocation: unknown;
  agentVersion: string | null;
  joinedAt: string;
  lastHeartbeat: string | null;
  /** now() - last_heartbeat on the database's clock; null when it never sent one */
  heartbeatAgeMs: number | null;
  state: HostState;
  /** what its QEMU can run and its memory, as its agent last reported (null: not yet; migration 13) */
  cpuReport: CpuReport | null;
  memoryReport: MemoryReport | null;
}

export type ConsumeResult = 'ok' | 'unknown' | 'expired' | 'used';

export interface ClusterStoreOptions {
  /** a host whose last heartbeat is older than this (or that never sent one) is unreachable (default 15000) */
  unreachableAfterMs?: number;
}

/** The select list of a host, with its state and heartbeat age; $1 is unreachableAfterMs. */
export const HOST_COLUMNS = `name, uuid::text AS uuid, address, cert_serial, cert_fingerprint, labels, maintenance, shared_pool,
  reserved_cpus, reserved_memory, reserved_count,
  fenced_at, fence_reason, capacity, allocation, agent_version, joined_at, last_heartbeat, cpu_report, memory_report,
  -- greatest() skips NULLs, hence the CASE; 0 for a heartbeat written after this transaction's now()
  CASE WHEN last_heartbeat IS NOT NULL THEN greatest(0, extract(epoch FROM now() - last_heartbeat) * 1000)::float8 END AS heartbeat_age_ms,
  CASE WHEN fenced_at IS NOT NULL THEN 'fenced'
       WHEN maintenance THEN 'maintenance'
       WHEN last_heartbeat IS NULL OR now() - last_heartbeat > $1::float8 * interval '1 millisecond' THEN 'unreachable'
       ELSE 'up' END AS state`;

export interface HostDbRow {
  name: string; uuid: string; address: string; cert_serial: string; cert_fingerprint: string;
  labels: Record<string, string>; maintenance: boolean; shared_pool: string | null; fenced_at: Date | null; fence_reason: string | null;
  reserved_cpus: string; reserved_memory: string; reserved_count: number;
  capacity: unknown; allocation: unknown; agent_version: string | null; joined_at: Date; last_heartbeat: Date | null;
  heartbeat_age_ms: number | null; state: HostState; cpu_report: CpuReport | null; memory_report: MemoryReport | null;
}

const iso = (d: Date | null): string | null => (d === null ? null : d.toISOString());
/** A timestamptz column as ISO 8601 text in UTC to the millisecond, in SQL (as toISOString() would write it). */
const ISO = (col: string): string => `to_char(${col} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')`;

export function hostRow(r: HostDbRow): HostRow {
  return {
    name: r.name, uuid: r.uuid, address: r.address, certSerial: r.cert_serial, certFingerprint: r.cert_fingerprint,
    labels: r.labels, maintenance: r.maintenance, sharedPool: r.shared_pool, fencedAt: iso(r.fenced_at), fenceReason: r.fence_reason,
    reserved: { cpus: Number(r.reserved_cpus), memory: Number(r.reserved_memory), instances: r.reserved_count },
    capacity: r.capacity, allocation: r.allocation, agentVersion: r.agent_version, joinedAt: r.joined_at.toISOString(),
    lastHeartbeat: iso(r.last_heartbeat), heartbeatAgeMs: r.heartbeat_age_ms, state: r.state,
    cpuReport: r.cpu_report ?? null, memoryReport: r.memory_report ?? null,
  };
}

/** A value for a jsonb parameter: always JSON text (pg would turn a JS array into a PostgreSQL array). */
const json = (v: unknown): string | null => (v === undefined || v === null ? null : JSON.stringify(v));

const notFound = (name: string): CorralError => new CorralError('HOST_NOT_FOUND', `no host named "${name}" in the cluster`, { host: name });

export class ClusterStore {
  private readonly unreachableAfterMs: number;

  constructor(private readonly pool: pg.Pool, opts: ClusterStoreOptions = {}) {
    this.unreachableAfterMs = opts.unreachableAfterMs ?? 15_000;
  }

  private q<R extends pg.QueryResultRow>(sql: string, params: unknown[] = []): Promise<pg.QueryResult<R>> {
    return queryPg<R>(this.pool, sql, params);
  }

  // ---- the cluster CA

  async getCa(): Promise<{ certPem: string; keyPem: string } | null> {
    const r = await this.q<{ ca_cert: string; ca_key: string }>('SELECT ca_cert, ca_key FROM cluster');
    const row = r.rows[0];
    return row ? { certPem: row.ca_cert, keyPem: row.ca_key } : null;
  }

  /** Store the CA if the cluster has none: true when this call stored it (of controllers racing, exactly one). */
  async initCa(ca: { certPem: string; keyPem: string }): Promise<boolean> {
    const r = await this.q('INSERT INTO cluster (ca_cert, ca_key) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING', [ca.certPem, ca.keyPem]);
    return r.rowCount === 1;
  }

  // ---- the cluster's settings (core/migration-transport.ts: ClusterSettings)

  async getSettings(): Promise<ClusterSettings> {
    const r = await this.q<{ migration_tls: boolean }>('SELECT migration_tls FROM cluster');
    const row = r.rows[0];
    if (!row) throw new CorralError('CLUSTER_NOT_INITIALISED', 'this database holds no Corral cluster yet: run `corral cluster init --database URL` once');
    return { migrationTls: row.migration_tls };
  }

  /** Change the settings given; the settings as they are then. */
  async updateSettings(change: Partial<ClusterSettings>): Promise<ClusterSettings> {
    if (change.migrationTls !== undefined) await this.q('UPDATE cluster SET migration_tls = $1', [change.migrationTls]);
    return this.getSettings();
  }

  // ---- controller API tokens

  /** Register a controller's token (its SHA-256) under `name`; the same name registered again takes the new hash. */
  async registerApiToken(name: string, hash: string): Promise<void> {
    await this.q(
      `INSERT INTO api_tokens (name, hash) VALUES ($1, $2)
       ON CONFLICT (name) DO UPDATE SET hash = EXCLUDED.hash, created_at = now()`, [name, hash]);
  }

  // ---- join tokens

  /** A new join token, expiring ttlSeconds from now on the database's clock. A taken id is ALREADY_EXISTS. */
  async insertJoinToken(t: { id: string; secretHash: string; ttlSeconds: number }): Promise<{ expiresAt: string }> {
    try {
      const r = await this.q<{ expires_at: Date }>(
        `INSERT INTO join_tokens (id, secret_hash, expires_at) VALUES ($1, $2, now() + $3::float8 * interval '1 second')
         RETURNING expires_at`, [t.id, t.secretHash, t.ttlSeconds]);
      return { expiresAt: r.rows[0]!.expires_at.toISOString() };
    } catch (e) {
      if (errorCode(e) === UNIQUE_VIOLATION) throw new CorralError('ALREADY_EXISTS', `a join token with id "${t.id}" exists`, { id: t.id });
      if (errorCode(e) === CHECK_VIOLATION) throw new CorralError('INVALID_SPEC', 'secretHash: not a SHA-256 digest in lower-case hex', { field: 'secretHash' });
      throw e;
    }
  }

  /** What consumeJoinToken would say now, without using the token (a join checks it before any work). */
  async peekJoinToken(id: string, secretHash: string): Promise<ConsumeResult> {
    const r = await this.q<{ used: boolean; expired: boolean }>(
      'SELECT used_at IS NOT NULL AS used, expires_at <= now() AS expired FROM join_tokens WHERE id = $1 AND secret_hash = $2', [id, secretHash]);
    const row = r.rows[0];
    if (!row) return 'unknown';
    return row.used ? 'used' : row.expired ? 'expired' : 'ok';
  }

  /**
   * Use a join token for `host`: 'ok' once (of uses racing, exactly one), then 'used'; 'expired' past its expiry;
   * 'unknown' when no token has this id and secret (a wrong secret does not tell that the id exists).
   */
  async consumeJoinToken(id: string, secretHash: string, host: string): Promise<ConsumeResult> {
    // the conditional UPDATE decides: a racing one waits for this row's lock and then finds used_at set
    const r = await this.q(
      `UPDATE join_tokens SET used_at = now(), used_by = $3
       WHERE id = $1 AND secret_hash = $2 AND used_at IS NULL AND expires_at > now()`, [id, secretHash, host]);
    if (r.rowCount === 1) return 'ok';
    const why = await this.q<{ used: boolean }>('SELECT used_at IS NOT NULL AS used FROM join_tokens WHERE id = $1 AND secret_hash = $2', [id, secretHash]);
    const row = why.rows[0];
    if (!row) return 'unknown';
    return row.used ? 'used' : 'expired';
  }

  // ---- hosts

  /** Add a host; a name or uuid already in the cluster is HOST_EXISTS, a bad label INVALID_SPEC. */
  async insertHost(h: NewHost): Promise<HostRow> {
    try {
      const r = await this.q<HostDbRow>(
        `WITH h AS (INSERT INTO hosts (name, uuid, address, cert_serial, cert_fingerprint, labels, agent_version)
                    VALUES ($2, $3, $4, $5, $6, $7::jsonb, $8) RETURNING *),
              e AS (INSERT INTO events (type, host, data)
                    SELECT 'host.joined', name, jsonb_build_object('address', address, 'agentVersion', agent_version) FROM h)
         SELECT ${HOST_COLUMNS} FROM h`,
        [this.unreachableAfterMs, h.name, h.uuid, h.address, h.certSerial, h.certFingerprint, json(validateLabels('labels', h.labels ?? {})), h.agentVersion ?? null]);
      return hostRow(r.rows[0]!);
    } catch (e) {
      if (errorCode(e) === INVALID_TEXT) throw new CorralError('INVALID_SPEC', `uuid: "${h.uuid}" is not a UUID`, { field: 'uuid' });
      if (errorCode(e) !== UNIQUE_VIOLATION) throw e;
      if (constraintOf(e) === 'hosts_uuid_key') {
        throw new CorralError('HOST_EXISTS', `a host with uuid ${h.uuid} is already in the cluster (so "${h.name}" cannot join with it)`, { host: h.name, uuid: h.uuid });
      }
      throw new CorralError('HOST_EXISTS', `a host named "${h.name}" is already in the cluster`, { host: h.name });
    }
  }

  async getHost(name: string): Promise<HostRow | null> {
    const r = await this.q<HostDbRow>(`SELECT ${HOST_COLUMNS} FROM hosts WHERE name = $2`, [this.unreachableAfterMs, name]);
    return r.rows[0] ? hostRow(r.rows[0]) : null;
  }

  /** Every host, by name. */
  async listHosts(): Promise<HostRow[]> {
    const r = await this.q<HostDbRow>(`SELECT ${HOST_COLUMNS} FROM hosts ORDER BY name COLLATE "C"`, [this.unreachableAfterMs]);
    return r.rows.map(hostRow);
  }

  /** Put a host in or out of maintenance (an event when that changes it); HOST_NOT_FOUND when there is none. */
  async setMaintenance(name: string, on: boolean): Promise<HostRow> {
    const r = await this.q<HostDbRow>(
      `WITH old AS (SELECT name, maintenance FROM hosts WHERE name = $2 FOR UPDATE),
            u AS (UPDATE hosts h SET maintenance = $3 FROM old WHERE h.name = old.name RETURNING h.*),
            e AS (INSERT INTO events (type, host, data) SELECT 'host.maintenance', name, jsonb_build_object('on', $3::boolean)
                  FROM old WHERE maintenance <> $3)
       SELECT ${HOST_COLUMNS} FROM u`, [this.unreachableAfterMs, name, on]);
    if (!r.rows[0]) throw notFound(name);
    return hostRow(r.rows[0]);
  }

  /**
   * Change a host's labels in one statement: a key with a value is set (or overwritten), one with null removed.
   * A bad key or value (src/core/labels.ts), or more than MAX_LABELS labels on the host after it, is INVALID_SPEC
   * and nothing changes; HOST_NOT_FOUND when there is none.
   */
  async setLabels(name: string, changes: unknown): Promise<HostRow> {
    const c = validateLabelChanges('labels', changes);
    const set = Object.fromEntries(Object.entries(c).filter(([, v]) => v !== null));
    const gone = Object.keys(c).filter((k) => c[k] === null);
    const r = await this.q<HostDbRow>(
      `UPDATE hosts SET labels = (labels - $4::text[]) || $3::jsonb
       WHERE name = $2 AND (SELECT count(*) FROM jsonb_object_keys((labels - $4::text[]) || $3::jsonb)) <= $5
       RETURNING ${HOST_COLUMNS}`, [this.unreachableAfterMs, name, json(set), gone, MAX_LABELS]);
    if (r.rows[0]) return hostRow(r.rows[0]);
    if (!(await this.getHost(name))) throw notFound(name);
    throw new CorralError('INVALID_SPEC', `labels: host "${name}" would carry more than ${MAX_LABELS} labels: remove some (KEY-)`, { field: 'labels' });
  }

  /**
   * Mark a host fenced with a reason (fenced_at keeps the time of the first fence), or clear it with null;
   * HOST_NOT_FOUND when there is none. A fence is recorded as host.fenced; a fence lifted as host.recovered,
   * with `why` (or a fence's reason, when given).
   */
  async setFenced(name: string, reason: string | null, why?: string): Promise<HostRow> {
    const r = await this.q<HostDbRow>(
      `WITH old AS (SELECT name, fenced_at FROM hosts WHERE name = $2 FOR UPDATE),
            u AS (UPDATE hosts h SET fenced_at = CASE WHEN $3::text IS NULL THEN NULL ELSE coalesce(h.fenced_at, now()) END, fence_reason = $3
                  FROM old WHERE h.name = old.name RETURNING h.*),
            e AS (INSERT INTO events (type, host, data)
                  SELECT CASE WHEN $3::text IS NULL THEN 'host.recovered' ELSE 'host.fenced' END, name,
                    CASE WHEN $3::text IS NULL THEN jsonb_build_object('from', 'fenced', 'fencedAt', ${ISO('fenced_at')}, 'reason', coalesce($4::text, 'the fence was lifted'))
                         ELSE jsonb_build_object('reason', coalesce($4::text, $3::text)) END
                  FROM old WHERE (fenced_at IS NULL) <> ($3::text IS NULL))
       SELECT ${HOST_COLUMNS} FROM u`, [this.unreachableAfterMs, name, reason, why ?? null]);
    if (!r.rows[0]) throw notFound(name);
    return hostRow(r.rows[0]);
  }

  /**
   * Fence every host that holds HA instances (a live migration's destination holds one too: its agent and watchdog
   * kill it as they kill the others) and sent no heartbeat for `afterMs` (the lease plus the watchdog's timeout): the
   * hosts fenced now, with the reason.
   */
  async fenceExpired(afterMs: number): Promise<HostRow[]> {
    const r = await this.q<HostDbRow>(
      `WITH u AS (UPDATE hosts SET fenced_at = now(),
           fence_reason = 'no heartbeat since ' || coalesce(to_char(last_heartbeat AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'), 'it joined')
             || ': the lease and the host watchdog (' || $3 || ' ms together) have run out, so its HA instances are dead there and start elsewhere'
         WHERE fenced_at IS NULL AND coalesce(last_heartbeat, joined_at) < now() - $2::float8 * interval '1 millisecond'
           AND EXISTS (SELECT 1 FROM instances i WHERE (i.host = hosts.name OR i.migrating_to = hosts.name) AND i.ha)
         RETURNING *),
            e AS (INSERT INTO events (type, host, data)
                  SELECT 'host.fenced', name, jsonb_build_object('reason', fence_reason, 'by', 'deadline') FROM u)
       SELECT ${HOST_COLUMNS} FROM u`, [this.unreachableAfterMs, afterMs, String(afterMs)]);
    return r.rows.map(hostRow);
  }

  /**
   * The hosts that hold HA instances (a live migration's destination holds one too), are not fenced and sent no
   * heartbeat for `leaseMs` (their lease expired): those a fence command is run for.
   */
  async lostWithHa(leaseMs: number): Promise<HostRow[]> {
    const r = await this.q<HostDbRow>(
      `SELECT ${HOST_COLUMNS} FROM hosts
       WHERE fenced_at IS NULL AND coalesce(last_heartbeat, joined_at) < now() - $2::float8 * interval '1 millisecond'
         AND EXISTS (SELECT 1 FROM instances i WHERE (i.host = hosts.name OR i.migrating_to = hosts.name) AND i.ha)
       ORDER BY name`, [this.unreachableAfterMs, leaseMs]);
    return r.rows.map(hostRow);
  }

  /**
   * Fence a host that a fence command confirmed off, with that reason, if it is not fenced yet and its lease
   * (`leaseMs` without a heartbeat) is still expired (a host that reported meanwhile is left alone): the host
   * fenced now, or null.
   */
  async fenceConfirmed(name: string, leaseMs: number, reason: string): Promise<HostRow | null> {
    const r = await this.q<HostDbRow>(
      `WITH u AS (UPDATE hosts SET fenced_at = now(), fence_reason = $4
         WHERE name = $2 AND fenced_at IS NULL AND coalesce(last_heartbeat, joined_at) < now() - $3::float8 * interval '1 millisecond'
         RETURNING *),
            e AS (INSERT INTO events (type, host, data) SELECT 'host.fenced', name, jsonb_build_object('reason', fence_reason, 'by', 'fence command') FROM u)
       SELECT ${HOST_COLUMNS} FROM u`, [this.unreachableAfterMs, name, leaseMs, reason]);
    return r.rows[0] ? hostRow(r.rows[0]) : null;
  }

  /**
   * An agent's report: last_heartbeat = now() and what it said; false when no such host (it was removed). A host
   * that was unreachable (not fenced) and reports again is recorded as host.recovered, saying how long it was silent.
   */
  async heartbeat(name: string, rep: { capacity: unknown; allocation: unknown; agentVersion: string; sharedPool?: string | null; cpuReport?: CpuReport | null; memoryReport?: MemoryReport }): Promise<boolean> {
    const r = await this.q(
      `WITH old AS (SELECT name, last_heartbeat FROM hosts WHERE name = $1),
            u AS (UPDATE hosts h SET last_heartbeat = now(), capacity = $2::jsonb, allocation = $3::jsonb, agent_version = $4, shared_pool = $5,
                    cpu_report = coalesce($7::jsonb, h.cpu_report), memory_report = $8::jsonb
                  FROM old WHERE h.name = old.name RETURNING h.name, h.fenced_at, old.last_heartbeat AS prev),
            e AS (INSERT INTO events (type, host, data)
                  SELECT 'host.recovered', name, jsonb_build_object('from', 'unreachable', 'lastHeartbeat', ${ISO('prev')},
                    'silentMs', round(extract(epoch FROM now() - prev) * 1000), 'reason', 'it reports again')
                  FROM u WHERE fenced_at IS NULL AND prev < now() - $6::float8 * interval '1 millisecond')
       SELECT name FROM u`,
      [name, json(rep.capacity), json(rep.allocation), rep.agentVersion, rep.sharedPool ?? null, this.unreachableAfterMs,
        json(rep.cpuReport), json(rep.memoryReport)]);
    return r.rowCount === 1;
  }

  /** Remove a host and revoke its certificate's serial, in one statement: the row as it was, or null when none. */
  async removeHost(name: string): Promise<HostRow | null> {
    let r: pg.QueryResult<HostDbRow>;
    try {
      r = await this.q<HostDbRow>(
      `WITH gone AS (DELETE FROM hosts WHERE name = $2 RETURNING *),
            revoked AS (INSERT INTO revoked_certs (serial, host) SELECT cert_serial, name FROM gone ON CONFLICT (serial) DO NOTHING),
            e AS (INSERT INTO events (type, host, data) SELECT 'host.removed', name, jsonb_build_object('revokedSerial', cert_serial) FROM gone)
       SELECT ${HOST_COLUMNS} FROM gone`, [this.unreachableAfterMs, name]);
    } catch (e) {
      if (errorCode(e) !== FOREIGN_KEY_VIOLATION) throw e;
      const n = await this.q<{ n: string }>('SELECT count(*) AS n FROM instances WHERE host = $1', [name]);
      throw new CorralError('HOST_NOT_EMPTY', `host "${name}" holds ${n.rows[0]?.n ?? 'some'} instance(s): delete or move them first`, { host: name });
    }
    return r.rows[0] ? hostRow(r.rows[0]) : null;
  }

  /** Whether an agent certificate's serial was revoked. */
  async isRevoked(serial: string): Promise<boolean> {
    const r = await this.q('SELECT 1 FROM revoked_certs WHERE serial = $1', [serial]);
    return r.rowCount === 1;
  }
}
