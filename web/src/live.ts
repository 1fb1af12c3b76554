/**
 * What the page keeps up to date without polling: one event stream (GET /v1/events, server-sent events) for the
 * whole page, the recent events it brought, and the instance list. The list is read once; after that an event
 * about an instance reads that instance again (GET /v1/instances/NAME), a burst of events about one instance reads
 * it once, and a burst about very many reads the whole list once instead. A lost stream comes back from the last
 * event it gave (Last-Event-ID), and the list is read again then, since events may have been missed.
 *
 * A hidden tab lets go of its stream and takes it up again, from its last event, when shown: over HTTP/1.1 a browser
 * opens at most six connections to one host, and six tabs each holding a stream would leave none for their calls.
 */
import { useEffect, useState } from 'preact/hooks';
import { ApiError, enc, get } from './api';
import type { CorralEvent, Instance } from './types';

const RECENT = 200;
const BATCH_MS = 150;
/** past this many instances waiting to be read, one list read is cheaper */
const WHOLE_LIST_PAST = 40;

type Listener = () => void;

/**
 * Every event type the daemon (src/services, src/api) and a controller (src/cluster) publish. A type missing here
 * is not shown live (an instance's row is still read again at its next known event).
 */
export const EVENT_TYPES = [
  'daemon.started', 'daemon.stopping', 'events.too-slow',
  'instance.created', 'instance.deleted', 'instance.state', 'instance.updated', 'instance.stop-timeout',
  'instance.snapshot-created', 'instance.snapshot-restored', 'instance.snapshot-deleted', 'instance.snapshot-thaw-failed',
  'instance.disk.attached', 'instance.disk.detached', 'instance.disk.backend-exited',
  'instance.nic.attached', 'instance.nic.detached',
  'instance.hostdev.attached', 'instance.hostdev.detached', 'instance.hostdevs.bound', 'instance.hostdevs.released',
  'instance.migration-started', 'instance.migrated-in', 'instance.moved-away', 'instance.fenced', 'instance.unfenced',
  'instance.adopted', 'instance.placed', 'instance.migrating', 'instance.migrated', 'instance.migration-failed',
  'instance.ha-restarting', 'instance.ha-restarted', 'instance.ha-failed',
  'qemu.event', 'cpus.resized', 'memory.resized', 'memory.pressure', 'memory.released',
  'image.built', 'image.imported', 'image.deleted',
  'volume.created', 'volume.deleted', 'volume.resized', 'volume.cloned',
  'volume.snapshot.created', 'volume.snapshot.deleted', 'volume.snapshot.reverted',
  'network.created', 'network.deleted', 'vhost-user.added', 'vhost-user.removed',
  'host.joined', 'host.removed', 'host.maintenance', 'host.fence-command', 'host.fenced', 'host.recovered', 'host.csr',
] as const;

export class Live {
  readonly instances = new Map<string, Instance>();
  /** newest last */
  readonly events: CorralEvent[] = [];
  loaded = false;
  connected = false;
  error: string | null = null;
  private listeners = new Set<Listener>();
  private source: EventSource | null = null;
  private lastId: number | null = null;
  private pending = new Set<string>();
  private timer: ReturnType<typeof setTimeout> | null = null;
  private notifyQueued = false;
  private stopped = false;
  private stamps = new Map<string, number>();

  constructor(private readonly onSessionGone: () => void) {}

  subscribe(fn: Listener): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /** Tell the views once per frame at most, however many events came. */
  private notify(): void {
    if (this.notifyQueued) return;
    this.notifyQueued = true;
    requestAnimationFrame(() => {
      this.notifyQueued = false;
      for (const fn of [...this.listeners]) fn();
    });
  }

  start(): void {
    this.open(null);
    void this.readAll();
    document.addEventListener('visibilitychange', this.onVisibility);
  }

  stop(): void {
    this.stopped = true;
    this.source?.close();
    this.source = null;
    if (this.timer) clearTimeout(this.timer);
    document.removeEventListener('visibilitychange', this.onVisibility);
  }

  private readonly onVisibility = (): void => {
    if (this.stopped) return;
    if (document.hidden) {
      this.source?.close();
      this.source = null;
      this.connected = false;
    } else if (!this.source) {
      this.open(this.lastId);
      void this.readAll();
    }
    this.notify();
  };

  private open(since: number | null): void {
    if (this.stopped) return;
    this.source?.close();
    const src = new EventSource(since === null ? '/v1/events?last=50' : `/v1/events?since=${since}`);
    this.source = src;
    src.onopen = () => {
      this.connected = true;
      this.notify();
    };
    // each event's SSE name is its type, and EventSource has no wildcard: listen to every type there is
    src.onmessage = (m) => this.take(m);
    for (const type of EVENT_TYPES) src.addEventListener(type, (m) => this.take(m));
    src.onerror = () => {
      this.connected = false;
      this.notify();
      if (src.readyState !== EventSource.CLOSED) return; // the browser reconnects by itself
      // refused (the session is over?) or cut: ask who we are, then come back from the last event seen
      setTimeout(() => {
        if (this.source !== src || this.stopped) return;
        get('/v1/session').then(() => {
          this.open(this.lastId);
          void this.readAll();
        }, (e: unknown) => {
          if (e instanceof ApiError && e.status === 401) this.onSessionGone();
          else setTimeout(() => this.open(this.lastId), 3000);
        });
      }, 1000);
    };
  }

  private take(m: MessageEvent): void {
    let ev: CorralEvent;
    try {
      ev = JSON.parse(String(m.data)) as CorralEvent;
    } catch {
      return;
    }
    if (typeof ev.id === 'number' && ev.id > 0) {
      if (this.lastId !== null && ev.id <= this.lastId) return; // already seen (a replay after a reconnect)
      this.lastId = ev.id;
    }
    this.events.push(ev);
    const kind = ev.type.split('.')[0]!;
    this.stamps.set(kind, (this.stamps.get(kind) ?? 0) + 1);
    if (this.events.length > RECENT) this.events.splice(0, this.events.length - RECENT);
    if (ev.type === 'events.too-slow') {
      const from = (ev.data as { resumeFrom?: number | null }).resumeFrom;
      this.open(typeof from === 'number' ? from : this.lastId);
      void this.readAll();
    } else if (ev.instance) {
      if (ev.type === 'instance.deleted') {
        this.instances.delete(ev.instance);
        this.pending.delete(ev.instance);
      } else this.reread(ev.instance);
    }
    this.notify();
  }

  /** Read one instance again soon (several events about it in a burst: once). */
  reread(name: string): void {
    this.pending.add(name);
    if (!this.timer) this.timer = setTimeout(() => void this.flush(), BATCH_MS);
  }

  private async flush(): Promise<void> {
    this.timer = null;
    const names = [...this.pending];
    this.pending.clear();
    if (names.length > WHOLE_LIST_PAST) return this.readAll();
    await Promise.all(names.map(async (name) => {
      try {
        this.instances.set(name, await get<Instance>(`/v1/instances/${enc(name)}`));
      } catch (e) {
        if (e instanceof ApiError && e.status === 404) this.instances.delete(name);
      }
    }));
    this.notify();
  }

  async readAll(): Promise<void> {
    try {
      const { instances } = await get<{ instances: Instance[] }>('/v1/instances');
      const before = new Map(this.instances);
      this.instances.clear();
      // a controller lists summaries (no spec, no disk...): what an instance's own read gave is kept under them
      for (const i of instances) this.instances.set(i.name, { ...before.get(i.name), ...i });
      this.loaded = true;
      this.error = null;
    } catch (e) {
      this.error = (e as Error).message;
    }
    this.notify();
  }

  /** How many events of a kind (volume, network, image...) came so far: a view reads its list again when it grows. */
  stamp(kind: string): number {
    return this.stamps.get(kind) ?? 0;
  }

  /** Put an instance the API just answered with (after an action) in the list at once. */
  put(i: Instance): void {
    this.instances.set(i.name, i);
    this.notify();
  }
}

let current: Live | null = null;

export function setLive(l: Live | null): void {
  current?.stop();
  current = l;
}

export function live(): Live {
  if (!current) throw new Error('no live data: not logged in');
  return current;
}

/** Re-render a view whenever the live data changes (once per frame at most). */
export function useLive(): Live {
  const l = live();
  const [, setTick] = useState(0);
  useEffect(() => l.subscribe(() => setTick((t) => t + 1)), [l]);
  return l;
}
