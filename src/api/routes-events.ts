/**
 * /v1/events: server-sent events. Replays stored events after ?since=ID (or Last-Event-ID), then a `: connected`
 * comment (every event stored when the request came has been sent before it), then live ones.
 * When the API closes (the daemon stopping), every open stream gets a last `daemon.stopping` event (unless the
 * daemon already published one) and is ended, so neither the client nor the daemon's exit waits on it.
 * The same route serves a cluster controller's events (src/cluster/event-feed.ts), whose replay is a query: live
 * events that come while it runs wait, and those the replay already held are not sent twice.
 *
 * Backpressure: a stream writes at most EVENT_WRITE_WINDOW bytes ahead into its socket and queues the rest until
 * the socket drains. Live events queued for a client that does not read count against maxBufferedBytes; past
 * it the stream is ended with an `events.too-slow` event (not stored) whose data says from which id to resume,
 * and the connection is destroyed if the client has not read that within cutGraceMs. At most maxEventStreams
 * streams are open at once: one more is refused with TOO_MANY_CLIENTS (429).
 */
import type { FastifyInstance, FastifyPluginAsync } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { CorralError } from '../core/errors.js';
import type { StoredEvent } from '../store/store.js';
import { E, errors } from './schemas-common.js';
import { Event, EventsQuery } from './schemas-events.js';
import { EVENT_WRITE_WINDOW, STREAM_LIMITS, TOO_SLOW_EVENT, type StreamLimits } from './stream-limits.js';

export const STOPPING_EVENT = 'daemon.stopping';

const unstored = (type: string, data: Record<string, unknown>): string =>
  `event: ${type}\ndata: ${JSON.stringify({ type, time: new Date().toISOString(), instance: null, data })}\n\n`;

/** Where a stream's events come from: a daemon's event bus (replay at once) or a controller's feed (a query). */
export interface EventSource {
  since(id: number, limit: number): StoredEvent[] | Promise<StoredEvent[]>;
  /** the newest `limit` stored events, oldest first (`?last=N`); a source without it refuses that */
  latest?(limit: number): StoredEvent[] | Promise<StoredEvent[]>;
  subscribe(fn: (ev: StoredEvent) => void): () => void;
}

export function eventRoutes(svc: { events: EventSource }, limits: StreamLimits = STREAM_LIMITS): FastifyPluginAsync {
  return async (base: FastifyInstance) => {
    const app = base.withTypeProvider<TypeBoxTypeProvider>();
    /** Open streams: each one ends itself when told. */
    const open = new Set<() => void>();
    app.addHook('preClose', (done) => {
      for (const end of [...open]) end();
      done();
    });

    app.get(
      '/v1/events',
      {
        schema: {
          operationId: 'streamEvents', tags: ['events'],
          summary: 'Stream of events (text/event-stream); ends with a daemon.stopping event when the daemon stops, or events.too-slow when the client does not keep up',
          querystring: EventsQuery,
          response: {
            200: {
              description: 'server-sent events: `id` (the event\'s id; give it as ?since= or Last-Event-ID to resume), `event` (its type) and `data` (the event as JSON)',
              content: { 'text/event-stream': { schema: Event } },
            },
            400: errors[400], 401: errors[401], 429: E[429],
          },
        },
      },
      (req, reply) => {
        if (open.size >= limits.maxEventStreams) {
          throw new CorralError('TOO_MANY_CLIENTS', `${open.size} event streams are open, the most this daemon serves at once; close one or try again later`, { limit: limits.maxEventStreams });
        }
        const lastId = Number(req.headers['last-event-id'] ?? req.query.since ?? NaN);
        const newest = Number.isFinite(lastId) ? undefined : req.query.last;
        if (newest !== undefined && !svc.events.latest) throw new CorralError('INVALID_SPEC', 'last: this stream cannot replay its newest events; give since=ID', { field: 'last' });
        reply.hijack();
        const res = reply.raw;
        res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' });
        let stoppingSent = false;
        let done = false;
        /** What waits for the socket to drain; `live` bytes are those of events published since the stream opened. */
        let queue: Array<{ text: string; id?: number; live: boolean }> = [];
        let queuedLive = 0;
        let lastWritten: number | undefined = Number.isFinite(lastId) ? lastId : undefined;
        const flush = (): void => {
          while (queue.length > 0 && !res.writableEnded && res.writableLength < EVENT_WRITE_WINDOW) {
            const item = queue.shift()!;
            if (item.live) queuedLive -= item.text.length;
            res.write(item.text);
            if (item.id !== undefined) lastWritten = item.id;
          }
        };
        const enqueue = (ev: StoredEvent, live: boolean): void => {
          if (done) return;
          const text = `id: ${ev.id}\nevent: ${ev.type}\ndata: ${JSON.stringify(ev)}\n\n`;
          queue.push({ text, id: ev.id, live });
          if (live) queuedLive += text.length;
          flush();
          if (queuedLive > limits.maxBufferedBytes) tooSlow();
        };
        // Subscribed before the replay is read, so no event is lost: a bus replays at once (in the same synchronous
        // step); a query's replay is awaited while live events wait in `early`. Live events the replay held are
        // not sent twice: they come (in commit order) before the first one it did not hold, which ends the check.
        let early: StoredEvent[] | null = [];
        let held: Set<number> | null = null;
        const live = (ev: StoredEvent): void => {
          if (held?.has(ev.id)) return;
          held = null;
          enqueue(ev, true);
        };
        const unsubscribe = svc.events.subscribe((ev) => {
          if (early) early.push(ev);
          else live(ev);
          if (ev.type === STOPPING_EVENT) stoppingSent = true;
        });
        res.on('drain', flush);
        const begin = (replay: StoredEvent[]): void => {
          held = replay.length > 0 ? new Set(replay.map((ev) => ev.id)) : null;
          for (const ev of replay) enqueue(ev, false);
          const waiting = early ?? [];
          early = null;
          for (const ev of waiting) live(ev);
          // after the replay, in its queue: a client reads it as "every stored event up to now has been sent"
          queue.push({ text: ': connected\n\n', live: false });
          flush();
        };
        const replay = Number.isFinite(lastId) ? svc.events.since(lastId, 10_000) : newest !== undefined ? svc.events.latest!(newest) : [];
        if (Array.isArray(replay)) begin(replay);
        else {
          replay.then(begin, (e: unknown) => {
            req.log.warn({ err: e }, 'replaying events failed');
            cleanup();
            if (!res.writableEnded) res.end();
          });
        }
        // a ping only on an idle connection: one with bytes waiting is not idle, and a stalled one gains nothing
        const ping = setInterval(() => { if (queue.length === 0 && res.writableLength === 0 && !res.writableEnded) res.write(': ping\n\n'); }, 15_000);
        const cleanup = (): void => {
          done = true;
          clearInterval(ping);
          unsubscribe();
          open.delete(end);
        };
        function end(): void {
          cleanup();
          if (res.writableEnded) return;
          for (const item of queue) res.write(item.text);
          queue = [];
          // Not stored (no id): the API is closing without the daemon having said why.
          if (!stoppingSent) res.write(unstored(STOPPING_EVENT, { reason: 'the API is closing' }));
          res.end();
        }
        function tooSlow(): void {
          const waiting = queuedLive + res.writableLength;
          cleanup();
          queue = [];
          queuedLive = 0;
          res.write(unstored(TOO_SLOW_EVENT, {
            reason: `the client did not read its events: ${waiting} bytes were waiting for it, more than the ${limits.maxBufferedBytes} a stream may hold`,
            resumeFrom: lastWritten ?? null,
          }));
          res.end();
          res.socket?.end(); // no keep-alive after a cut: the connection closes once the client has read this
          const cut = setTimeout(() => res.destroy(), limits.cutGraceMs);
          cut.unref();
          res.on('finish', () => clearTimeout(cut));
        }
        open.add(end);
        req.raw.on('close', cleanup);
      },
    );
  };
}
