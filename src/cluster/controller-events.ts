/**
 * A controller's event routes (behind the people's token):
 * - GET /v1/events: a single daemon's very route (src/api/routes-events.ts: the same query, replay after ?since=ID
 *   or Last-Event-ID, then `: connected`, then live events; the same limits), fed by the cluster's events through
 *   this controller's listener (event-feed.ts), so `corral events` follows a cluster as it follows a daemon.
 * - GET /v1/hosts/NAME/events?limit=N: a host's newest events, oldest first (`corral host show NAME`). A removed
 *   host's events are still there: they are history, not the host's state.
 */
import type { FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import { eventRoutes } from '../api/routes-events.js';
import { Event } from '../api/schemas-events.js';
import { errors } from '../api/schemas-common.js';
import { validateName } from '../core/names.js';
import type { ClusterEvents } from './cluster-events.js';
import type { EventFeed } from './event-feed.js';

export const HostEventsQuery = Type.Object({ limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, default: 20 })) }, { additionalProperties: false });
export const HostEvents = Type.Object({ events: Type.Array(Event) });

export function controllerEventRoutes(d: { events: ClusterEvents; feed: EventFeed }) {
  return async (base: FastifyInstance): Promise<void> => {
    await base.register(eventRoutes({ events: d.feed }));
    const app = base.withTypeProvider<TypeBoxTypeProvider>();
    app.get('/v1/hosts/:name/events', {
      schema: { params: Type.Object({ name: Type.String() }), querystring: HostEventsQuery, response: { 200: HostEvents, 400: errors[400], 401: errors[401] } },
    }, async (req) => ({ events: await d.events.ofHost(validateName('name', req.params.name), req.query.limit ?? 20) }));
  };
}
