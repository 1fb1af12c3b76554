/**
 * Where the cluster's instances are: one row per instance naming its host, and what placement reserved there
 * (cpus, memory, whether the instance runs or not: a create then a start can never overcommit a host).
 *
 * Placement is one transaction under a cluster-wide advisory lock, so that admission stays atomic across
 * controllers: it reads every host (state on the database's clock) and what its instances reserve, asks the pure
 * placer (src/core/placement.ts) for a host among the `up` ones that fit, and inserts the row. A request pinned to
 * a host (`--host`) is checked the same way; a group with anti-affinity keeps its members on different hosts; a
 * request with host labels (`--host-label`) goes only to hosts that carry them all. The row keeps the group and the
 * labels, so that an HA restart on another host (relocate) is constrained as the create was. When nothing fits,
 * NO_HOST_FITS says what each host lacks.
 *
 * Each row also keeps the instance as its host last reported it (`view`: a heartbeat's summary, or the agent's reply
 * to the controller's own call), which the cluster's list reads: see report(), setView() and listJson() at the end.
 *
 * A placement, a move of an HA instance, a move undone and a removal record their events (cluster-events.ts) in
 * the same transaction or statement as the change.
 */
import type pg from 'pg';
import { CorralError } from '../core/errors.js';
import { place, type HostState as PlacerHost, type Policy } from '../core/placement.js';
import { formatSize } from '../core/units.js';
import { HOST_COLUMNS, hostRow, type HostDbRow, type HostRow } from './cluster-store.js';
import { errorCode, fromPg, queryPg, UNIQUE_VIOLATION } from './pg-errors.js';
import type { InstanceSummary } from '../services/instance-view.js';
import { recordEvent, type NewEvent } from './cluster-events.js';

/** The advisory lock that serialises placement across controllers ("place" in ASCII). */
export const PLACEMENT_LOCK_KEY = '1886151011';

export interface PlaceRequest {
  name: string;
  cpus: number;
  memory: number;
  /** pin to this host */
  host?: string;
  group?: string;
  antiAffinity?: boolean;
  /** the host must carry each of these labels, with this value */
  labels?: Record<string, string>;
  /** the root disk on the shared pool: only hosts that mount it */
  shared?: boolean;
  ha?: boolean;
  /** the create request as the agent gets it (kept to make an HA instance again on another host) */
  spec?: Record<string, unknown>;
  /** why it goes where it goes, for the instance.placed event (default: pinned, or the policy's choice) */
  why?: string;
  /** the request as kept, once the host is chosen (`hosts`: all of them, as read under the lock); default `spec` */
  specFor?: (host: HostRow, hosts: HostRow[]) => Record<string, unknown> | undefined;
}

export interface ClusterInstance {
  name: string;
  host: string;
  uuid: string | null;
  cpus: number;
  memory: number;
  group: string | null;
  antiAffinity: boolean;
  /** the labels its host must carry (the create's hostLabels); null: none */
  hostLabels: Record<string, string> | null;
  pool: 'local' | 'shared';
  ha: boolean;
  spec: Record<string, unknown> | null;
  createdAt: string;
}

interface InstanceDbRow {
  name: string; host: string; uuid: string | null; cpus: number; memory: string; grp: string | null; anti_affinity: boolean;
  host_labels: Record<string, string> | null; pool: 'local' | 'shared'; ha: boolean; spec: Record<string, unknown> | null; created_at: Date;
}

const COLUMNS = 'name, host, uuid::text AS uuid, cpus, memory, grp, anti_affinity, host_labels, pool, ha, spec, created_at';

function instanceRow(r: InstanceDbRow): ClusterInstance {
  return {
    name: r.name, host: r.host, uuid: r.uuid, cpus: r.cpus, memory: Number(r.memory), group: r.grp, antiAffinity: r.anti_affinity,
    hostLabels: r.host_labels, pool: r.pool, ha: r.ha, spec: r.spec, createdAt: r.created_at.toISOString(),
  };
}

const hasLabels = (req: PlaceRequest): boolean => req.labels !== undefined && Object.keys(req.labels).length > 0;

interface Reserved { cpus: number; memory: number; instances: number }

function capacityOf(h: HostRow): { cpus: number; memory: number } {
  const c = (h.capacity ?? {}) as { cpus?: unknown; memory?: unknown };
  return { cpus: typeof c.cpus === 'number' ? c.cpus : 0, memory: typeof c.memory === 'number' ? c.memory : 0 };
}

/** Why one host cannot take a request (null: it can). */
export function whyNot(h: HostRow, reserved: Reserved, req: PlaceRequest, groupHosts: Set<string>): string | null {
  if (h.state !== 'up') return `is ${h.state}`;
  if (groupHosts.has(h.name)) return `already holds an instance of group "${req.group}" (anti-affinity)`;
  if (req.shared && !h.sharedPool) return 'mounts no shared pool';
  const missing = Object.entries(req.labels ?? {}).filter(([k, v]) => !Object.hasOwn(h.labels, k) || h.labels[k] !== v).map(([k, v]) => `${k}=${v}`);
  if (missing.length > 0) return `lacks the label${missing.length === 1 ? '' : 's'} ${missing.join(', ')}`;
  const cap = capacityOf(h);
  const lacks: string[] = [];
  const freeMem = cap.memory - reserved.memory;
  const freeCpu = cap.cpus - reserved.cpus;
  if (freeMem < req.memory) lacks.push(`memory (${formatSize(Math.max(0, freeMem))} free of ${formatSize(cap.memory)}, ${formatSize(req.memory)} asked)`);
  if (freeCpu < req.cpus) lacks.push(`vCPUs (${Math.max(0, freeCpu)} free of ${cap.cpus}, ${req.cpus} asked)`);
  return lacks.length > 0 ? `lacks ${lacks.join(' and ')}` : null;
}

export class ClusterInstances {
  constructor(private readonly pool: pg.Pool, private readonly o: { unreachableAfterMs: number; policy: Policy }) {}

  private q<R extends pg.QueryResultRow>(sql: string, params: unknown[] = []): Promise<pg.QueryResult<R>> {
    return queryPg<R>(this.pool, sql, params);
  }

  /** Place a new instance: see the file's comment. Returns its row and its host. */
  async place(req: PlaceRequest): Promise<{ instance: ClusterInstance; host: HostRow }> {
    return this.underPlacementLock(async (client) => {
      const taken = await client.query<{ host: string }>('SELECT host FROM instances WHERE name = $1', [req.name]);
      if (taken.rows[0]) throw new CorralError('ALREADY_EXISTS', `an instance named "${req.name}" exists (on host ${taken.rows[0].host})`, { name: req.name });
      const { got, hosts } = await this.choose(client, req);
      const spec = req.specFor ? req.specFor(hosts.find((h) => h.name === got.host)!, hosts) : req.spec;
      const r = await client.query<InstanceDbRow>(
        `INSERT INTO instances (name, host, cpus, memory, grp, anti_affinity, host_labels, pool, ha, spec) VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8, $9, $10::jsonb)
         RETURNING ${COLUMNS}`,
        [req.name, got.host, req.cpus, req.memory, req.group ?? null, req.antiAffinity === true, hasLabels(req) ? JSON.stringify(req.labels) : null,
          req.shared ? 'shared' : 'local', req.ha === true, spec ? JSON.stringify(spec) : null]);
      await recordEvent(client, {
        type: 'instance.placed', host: got.host, instance: req.name,
        data: { cpus: req.cpus, memory: req.memory, ha: req.ha === true, reason: req.why ?? (req.host !== undefined ? `pinned to host ${req.host}` : `chosen by the ${this.o.policy} policy`) },
      });
      return { instance: instanceRow(r.rows[0]!), host: hosts.find((h) => h.name === got.host)! };
    }, (e) => (errorCode(e) === UNIQUE_VIOLATION ? new CorralError('ALREADY_EXISTS', `an instance named "${req.name}" exists`, { name: req.name }) : e));
  }

  /** One transaction under the cluster-wide placement lock; `mapError` may turn a failure into a coded one. */
  private underPlacementLock<T>(fn: (client: pg.PoolClient) => Promise<T>, mapError: (e: unknown) => unknown = (e) => e): Promise<T> {
    return this.inTransaction(async (client) => {
      await client.query('SELECT pg_advisory_xact_lock($1::bigint)', [PLACEMENT_LOCK_KEY]);
      return fn(client);
    }, mapError);
  }

  /**
   * The host a request goes to, among `up` hosts (all but `exclude`, and none of `unfit`, whose values say why);
   * NO_HOST_FITS, naming what each lacks, when none.
   */
  private async choose(client: pg.PoolClient, req: PlaceRequest, exclude?: string, unfit?: ReadonlyMap<string, string>): Promise<{ got: { host: string }; hosts: HostRow[] }> {
    const hosts = (await client.query<HostDbRow>(`SELECT ${HOST_COLUMNS} FROM hosts ORDER BY name`, [this.o.unreachableAfterMs])).rows.map(hostRow).filter((h) => h.name !== exclude);
    const reserved = new Map<string, Reserved>(hosts.map((h) => [h.name, h.reserved]));
    const groupHosts = new Set<string>();
    if (req.group !== undefined) {
      const g = await client.query<{ host: string; anti: boolean }>('SELECT host, bool_or(anti_affinity) AS anti FROM instances WHERE grp = $1 GROUP BY host', [req.group]);
      const anti = req.antiAffinity === true || g.rows.some((r) => r.anti);
      if (anti) for (const r of g.rows) groupHosts.add(r.host);
    }
    const none: Reserved = { cpus: 0, memory: 0, instances: 0 };
    let pool = hosts;
    if (req.host !== undefined) {
      const pinned = hosts.find((h) => h.name === req.host);
      if (!pinned) throw new CorralError('HOST_NOT_FOUND', `no host named "${req.host}" in the cluster (corral host list shows them)`, { host: req.host });
      if (pinned.state !== 'up') throw new CorralError('HOST_UNAVAILABLE', `host "${pinned.name}" is ${pinned.state}: it takes no new instances`, { host: pinned.name, state: pinned.state });
      pool = [pinned];
    }
    const candidates: PlacerHost[] = pool.map((h) => ({
      name: h.name, capacity: capacityOf(h), allocated: reserved.get(h.name) ?? none, labels: h.labels,
      schedulable: h.state === 'up' && !groupHosts.has(h.name) && (!req.shared || h.sharedPool !== null) && !unfit?.has(h.name),
    }));
    const got = place(candidates, { cpus: req.cpus, memory: req.memory, ...(req.labels ? { labels: req.labels } : {}) }, this.o.policy);
    if (got.host === null) {
      const each = pool.map((h) => `${h.name} ${whyNot(h, reserved.get(h.name) ?? none, req, groupHosts) ?? unfit?.get(h.name) ?? 'fits'}`);
      const labels = hasLabels(req) ? ` with the host label${Object.keys(req.labels!).length === 1 ? '' : 's'} ${Object.entries(req.labels!).map(([k, v]) => `${k}=${v}`).join(', ')}` : '';
      const what = `${req.cpus} vCPU${req.cpus === 1 ? '' : 's'} and ${formatSize(req.memory)}${labels}`;
      throw new CorralError('NO_HOST_FITS', pool.length === 0 ? `no host can take ${what}: the cluster has no hosts` : `no host can take ${what}: ${each.join('; ')}`, { hosts: each });
    }
    return { got: { host: got.host }, hosts };
  }

  /**
   * Move an instance's row to another host (an HA restart: its host was fenced, `why`): placed as a new one would
   * be (its group and host labels as it was created with), among the `up` hosts other than `from`, under the
   * placement lock, recorded as instance.ha-restarting. The new host, or NO_HOST_FITS.
   */
  async relocate(name: string, from: string, why: string): Promise<HostRow> {
    return this.underPlacementLock(async (client) => {
      const cur = (await client.query<InstanceDbRow & { migrating_to: string | null }>(`SELECT ${COLUMNS}, migrating_to FROM instances WHERE name = $1 FOR UPDATE`, [name])).rows[0];
      if (!cur || cur.host !== from) throw new CorralError('INVALID_STATE', `instance "${name}" is no longer on host "${from}"`, { name });
      // a live migration's recovery decides first where it runs (migration-recovery.ts): its destination may hold it
      if (cur.migrating_to !== null) throw new CorralError('INVALID_STATE', `instance "${name}" is being live-migrated to host ${cur.migrating_to}: its migration is settled first`, { name });
      // what it reserves stays counted on its old host (left out of the choice) until the row moves
      const req: PlaceRequest = {
        name, cpus: cur.cpus, memory: Number(cur.memory), shared: cur.pool === 'shared', ha: cur.ha, ...(cur.grp ? { group: cur.grp } : {}), antiAffinity: cur.anti_affinity,
        ...(cur.host_labels ? { labels: cur.host_labels } : {}),
      };
      const { got, hosts } = await this.choose(client, req, from);
      await client.query('UPDATE instances SET host = $2 WHERE name = $1', [name, got.host]);
      await recordEvent(client, { type: 'instance.ha-restarting', host: from, instance: name, data: { from, to: got.host, reason: why } });
      return hosts.find((h) => h.name === got.host)!;
    });
  }

  /**
   * Reserve a live migration's destination (migration.ts): under the placement lock, the instance still on `from`
   * with no migration under way, the destination (`to`, or the placer's choice among the others, as an HA move;
   * a host with the shared pool for a shared-pool root disk) checked as a placement is; what the instance reserves
   * counts there too from now on (migrating_to, migration 12), until completeMigration or abortMigration. Recorded
   * as instance.migrating.
   */
  async reserveMigration(name: string, from: string, to?: string, unfit?: ReadonlyMap<string, string>): Promise<HostRow> {
    return this.underPlacementLock(async (client) => {
      const cur = (await client.query<InstanceDbRow & { migrating_to: string | null }>(`SELECT ${COLUMNS}, migrating_to FROM instances WHERE name = $1 FOR UPDATE`, [name])).rows[0];
      if (!cur) throw new CorralError('INSTANCE_NOT_FOUND', `instance "${name}" does not exist in the cluster`, { name });
      if (cur.host !== from) throw new CorralError('INVALID_STATE', `instance "${name}" is no longer on host "${from}"`, { name });
      if (cur.migrating_to !== null) throw new CorralError('NOT_MIGRATABLE', `instance "${name}" is being migrated to host ${cur.migrating_to} already`, { name, to: cur.migrating_to });
      if (to === from) throw new CorralError('INVALID_SPEC', `to: instance "${name}" runs on host ${from} already`, { field: 'to' });
      const req: PlaceRequest = {
        name, cpus: cur.cpus, memory: Number(cur.memory), shared: cur.pool === 'shared', ...(to !== undefined ? { host: to } : {}),
        ...(cur.grp ? { group: cur.grp } : {}), antiAffinity: cur.anti_affinity, ...(cur.host_labels ? { labels: cur.host_labels } : {}),
      };
      const { got, hosts } = await this.choose(client, req, from, unfit);
      await client.query('UPDATE instances SET migrating_to = $2 WHERE name = $1', [name, got.host]);
      await recordEvent(client, { type: 'instance.migrating', host: from, instance: name, data: { from, to: got.host, reason: to !== undefined ? `to host ${to}, as asked` : `chosen by the ${this.o.policy} policy` } });
      return hosts.find((h) => h.name === got.host)!;
    });
  }

  /** A live migration succeeded: the row names its destination, whose reservation it keeps; with its event. */
  async completeMigration(name: string, to: string, event: NewEvent): Promise<void> {
    await this.inTransaction(async (client) => {
      await client.query('UPDATE instances SET host = $2, migrating_to = NULL WHERE name = $1 AND migrating_to = $2', [name, to]);
      await recordEvent(client, event);
    });
  }

  /** A live migration was given up: the destination's reservation goes; with its event. */
  async abortMigration(name: string, event: NewEvent): Promise<void> {
    await this.inTransaction(async (client) => {
      await client.query('UPDATE instances SET migrating_to = NULL WHERE name = $1', [name]);
      await recordEvent(client, event);
    });
  }

  /** Put an instance back on a host (an HA restart that failed on the host it was moved to), with its event if any. */
  async setHost(name: string, host: string, event?: NewEvent): Promise<void> {
    await this.inTransaction(async (client) => {
      await client.query('UPDATE instances SET host = $2 WHERE name = $1', [name, host]);
      if (event) await recordEvent(client, event);
    });
  }

  /** One transaction; `mapError` may turn a failure into a coded one. */
  private async inTransaction<T>(fn: (client: pg.PoolClient) => Promise<T>, mapError: (e: unknown) => unknown = (e) => e): Promise<T> {
    let client: pg.PoolClient;
    try {
      client = await this.pool.connect();
    } catch (e) {
      throw fromPg(e);
    }
    try {
      await client.query('BEGIN');
      const out = await fn(client);
      await client.query('COMMIT');
      return out;
    } catch (e) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw fromPg(mapError(e));
    } finally {
      client.release();
    }
  }

  /** The HA instances whose row names this host. */
  async haOn(host: string): Promise<ClusterInstance[]> {
    return (await this.q<InstanceDbRow>(`SELECT ${COLUMNS} FROM instances WHERE host = $1 AND ha ORDER BY name`, [host])).rows.map(instanceRow);
  }

  /** Of these names, those whose row names another host than this one (the cluster moved them away). */
  async movedFrom(host: string, names: string[]): Promise<string[]> {
    if (names.length === 0) return [];
    // (a live migration's destination has it before the row moves there: not moved away from it)
    return (await this.q<{ name: string }>('SELECT name FROM instances WHERE name = ANY($1::text[]) AND host <> $2 AND migrating_to IS DISTINCT FROM $2', [names, host])).rows.map((r) => r.name);
  }

  async get(name: string): Promise<ClusterInstance | null> {
    const r = await this.q<InstanceDbRow>(`SELECT ${COLUMNS} FROM instances WHERE name = $1`, [name]);
    return r.rows[0] ? instanceRow(r.rows[0]) : null;
  }

  async list(): Promise<ClusterInstance[]> {
    return (await this.q<InstanceDbRow>(`SELECT ${COLUMNS} FROM instances ORDER BY name`)).rows.map(instanceRow);
  }

  /** Every instance with the state its host last reported (null: none yet) and where a live migration moves it (rebalance.ts). */
  async listWithStates(): Promise<Array<ClusterInstance & { state: string | null; migratingTo: string | null }>> {
    const r = await this.q<InstanceDbRow & { state: string | null; migrating_to: string | null }>(
      `SELECT ${COLUMNS}, CASE WHEN view->>'host' = host THEN view->>'state' END AS state, migrating_to FROM instances ORDER BY name`);
    return r.rows.map((x) => ({ ...instanceRow(x), state: x.state, migratingTo: x.migrating_to }));
  }

  async setUuid(name: string, uuid: string): Promise<void> {
    await this.q('UPDATE instances SET uuid = $2 WHERE name = $1', [name, uuid]);
  }

  /** Forget an instance (deleted on its host, or its create failed there: `why`), recorded as instance.deleted: whether there was one. */
  async remove(name: string, why: string): Promise<boolean> {
    return (await this.q(
      `WITH d AS (DELETE FROM instances WHERE name = $1 RETURNING name, host),
            e AS (INSERT INTO events (type, host, instance, data) SELECT 'instance.deleted', host, name, jsonb_build_object('reason', $2::text) FROM d)
       SELECT name FROM d`, [name, why])).rowCount === 1;
  }

  // ---- the instances as their hosts report them (the cluster's list reads these, never the hosts)

  /**
   * A host's report of its instances, in one statement: each summary goes into the row of that name whose host is
   * this one (a row the cluster moved to another host is left alone), unless the row holds a newer report from this
   * same host (updatedAt, on the host's clock: a beat built before a call the controller made and stored the reply
   * of). A row whose view is the same already is not written (a host sends its whole list when one instance
   * changed: the others cost a comparison, not a new row version and a notification each), so `reported_at` is
   * when the host last reported a change of it. Returns the names the cluster does not know at all (made on the
   * host directly).
   */
  async report(host: string, list: readonly InstanceSummary[]): Promise<string[]> {
    if (list.length === 0) return [];
    const r = await this.q<{ name: string }>(
      `WITH r AS (SELECT e.v || jsonb_build_object('host', $1::text) AS v FROM jsonb_array_elements($2::jsonb) AS e(v)),
            u AS (UPDATE instances i SET view = r.v, reported_at = now() FROM r
                  WHERE i.name = r.v->>'name' AND i.host = $1 AND ${NOT_OLDER} AND i.view IS DISTINCT FROM r.v)
       SELECT r.v->>'name' AS name FROM r WHERE NOT EXISTS (SELECT 1 FROM instances k WHERE k.name = r.v->>'name')`,
      [host, JSON.stringify(list)]);
    await this.followResizes(host, list.map((x) => x.name));
    return r.rows.map((x) => x.name);
  }

  /**
   * What the cluster reserves for an instance follows what its host says it has (a resize, a CPU or memory hotplug,
   * made through a controller or on the host): its vCPUs and memory as in its stored view, as the host's own pool
   * counts them. Only rows that differ are written, so the hosts' sums (migration 5's trigger) move only then.
   */
  private async followResizes(host: string, names: string[]): Promise<void> {
    await this.q(
      `UPDATE instances SET cpus = (view->>'cpus')::int, memory = (view->>'memory')::bigint
        WHERE host = $1 AND name = ANY($2::text[]) AND view->>'host' = $1
          AND jsonb_typeof(view->'cpus') = 'number' AND jsonb_typeof(view->'memory') = 'number'
          AND (cpus, memory) IS DISTINCT FROM ((view->>'cpus')::int, (view->>'memory')::bigint)`,
      [host, names]);
  }

  /**
   * Store an instance's view from an agent's reply to a call the controller made (its create, a start, a PATCH), so
   * that the list shows the controller's own actions at once; the same rules as report(). Sets the uuid when unset.
   */
  async setView(name: string, host: string, view: InstanceSummary): Promise<void> {
    await this.q(
      `WITH r AS (SELECT $3::jsonb || jsonb_build_object('host', $2::text) AS v)
       UPDATE instances i SET view = r.v, reported_at = now(), uuid = coalesce(i.uuid, (r.v->>'uuid')::uuid) FROM r
       WHERE i.name = $1 AND i.host = $2 AND ${NOT_OLDER}`,
      [name, host, JSON.stringify(view)]);
    await this.followResizes(host, [name]);
  }

  /**
   * The cluster's list, `{"instances":[...]}` as JSON text made by PostgreSQL in one query (no row is parsed or
   * serialised here: at 10,000 instances that is most of the time). Each instance as its host last reported it,
   * with `host`, `uptime` (seconds since startedAt, on the database's clock), `rss: null`, `stale: false` and
   * `reportedAt`; one whose host is unreachable or fenced, that no host reported yet, or whose view comes from a
   * host it left, has state `unknown`, `stale: true`, `lastState` (the last reported one, or null) and no pid.
   */
  async listJson(): Promise<string> {
    // a fresh row is its stored view's text with four fields appended (text, not jsonb operators: half the time)
    const r = await this.q<{ list: string }>(
      `SELECT '{"instances":[' || coalesce(string_agg(CASE
           WHEN i.view IS NOT NULL AND i.view->>'host' = i.host AND h.fenced_at IS NULL AND h.last_heartbeat IS NOT NULL
                AND now() - h.last_heartbeat <= $1::float8 * interval '1 millisecond'
             THEN left(i.view::text, -1) || ', "rss": null, "stale": false, "reportedAt": ' || coalesce(to_json(${ISO('i.reported_at')})::text, 'null')
               || ', "uptime": ' || CASE WHEN i.view->>'startedAt' IS NOT NULL
                 THEN greatest(0, extract(epoch FROM now() - (i.view->>'startedAt')::timestamptz))::float8::text ELSE 'null' END || '}'
           ELSE jsonb_build_object('name', i.name, 'uuid', coalesce(i.view->>'uuid', i.uuid::text), 'state', 'unknown', 'image', coalesce(i.view->>'image', i.spec->>'image'),
             'cpus', coalesce(i.view->'cpus', to_jsonb(i.cpus)), 'memory', coalesce(i.view->'memory', to_jsonb(i.memory)), 'accel', NULL, 'pid', NULL,
             'startedAt', NULL, 'lastError', i.view->'lastError', 'updatedAt', i.view->'updatedAt', 'host', i.host, 'uptime', NULL, 'rss', NULL,
             'stale', true, 'lastState', i.view->'state', 'reportedAt', ${ISO('i.reported_at')})::text
         END, ',' ORDER BY i.name), '') || ']}' AS list
       FROM instances i JOIN hosts h ON h.name = i.host`, [this.o.unreachableAfterMs]);
    return r.rows[0]!.list;
  }
}

/**
 * A report (r.v) replaces a row's view (i.view) unless the row holds a newer one from the same host. updatedAt is an
 * ISO 8601 time to the millisecond in UTC from that host's clock, so its text sorts as its time does.
 */
const NOT_OLDER = `(i.view IS NULL OR i.view->>'host' IS DISTINCT FROM r.v->>'host' OR coalesce(i.view->>'updatedAt', '') <= coalesce(r.v->>'updatedAt', ''))`;

/** A timestamptz as ISO 8601 text in UTC to the millisecond (as JavaScript's toISOString()), or NULL. */
const ISO = (col: string): string => `to_char(${col} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')`;
