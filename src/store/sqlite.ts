/** SQLite store (better-sqlite3, WAL). All SQL of the embedded store lives here. */
import Database from 'better-sqlite3';
import { chmodSync, existsSync } from 'node:fs';
import { CorralError } from '../core/errors.js';
import type { InstanceRow, PlacedNic, Store, StoredEvent, TokenRow } from './store.js';
import { readStoredSpec } from './stored-spec.js';
import type { InstanceSpec } from '../core/spec-schema.js';
import type { InstanceState } from '../core/state.js';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS instances (
  uuid TEXT PRIMARY KEY,
  name TEXT NOT NULL UNIQUE,
  spec TEXT NOT NULL,
  state TEXT NOT NULL,
  accel TEXT,
  pid INTEGER,
  pid_start INTEGER,
  mac TEXT NOT NULL,
  created_at TEXT NOT NULL,
  started_at TEXT,
  last_error TEXT,
  updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS instance_nics (
  uuid TEXT NOT NULL,
  instance TEXT NOT NULL,
  mac TEXT NOT NULL,
  nic TEXT NOT NULL,
  forwards INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS instances_state ON instances (state);
CREATE INDEX IF NOT EXISTS instance_nics_uuid ON instance_nics (uuid);
CREATE INDEX IF NOT EXISTS instance_nics_mac ON instance_nics (mac);
CREATE INDEX IF NOT EXISTS instance_nics_forwards ON instance_nics (forwards) WHERE forwards = 1;
CREATE TABLE IF NOT EXISTS events (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  time TEXT NOT NULL,
  type TEXT NOT NULL,
  instance TEXT,
  data TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS api_tokens (
  name TEXT PRIMARY KEY,
  role TEXT NOT NULL,
  hash TEXT NOT NULL UNIQUE,
  created_at TEXT NOT NULL,
  expires_at TEXT,
  last_used_at TEXT,
  revoked_at TEXT
);
`;

const KEEP_EVENTS = 10_000;

interface Raw {
  uuid: string; name: string; spec: string; state: string; accel: string | null; pid: number | null; pid_start: number | null;
  mac: string; created_at: string; started_at: string | null; last_error: string | null; updated_at: string;
}

const COLUMNS: Record<string, string> = {
  spec: 'spec', state: 'state', accel: 'accel', pid: 'pid', pidStart: 'pid_start', mac: 'mac',
  startedAt: 'started_at', lastError: 'last_error', updatedAt: 'updated_at',
};

function fromRaw(r: Raw, spec: InstanceSpec): InstanceRow {
  return {
    uuid: r.uuid, name: r.name, spec, state: r.state as InstanceRow['state'],
    accel: r.accel as InstanceRow['accel'], pid: r.pid, pidStart: r.pid_start, mac: r.mac, createdAt: r.created_at,
    startedAt: r.started_at, lastError: r.last_error, updatedAt: r.updated_at,
  };
}

interface RawToken {
  name: string; role: string; hash: string; created_at: string; expires_at: string | null; last_used_at: string | null; revoked_at: string | null;
}

const tokenFromRaw = (r: RawToken): TokenRow => ({
  name: r.name, role: r.role as TokenRow['role'], hash: r.hash, createdAt: r.created_at, expiresAt: r.expires_at, lastUsedAt: r.last_used_at, revokedAt: r.revoked_at,
});

export class SqliteStore implements Store {
  private db: Database.Database;
  private eventCount = 0;
  private statements = new Map<string, Database.Statement>();
  /** uuid -> the spec text (and MAC) last found valid: a row read again unchanged is parsed, not checked again */
  private validSpecs = new Map<string, string>();

  /**
   * `onFull`: called when a write finds the filesystem full; when it frees space (the data dir's reserve,
   * src/host/reserve.ts) the write is tried once more.
   */
  constructor(file: string, private opts: { onFull?: () => boolean } = {}) {
    this.db = new Database(file);
    this.db.pragma('journal_mode = WAL');
    // FULL: a committed transaction survives a power loss too (NORMAL in WAL mode may lose the last ones), so a
    // row never says less than the files and processes the operation already made
    this.db.pragma('synchronous = FULL');
    // the database is the daemon's alone (older daemons made it 0644); -wal and -shm follow the same mode
    if (file !== ':memory:') for (const f of [file, `${file}-wal`, `${file}-shm`]) if (existsSync(f)) chmodSync(f, 0o600);
    this.db.pragma('busy_timeout = 5000');
    this.db.exec(SCHEMA);
    this.indexNics();
  }

  /**
   * instance_nics is an index of the specs' NICs (MACs, forwards), so that planning a NIC reads no instance: it
   * is derived, made again from the specs at every open (so a database from before it, or edited by hand, is
   * right) and kept in step with each spec write, in the same transaction.
   */
  private indexNics(): void {
    this.db.transaction(() => {
      this.sql('DELETE FROM instance_nics').run();
      for (const row of this.listInstances()) this.putNics(row.uuid, row.name, row.spec);
    })();
  }

  private putNics(uuid: string, instance: string, spec: InstanceSpec): void {
    this.sql('DELETE FROM instance_nics WHERE uuid = ?').run(uuid);
    const add = this.sql('INSERT INTO instance_nics (uuid, instance, mac, nic, forwards) VALUES (?, ?, ?, ?, ?)');
    for (const nic of spec.nics) add.run(uuid, instance, nic.mac, JSON.stringify(nic), nic.forwards?.length ? 1 : 0);
  }

  macInUse(mac: string): boolean {
    return this.sql('SELECT 1 FROM instance_nics WHERE mac = ? LIMIT 1').get(mac) !== undefined;
  }

  nicsWithForwards(): PlacedNic[] {
    const rows = this.sql('SELECT instance, nic FROM instance_nics WHERE forwards = 1').all() as Array<{ instance: string; nic: string }>;
    return rows.map((r) => ({ instance: r.instance, nic: JSON.parse(r.nic) as PlacedNic['nic'] }));
  }

  private row(r: Raw): InstanceRow {
    const key = `${r.mac}\n${r.spec}`;
    const spec = readStoredSpec(r.name, r.spec, r.mac, this.validSpecs.get(r.uuid) === key);
    this.validSpecs.set(r.uuid, key);
    return fromRaw(r, spec);
  }

  /** A prepared statement, prepared once per text (preparing costs more than running most of these). */
  private sql(text: string): Database.Statement {
    let st = this.statements.get(text);
    if (!st) {
      st = this.db.prepare(text);
      this.statements.set(text, st);
    }
    return st;
  }

  /** A write, tried again once when the filesystem was full and onFull made room. */
  private write<T>(fn: () => T): T {
    try {
      return fn();
    } catch (e) {
      if ((e as { code?: unknown }).code !== 'SQLITE_FULL' || !this.opts.onFull?.()) throw e;
      return fn();
    }
  }

  listInstances(states?: readonly InstanceState[]): InstanceRow[] {
    if (!states) return (this.sql('SELECT * FROM instances ORDER BY name').all() as Raw[]).map((r) => this.row(r));
    const rows = this.sql(`SELECT * FROM instances WHERE state IN (SELECT value FROM json_each(?)) ORDER BY name`).all(JSON.stringify(states)) as Raw[];
    return rows.map((r) => this.row(r));
  }

  getInstance(name: string): InstanceRow | null {
    const r = this.sql('SELECT * FROM instances WHERE name = ?').get(name) as Raw | undefined;
    return r ? this.row(r) : null;
  }

  insertInstance(row: InstanceRow): void {
    try {
      this.write(this.db.transaction(() => {
        this.sql(`INSERT INTO instances (uuid, name, spec, state, accel, pid, pid_start, mac, created_at, started_at, last_error, updated_at)
          VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`).run(row.uuid, row.name, JSON.stringify(row.spec), row.state, row.accel, row.pid,
          row.pidStart, row.mac, row.createdAt, row.startedAt, row.lastError, row.updatedAt);
        this.putNics(row.uuid, row.name, row.spec);
      }));
    } catch (e) {
      if ((e as { code?: string }).code === 'SQLITE_CONSTRAINT_UNIQUE') {
        throw new CorralError('ALREADY_EXISTS', `instance "${row.name}" already exists`, { field: 'name' });
      }
      throw e;
    }
  }

  updateInstance(uuid: string, patch: Partial<Omit<InstanceRow, 'uuid' | 'name' | 'createdAt'>>): void {
    const sets: string[] = [];
    const values: unknown[] = [];
    const full = { ...patch, updatedAt: new Date().toISOString() };
    for (const [k, v] of Object.entries(full)) {
      const col = COLUMNS[k];
      if (!col) continue;
      sets.push(`${col} = ?`);
      values.push(k === 'spec' ? JSON.stringify(v) : v);
    }
    this.write(this.db.transaction(() => {
      this.sql(`UPDATE instances SET ${sets.join(', ')} WHERE uuid = ?`).run(...values, uuid);
      if (patch.spec) {
        const name = (this.sql('SELECT name FROM instances WHERE uuid = ?').get(uuid) as { name: string } | undefined)?.name;
        if (name !== undefined) this.putNics(uuid, name, patch.spec);
      }
    }));
  }

  deleteInstance(uuid: string): void {
    this.write(this.db.transaction(() => {
      this.sql('DELETE FROM instances WHERE uuid = ?').run(uuid);
      this.sql('DELETE FROM instance_nics WHERE uuid = ?').run(uuid);
    }));
    this.validSpecs.delete(uuid);
  }

  appendEvent(type: string, instance: string | null, data: Record<string, unknown>): StoredEvent {
    const time = new Date().toISOString();
    const info = this.write(() => this.sql('INSERT INTO events (time, type, instance, data) VALUES (?, ?, ?, ?)').run(time, type, instance, JSON.stringify(data)));
    const id = Number(info.lastInsertRowid);
    if (++this.eventCount % 1000 === 0) this.write(() => this.sql('DELETE FROM events WHERE id <= ?').run(id - KEEP_EVENTS));
    return { id, time, type, instance, data };
  }

  eventsSince(id: number, limit: number): StoredEvent[] {
    const rows = this.sql('SELECT * FROM events WHERE id > ? ORDER BY id LIMIT ?').all(id, limit) as Array<{
      id: number; time: string; type: string; instance: string | null; data: string;
    }>;
    return rows.map((r) => ({ ...r, data: JSON.parse(r.data) }));
  }

  latestEvents(limit: number): StoredEvent[] {
    const rows = this.sql('SELECT * FROM events ORDER BY id DESC LIMIT ?').all(limit) as Array<{
      id: number; time: string; type: string; instance: string | null; data: string;
    }>;
    return rows.reverse().map((r) => ({ ...r, data: JSON.parse(r.data) }));
  }

  listTokens(): TokenRow[] {
    return (this.sql('SELECT * FROM api_tokens ORDER BY name').all() as RawToken[]).map(tokenFromRaw);
  }

  getToken(name: string): TokenRow | null {
    const r = this.sql('SELECT * FROM api_tokens WHERE name = ?').get(name) as RawToken | undefined;
    return r ? tokenFromRaw(r) : null;
  }

  tokenByHash(hash: string): TokenRow | null {
    const r = this.sql('SELECT * FROM api_tokens WHERE hash = ?').get(hash) as RawToken | undefined;
    return r ? tokenFromRaw(r) : null;
  }

  insertToken(row: TokenRow): void {
    try {
      this.write(() => this.sql('INSERT INTO api_tokens (name, role, hash, created_at, expires_at, last_used_at, revoked_at) VALUES (?, ?, ?, ?, ?, ?, ?)')
        .run(row.name, row.role, row.hash, row.createdAt, row.expiresAt, row.lastUsedAt, row.revokedAt));
    } catch (e) {
      if ((e as { code?: string }).code === 'SQLITE_CONSTRAINT_PRIMARYKEY') throw new CorralError('ALREADY_EXISTS', `token "${row.name}" already exists`, { field: 'name' });
      throw e;
    }
  }

  deleteToken(name: string): void {
    this.write(() => this.sql('DELETE FROM api_tokens WHERE name = ?').run(name));
  }

  setTokenLastUsed(name: string, at: string): void {
    this.write(() => this.sql('UPDATE api_tokens SET last_used_at = ? WHERE name = ?').run(at, name));
  }

  revokeToken(name: string, at: string): void {
    this.write(() => this.sql('UPDATE api_tokens SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL').run(at, name));
  }

  close(): void {
    this.db.close();
  }
}
