/**
 * The cluster's instance list, kept by each controller between requests, so that a list of 10,000 instances costs
 * what changed since the last one rather than the whole table (ClusterInstances.listJson() builds it all in one
 * query: a quarter of a second at 10,000).
 *
 * What keeps it true: a trigger on `instances` (migration 8) sends a NOTIFY with the instance's name on every
 * insert, update and delete. PostgreSQL delivers a notification only once its transaction has committed, so a
 * name that arrives here can be read back at once and the row read is at least that new. The controller LISTENs
 * on a connection of its own *before* it reads the whole table the first time; from then on a list reads only the
 * names notified since the last one (a name notified again while it is being read stays due), plus the hosts'
 * freshness (a hundred rows), which changes with time alone. So that a list shows every change committed before it
 * was asked for (a controller's own create, or another controller's), it first sends a notification of its own on
 * that connection and waits for it to come back: notifications arrive in commit order, so the earlier ones are in. When the listening connection breaks, the next list
 * reads everything again after listening anew, so a notification lost meanwhile costs one full read, never a
 * stale row.
 *
 * Each row is built as ClusterInstances.listJson() builds it (its stored view with `rss`, `stale`, `reportedAt`
 * and `uptime` added; `unknown` with `lastState` when its host is not fresh or the view is from another host),
 * with uptime and freshness on the database's clock, read with the hosts at each list.
 */
import type pg from 'pg';
import { fromPg } from './pg-errors.js';

/** the channel the instances trigger notifies on (migration 8) */
export const INSTANCES_CHANNEL = 'corral_instances';
const BARRIER_MS = 5000;

interface Row {
  name: string;
  host: string;
  uuid: string | null;
  cpus: number;
  memory: string;
  spec_image: string | null;
  view_text: string | null;
  view_host: string | null;
  started_at: string | null;
  reported_at: string | null;
}

/** An instance as cached: what both shapes of its row need. */
interface Entry {
  row: Row;
  /** the stored view's text without its closing brace, when there is a view */
  open: string | null;
  /** the view's start time (ms), for uptime */
  startedMs: number | null;
  /** the `unknown` row less `reportedAt` (JSON text, without the closing brace): made when first needed */
  unknownOpen: string | null;
}

const ROW_COLUMNS = `name, host, uuid::text AS uuid, cpus, memory, spec->>'image' AS spec_image, view::text AS view_text,
  view->>'host' AS view_host, view->>'startedAt' AS started_at,
  to_char(reported_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS reported_at`;

function entryOf(r: Row): Entry {
  const started = r.started_at === null ? NaN : Date.parse(r.started_at);
  return { row: r, open: r.view_text === null ? null : r.view_text.slice(0, -1), startedMs: Number.isNaN(started) ? null : started, unknownOpen: null };
}

/** The row of an instance whose host is not fresh (or whose view is from a host it left), as listJson() makes it. */
function unknownOpen(r: Row): string {
  const view = r.view_text === null ? null : (JSON.parse(r.view_text) as Record<string, unknown>);
  const unknown = {
    name: r.name, uuid: typeof view?.uuid === 'string' ? view.uuid : r.uuid, state: 'unknown',
    image: typeof view?.image === 'string' ? view.image : r.spec_image,
    cpus: view?.cpus ?? r.cpus, memory: view?.memory ?? Number(r.memory), accel: null, pid: null, startedAt: null,
    lastError: view?.lastError ?? null, updatedAt: view?.updatedAt ?? null, host: r.host, uptime: null, rss: null,
    stale: true, lastState: view?.state ?? null,
  };
  return JSON.stringify(unknown).slice(0, -1);
}

export class InstanceList {
  private readonly entries = new Map<string, Entry>();
  /** the names in order, until one comes or goes */
  private sorted: string[] | null = null;
  /** names notified since they were last read */
  private due = new Set<string>();
  /** the listening connection, while it works; without one every list reads the whole table */
  private listener: pg.PoolClient | null = null;
  /** whether the cache holds the whole table as of the listener's start */
  private whole = false;
  private starting: Promise<void> | null = null;
  private closed = false;
  private refreshing: Promise<void> = Promise.resolve();
  private barriers = 0;
  private readonly waiting = new Map<string, () => void>();

  constructor(private readonly pool: pg.Pool, private readonly o: { unreachableAfterMs: number }) {}

  /** The list's JSON text: {"instances":[...]} by name. */
  async listJson(): Promise<string> {
    try {
      // one refresh at a time: a list that comes while another one reads waits for it, then reads what is due since
      const mine = this.refreshing.then(() => this.refresh());
      this.refreshing = mine.catch(() => undefined);
      await mine;
      return await this.render();
    } catch (e) {
      throw fromPg(e);
    }
  }

  private async refresh(): Promise<void> {
    await this.listen().catch(() => undefined);
    // every change committed before this list began has been notified once the barrier comes back
    if (this.listener) await this.barrier();
    if (!this.whole) {
      // everything, once listening: what changes from now on is notified
      const listening = this.listener;
      const all = await this.pool.query<Row>(`SELECT ${ROW_COLUMNS} FROM instances`);
      this.entries.clear();
      this.sorted = null;
      for (const r of all.rows) this.entries.set(r.name, entryOf(r));
      this.whole = listening !== null && this.listener === listening;
      return;
    }
    if (this.due.size === 0) return;
    const names = [...this.due];
    this.due = new Set();
    try {
      const r = await this.pool.query<Row>(`SELECT ${ROW_COLUMNS} FROM instances WHERE name = ANY($1::text[])`, [names]);
      const before = this.entries.size;
      for (const n of names) this.entries.delete(n);
      for (const row of r.rows) this.entries.set(row.name, entryOf(row));
      // an update keeps the order; a create or a delete changes the count (both at once: a name gone, another new)
      if (this.entries.size !== before || r.rows.length !== names.length) this.sorted = null;
    } catch (e) {
      for (const n of names) this.due.add(n);
      throw e;
    }
  }

  /**
   * A notification of its own, sent and waited for on the listening connection: PostgreSQL delivers notifications in
   * the order their transactions committed, so once it is back every change committed before it is in `due`. No
   * answer in BARRIER_MS: the connection is not trusted any more (the next list reads everything).
   */
  private async barrier(): Promise<void> {
    const client = this.listener!;
    const token = `:barrier:${++this.barriers}`;
    let timer: NodeJS.Timeout | undefined;
    const back = new Promise<boolean>((resolve) => {
      this.waiting.set(token, () => resolve(true));
      timer = setTimeout(() => resolve(false), BARRIER_MS);
    });
    try {
      await client.query('SELECT pg_notify($1, $2)', [INSTANCES_CHANNEL, token]);
      if (!(await back)) this.drop(client);
    } catch {
      this.drop(client);
    } finally {
      clearTimeout(timer);
      this.waiting.delete(token);
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    const l = this.listener;
    this.listener = null;
    if (l) {
      l.removeAllListeners('notification');
      try {
        await l.query(`UNLISTEN ${INSTANCES_CHANNEL}`);
      } catch {
        /* the connection is gone anyway */
      }
      l.release(true);
    }
  }

  /** Stop trusting a listening connection: the next list listens anew and reads everything. */
  private drop(client: pg.PoolClient): void {
    if (this.listener !== client) return;
    this.listener = null;
    this.whole = false;
    client.removeAllListeners('notification');
    client.release(true);
  }

  /** Listen on a connection of its own, if not listening already (a failure is tried again at the next list). */
  private listen(): Promise<void> {
    if (this.listener || this.closed) return Promise.resolve();
    this.starting ??= (async () => {
      const client = await this.pool.connect();
      const lost = (): void => this.drop(client);
      client.on('notification', (m) => {
        if (m.channel !== INSTANCES_CHANNEL || !m.payload) return;
        if (m.payload.startsWith(':barrier:')) this.waiting.get(m.payload)?.();
        else this.due.add(m.payload);
      });
      client.on('error', lost);
      client.on('end', lost);
      try {
        await client.query(`LISTEN ${INSTANCES_CHANNEL}`);
      } catch (e) {
        client.release(true);
        throw e;
      }
      this.listener = client;
      this.whole = false;
      this.due = new Set();
    })().finally(() => {
      this.starting = null;
    });
    return this.starting;
  }

  /** The rows by name, each fresh or `unknown` by its host's freshness now, on the database's clock. */
  private async render(): Promise<string> {
    const h = await this.pool.query<{ name: string; fresh: boolean; now_ms: string }>(
      `SELECT name, (fenced_at IS NULL AND last_heartbeat IS NOT NULL AND now() - last_heartbeat <= $1::float8 * interval '1 millisecond') AS fresh,
              (extract(epoch FROM now()) * 1000)::float8::text AS now_ms
         FROM hosts`, [this.o.unreachableAfterMs]);
    const fresh = new Set(h.rows.filter((r) => r.fresh).map((r) => r.name));
    const now = h.rows.length > 0 ? Number(h.rows[0]!.now_ms) : Date.now();
    this.sorted ??= [...this.entries.keys()].sort();
    const names = this.sorted;
    const parts: string[] = new Array(names.length);
    for (let i = 0; i < names.length; i++) {
      const e = this.entries.get(names[i]!)!;
      const r = e.row;
      const reportedAt = r.reported_at === null ? 'null' : `"${r.reported_at}"`;
      if (e.open !== null && r.view_host === r.host && fresh.has(r.host)) {
        const uptime = e.startedMs === null ? 'null' : String(Math.max(0, (now - e.startedMs) / 1000));
        parts[i] = `${e.open}, "rss": null, "stale": false, "reportedAt": ${reportedAt}, "uptime": ${uptime}}`;
      } else {
        e.unknownOpen ??= unknownOpen(r);
        parts[i] = `${e.unknownOpen},"reportedAt":${reportedAt}}`;
      }
    }
    return `{"instances":[${parts.join(',')}]}`;
  }
}
