/** A store that keeps only events, in memory: enough for an EventBus behind a test API. */
import type { Store, StoredEvent } from '../../../src/store/store.js';

export function memoryStore(): Store {
  const events: StoredEvent[] = [];
  return {
    appendEvent: (type: string, instance: string | null, data: Record<string, unknown>) => {
      const ev = { id: events.length + 1, time: new Date().toISOString(), type, instance, data };
      events.push(ev);
      return ev;
    },
    eventsSince: (id: number, limit: number) => events.filter((e) => e.id > id).slice(0, limit),
    latestEvents: (limit: number) => events.slice(-limit),
  } as unknown as Store;
}
