/** Schemas of /v1/events: each server-sent event's data is one stored event. */
import { Type, type Static } from '@sinclair/typebox';
import { nullable } from './schemas-common.js';

export const EventsQuery = Type.Object({
  since: Type.Optional(Type.Integer({ minimum: 0 })),
  last: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, description: 'without since: replay the newest N stored events first (a daemon\'s stream only)' })),
}, { additionalProperties: false });

export const Event = Type.Object(
  {
    id: Type.Optional(Type.Integer({ description: 'absent on the unstored daemon.stopping event of an API closing' })),
    time: Type.String(),
    type: Type.String({ description: 'instance.state, instance.stop-agent, instance.stop-timeout, cpus.resized, memory.resized, daemon.stopping, ...' }),
    instance: nullable(Type.String()),
    data: Type.Object({}, { additionalProperties: true, description: 'what the event says; its fields depend on the type' }),
  },
  { title: 'Event' },
);
export type Event = Static<typeof Event>;
