/** /v1/events: server-sent events. Replays stored events after ?since=ID (or Last-Event-ID), then live ones. */
import type { FastifyInstance, FastifyPluginAsync } from 'fastify';
import type { Static } from '@sinclair/typebox';
import type { StoredEvent } from '../store/store.js';
import { EventsQuery } from './schemas.js';
import type { Services } from './services.js';

export function eventRoutes(svc: Services): FastifyPluginAsync {
  return async (app: FastifyInstance) => {
    app.get<{ Querystring: Static<typeof EventsQuery> }>(
      '/v1/events',
      { schema: { summary: 'Stream of events (text/event-stream)', querystring: EventsQuery } },
      (req, reply) => {
        const lastId = Number(req.headers['last-event-id'] ?? req.query.since ?? NaN);
        reply.hijack();
        const res = reply.raw;
        res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' });
        const send = (ev: StoredEvent): void => {
          res.write(`id: ${ev.id}\nevent: ${ev.type}\ndata: ${JSON.stringify(ev)}\n\n`);
        };
        // Replay and subscribe happen in one synchronous step, so no event is lost or sent twice.
        if (Number.isFinite(lastId)) for (const ev of svc.events.since(lastId, 10_000)) send(ev);
        const unsubscribe = svc.events.subscribe(send);
        res.write(': connected\n\n');
        const ping = setInterval(() => res.write(': ping\n\n'), 15_000);
        req.raw.on('close', () => {
          clearInterval(ping);
          unsubscribe();
        });
      },
    );
  };
}
