/**
 * A controller's live cluster events, for its /v1/events streams: a connection of its own LISTENs on
 * `corral_events` (the events table's trigger NOTIFYs each new event's id when its transaction commits, whichever
 * controller wrote it, so every controller sees every event), fetches those events and hands them to the
 * subscribers in the order fetched. A lost connection is made again, every second until it is; the events
 * committed meanwhile (after the last one handed out) are fetched then.
 */
import { EventEmitter } from 'node:events';
import type pg from 'pg';
import type { StoredEvent } from '../store/store.js';
import type { EventSource } from '../api/routes-events.js';
import type { ClusterEvents } from './cluster-events.js';

export const EVENTS_CHANNEL = 'corral_events';

export class EventFeed implements EventSource {
  private readonly emitter = new EventEmitter();
  /** ends the listening connection (once, whoever asks first: stop() or its own end) */
  private drop: (() => void) | null = null;
  private pending: number[] = [];
  /** fetches run one after the other, so subscribers get events in the order they were notified */
  private chain: Promise<void> = Promise.resolve();
  /** the highest id handed out (or seen at the first connection): where a reconnection catches up from */
  private lastId: number | null = null;
  /** ids handed out lately: a catch-up after a reconnection and the notifications around it may name the same */
  private readonly recent = new Set<number>();
  private retry: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(
    private readonly pool: pg.Pool,
    private readonly events: ClusterEvents,
    private readonly log: { info: (o: object, m: string) => void; warn: (o: object, m: string) => void },
  ) {
    this.emitter.setMaxListeners(0);
  }

  /** Listen (now, or once the database answers: this never fails). */
  async start(): Promise<void> {
    await this.connect();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.retry);
    this.drop?.();
    await this.chain;
  }

  subscribe(fn: (ev: StoredEvent) => void): () => void {
    this.emitter.on('event', fn);
    return () => this.emitter.off('event', fn);
  }

  since(id: number, limit: number): Promise<StoredEvent[]> {
    return this.events.since(id, limit);
  }

  latest(limit: number): Promise<StoredEvent[]> {
    return this.events.latest(limit);
  }

  private async connect(): Promise<void> {
    if (this.stopped) return;
    let c: pg.PoolClient;
    try {
      c = await this.pool.connect();
    } catch (e) {
      this.again(e);
      return;
    }
    let gone = false;
    const drop = (): boolean => {
      if (gone) return false;
      gone = true;
      if (this.drop === drop) this.drop = null;
      c.release(true);
      return true;
    };
    this.drop = drop;
    const lost = (e?: unknown): void => {
      if (drop()) this.again(e ?? new Error('the connection ended'));
    };
    c.on('error', lost);
    c.on('end', () => lost());
    c.on('notification', (n) => {
      const id = Number(n.payload);
      if (n.channel === EVENTS_CHANNEL && Number.isSafeInteger(id)) this.fetch([id]);
    });
    try {
      await c.query(`LISTEN ${EVENTS_CHANNEL}`);
      if (this.lastId === null) {
        this.lastId = Number((await c.query<{ id: string }>('SELECT coalesce(max(id), 0) AS id FROM events')).rows[0]!.id);
      } else {
        // committed while nothing listened here
        const from = this.lastId;
        this.then(async () => this.hand(await this.events.since(from, 10_000)));
        this.log.info({ after: from }, 'listening to cluster events again');
      }
    } catch (e) {
      lost(e);
      return;
    }
    if (this.stopped) drop();
  }

  private again(e: unknown): void {
    if (this.stopped) return;
    this.log.warn({ error: (e as Error).message }, 'the cluster event listener lost its database connection; trying again');
    this.retry = setTimeout(() => void this.connect(), 1000);
    this.retry.unref();
  }

  private fetch(ids: number[]): void {
    const first = this.pending.length === 0;
    this.pending.push(...ids);
    if (!first) return;
    // the notifications of one commit come together: fetch them in one query
    this.then(async () => {
      const batch = this.pending;
      this.pending = [];
      this.hand(await this.events.byIds(batch));
    });
  }

  private then(fn: () => Promise<void>): void {
    this.chain = this.chain.then(fn).catch((e: unknown) => this.log.warn({ error: (e as Error).message }, 'fetching new cluster events failed; live streams miss them'));
  }

  private hand(list: StoredEvent[]): void {
    for (const ev of list) {
      if (this.recent.has(ev.id)) continue;
      this.recent.add(ev.id);
      if (this.recent.size > 5000) this.recent.delete(this.recent.values().next().value as number);
      if (ev.id > (this.lastId ?? 0)) this.lastId = ev.id;
      this.emitter.emit('event', ev);
    }
  }
}
