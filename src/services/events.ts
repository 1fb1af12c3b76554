/** The event bus: every state change and QMP event is stored and fanned out to /v1/events listeners. */
import { EventEmitter } from 'node:events';
import type { Store, StoredEvent } from '../store/store.js';

export class EventBus {
  private emitter = new EventEmitter();

  constructor(private store: Store) {
    this.emitter.setMaxListeners(0);
  }

  publish(type: string, instance: string | null, data: Record<string, unknown> = {}): StoredEvent {
    const ev = this.store.appendEvent(type, instance, data);
    this.emitter.emit('event', ev);
    return ev;
  }

  subscribe(fn: (ev: StoredEvent) => void): () => void {
    this.emitter.on('event', fn);
    return () => this.emitter.off('event', fn);
  }

  since(id: number, limit = 1000): StoredEvent[] {
    return this.store.eventsSince(id, limit);
  }
}
