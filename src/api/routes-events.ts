/**
 * /v1/events: server-sent events. Replays stored events after ?since=ID (or Last-Event-ID), then live ones.
 * When the API closes (the daemon stopping), every open stream gets a last `daemon.stopping` event (unless the
 * daemon already published one) and is ended, so neither the client nor the daemon's exit waits on it.
 */
import type { FastifyInstance, FastifyPluginAsync } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { StoredEvent } from '../store/store.js';
import { errors } from './schemas-common.js';
import { Event, EventsQuery } from './schemas-events.js';
import type { Services } from './services.js';

export const STOPPING_EVENT = 'daemon.stopping';

export function eventRoutes(svc: Pick<Services, 'events'>): FastifyPluginAsync {
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
          summary: 'Stream of events (text/event-stream); ends with a daemon.stopping event when the daemon stops',
          querystring: EventsQuery,
          response: {
            200: {
              description: 'server-sent events: `id` (the event\'s id; give it as ?since= or Last-Event-ID to resume), `event` (its type) and `data` (the event as JSON)',
              content: { 'text/event-stream': { schema: Event } },
            },
            400: errors[400], 401: errors[401],
          },
        },
      },
      (req, reply) => {
        const lastId = Number(req.headers['last-event-id'] ?? req.query.since ?? NaN);
        reply.hijack();
        const res = reply.raw;
        res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' });
        let stoppingSent = false;
        const send = (ev: StoredEvent): void => {
          if (res.writableEnded) return;
          res.write(`id: ${ev.id}\nevent: ${ev.type}\ndata: ${JSON.stringify(ev)}\n\n`);
          if (ev.type === STOPPING_EVENT) stoppingSent = true;
        };
        // Replay and subscribe happen in one synchronous step, so no event is lost or sent twice.
        if (Number.isFinite(lastId)) for (const ev of svc.events.since(lastId, 10_000)) send(ev);
        stoppingSent = false; // a replayed one was an earlier daemon's
        const unsubscribe = svc.events.subscribe(send);
        res.write(': connected\n\n');
        const ping = setInterval(() => res.write(': ping\n\n'), 15_000);
        const cleanup = (): void => {
          clearInterval(ping);
          unsubscribe();
          open.delete(end);
        };
        function end(): void {
          cleanup();
          if (res.writableEnded) return;
          if (!stoppingSent) {
            // Not stored (no id): the API is closing without the daemon having said why.
            const ev = { type: STOPPING_EVENT, time: new Date().toISOString(), instance: null, data: { reason: 'the API is closing' } };
            res.write(`event: ${STOPPING_EVENT}\ndata: ${JSON.stringify(ev)}\n\n`);
          }
          res.end();
        }
        open.add(end);
        req.raw.on('close', cleanup);
      },
    );
  };
}
