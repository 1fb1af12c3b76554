/**
 * The cluster's events (the `events` table, migration 10): what happened to hosts and instances and why, as the
 * controllers record it, in the same transaction as the change where there is one (the statement's own CTE, see
 * cluster-store.ts and cluster-instances.ts, or the transaction's client given to record()).
 *
 * On the wire an event is a single daemon's (StoredEvent: id, time, type, instance, data), with the host it is
 * about as data.host, so that `corral events` reads a controller as it reads a daemon.
 *
 * Retention: prune() keeps the newest KEEP_EVENTS events and none older than KEEP_DAYS days; every controller
 * calls it now and then (deleting what another already deleted is harmless).
 */
import type pg from 'pg';
import type { StoredEvent } from '../store/store.js';
import { fromPg, queryPg } from './pg-errors.js';

/** the newest events kept */
export const KEEP_EVENTS = 10_000;
/** no event is kept longer than this */
export const KEEP_DAYS = 30;

/** A pool, or the client of a transaction. */
export type Queryable = Pick<pg.Pool, 'query'> | Pick<pg.ClientBase, 'query'>;

export interface NewEvent {
  type: string;
  /** the host the event is about (an instance's events: its host, or the one it leaves) */
  host?: string | null;
  instance?: string | null;
  data?: Record<string, unknown>;
}

interface EventDbRow { id: string; at: Date; type: string; host: string | null; instance: string | null; data: Record<string, unknown> }

const COLUMNS = 'id, at, type, host, instance, data';

/** A stored row as the API shows it: the host in data. */
export function eventOf(r: EventDbRow): StoredEvent {
  return { id: Number(r.id), time: r.at.toISOString(), type: r.type, instance: r.instance, data: r.host === null ? r.data : { host: r.host, ...r.data } };
}

/** Text fit for an event's data: long command output is cut to its end (what it said last). */
export function tail(text: string, max = 1000): string {
  const t = text.trim();
  return t.length <= max ? t : `…${t.slice(-max)}`;
}

/** Record one event on `q` (a transaction's client: it is written with the change, or not at all). */
export async function recordEvent(q: Queryable, e: NewEvent): Promise<void> {
  await q.query('INSERT INTO events (type, host, instance, data) VALUES ($1, $2, $3, $4::jsonb)',
    [e.type, e.host ?? null, e.instance ?? null, JSON.stringify(e.data ?? {})]);
}

export class ClusterEvents {
  constructor(private readonly pool: pg.Pool) {}

  private q<R extends pg.QueryResultRow>(sql: string, params: unknown[] = []): Promise<pg.QueryResult<R>> {
    return queryPg<R>(this.pool, sql, params);
  }

  /** Record an event that goes with no change of the database (a fence command's outcome, a restart done). */
  async record(e: NewEvent): Promise<void> {
    try {
      await recordEvent(this.pool, e);
    } catch (err) {
      throw fromPg(err);
    }
  }

  /**
   * A host's own events, as its heartbeat brings them (its ids as `source_id`: each kept once, whatever a beat
   * repeats), with their time on that host; the newest id the host has delivered, which the beat's reply tells it.
   */
  async fromHost(host: string, list: readonly StoredEvent[]): Promise<number> {
    const newest = list.reduce((m, e) => Math.max(m, e.id), 0);
    const r = await this.q<{ acked: string }>(
      `WITH e AS (INSERT INTO events (at, type, host, instance, data, source_id)
                  SELECT (x->>'time')::timestamptz, x->>'type', $1, x->>'instance', coalesce(x->'data', '{}'::jsonb), (x->>'id')::bigint
                    FROM jsonb_array_elements($2::jsonb) AS x
                  ON CONFLICT (host, source_id) WHERE source_id IS NOT NULL DO NOTHING)
       UPDATE hosts SET events_acked = greatest(events_acked, $3::bigint) WHERE name = $1 RETURNING events_acked AS acked`,
      [host, JSON.stringify(list), newest]);
    return Number(r.rows[0]?.acked ?? 0);
  }

  /** The newest id of its own events a host has delivered (0: none yet). */
  async ackedOf(host: string): Promise<number> {
    return Number((await this.q<{ acked: string }>('SELECT events_acked AS acked FROM hosts WHERE name = $1', [host])).rows[0]?.acked ?? 0);
  }

  /** The events after this id, oldest first, at most `limit`. */
  async since(id: number, limit = 1000): Promise<StoredEvent[]> {
    const r = await this.q<EventDbRow>(`SELECT ${COLUMNS} FROM events WHERE id > $1 ORDER BY id LIMIT $2`, [id, limit]);
    return r.rows.map(eventOf);
  }

  /** The newest `limit` events, oldest first (`GET /v1/events?last=N`: the web console's feed starts so). */
  async latest(limit: number): Promise<StoredEvent[]> {
    const r = await this.q<EventDbRow>(`SELECT * FROM (SELECT ${COLUMNS} FROM events ORDER BY id DESC LIMIT $1) e ORDER BY id`, [limit]);
    return r.rows.map(eventOf);
  }

  /** These events (those still kept), by id. */
  async byIds(ids: readonly number[]): Promise<StoredEvent[]> {
    if (ids.length === 0) return [];
    const r = await this.q<EventDbRow>(`SELECT ${COLUMNS} FROM events WHERE id = ANY($1::bigint[]) ORDER BY id`, [ids]);
    return r.rows.map(eventOf);
  }

  /** A host's newest `limit` events, oldest first. */
  async ofHost(host: string, limit = 20): Promise<StoredEvent[]> {
    const r = await this.q<EventDbRow>(
      `SELECT * FROM (SELECT ${COLUMNS} FROM events WHERE host = $1 ORDER BY id DESC LIMIT $2) e ORDER BY id`, [host, limit]);
    return r.rows.map(eventOf);
  }

  /** Delete what is past the retention (see the file's comment): how many went. */
  async prune(keep = KEEP_EVENTS, days = KEEP_DAYS): Promise<number> {
    const r = await this.q(
      `DELETE FROM events WHERE at < now() - $2::float8 * interval '1 day'
         OR id <= (SELECT id FROM events ORDER BY id DESC OFFSET $1 LIMIT 1)`, [keep, days]);
    return r.rowCount ?? 0;
  }
}
