/** The event bus: every state change and QMP event is stored and fanned out to /v1/events listeners. */
import { EventEmitter } from 'node:events';
import { noSpace } from '../core/errors.js';
import type { Store, StoredEvent } from '../store/store.js';

export class EventBus {
  private emitter = new EventEmitter();

  constructor(private store: Store, private log?: { warn(o: object, m?: string): void }) {
    this.emitter.setMaxListeners(0);
  }

  private unstored = 0;

  /**
   * Store and fan out an event. Events are history: when the store cannot take one (its filesystem is full) it
   * still reaches the live listeners (with id 0: not replayable), the first loss of a run is logged, and the
   * operation that published it goes on. Only NO_SPACE-like failures are absorbed; anything else throws.
   */
  publish(type: string, instance: string | null, data: Record<string, unknown> = {}): StoredEvent {
    let ev: StoredEvent;
    try {
      ev = this.store.appendEvent(type, instance, data);
      if (this.unstored > 0) this.log?.warn({ lost: this.unstored }, 'events are stored again');
      this.unstored = 0;
    } catch (e) {
      const full = noSpace(e, `storing event ${type}`);
      if (!full) throw e;
      if (this.unstored++ === 0) this.log?.warn({ err: full.message }, 'events cannot be stored; live listeners still get them');
      ev = { id: 0, time: new Date().toISOString(), type, instance, data };
    }
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

  /** The newest `limit` stored events, oldest first (the web console's recent events). */
  latest(limit: number): StoredEvent[] {
    return this.store.latestEvents(limit);
  }
}
