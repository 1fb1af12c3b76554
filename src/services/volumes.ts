/**
 * Volume use cases over the `default` pool. All volume operations run one after another (one lock): they
 * are short qemu-img calls, and serialising them keeps name checks, clone/delete and snapshot checks free of
 * races without per-volume lock ordering.
 */
import type { EventBus } from './events.js';
import { KeyedLock } from './locks.js';
import type { SnapshotInfo, Volume, VolumeDetails, VolumeStore } from '../storage/volumes.js';

const KEY = 'volumes';

export class VolumeService {
  private lock = new KeyedLock();

  constructor(readonly store: VolumeStore, private events: EventBus) {}

  private run<T>(fn: () => Promise<T>): Promise<T> {
    return this.lock.run(KEY, fn);
  }

  /** Run fn serialised with every volume operation (attach and detach use it). */
  exclusive<T>(fn: () => Promise<T>): Promise<T> {
    return this.run(fn);
  }

  list(): Volume[] {
    return this.store.list();
  }

  get(name: string): Promise<VolumeDetails> {
    return this.store.get(name);
  }

  create(name: string, size: string | number, format?: 'qcow2' | 'raw'): Promise<Volume> {
    return this.run(async () => {
      const v = await this.store.create(name, size, format);
      this.events.publish('volume.created', null, { volume: v.name, format: v.format, size: v.virtualSize });
      return v;
    });
  }

  resize(name: string, size: string | number, shrink = false): Promise<Volume> {
    return this.run(async () => {
      const v = await this.store.resize(name, size, { shrink });
      this.events.publish('volume.resized', null, { volume: v.name, size: v.virtualSize });
      return v;
    });
  }

  clone(source: string, name: string): Promise<Volume> {
    return this.run(async () => {
      const v = await this.store.clone(source, name);
      this.events.publish('volume.cloned', null, { volume: v.name, source });
      return v;
    });
  }

  remove(name: string): Promise<void> {
    return this.run(async () => {
      await this.store.remove(name);
      this.events.publish('volume.deleted', null, { volume: name });
    });
  }

  snapshots(name: string): Promise<SnapshotInfo[]> {
    return this.store.snapshots(name);
  }

  snapshot(name: string, snap: string): Promise<SnapshotInfo> {
    return this.run(async () => {
      const s = await this.store.snapshot(name, snap);
      this.events.publish('volume.snapshot.created', null, { volume: name, snapshot: snap });
      return s;
    });
  }

  revert(name: string, snap: string): Promise<void> {
    return this.run(async () => {
      await this.store.revert(name, snap);
      this.events.publish('volume.snapshot.reverted', null, { volume: name, snapshot: snap });
    });
  }

  deleteSnapshot(name: string, snap: string): Promise<void> {
    return this.run(async () => {
      await this.store.deleteSnapshot(name, snap);
      this.events.publish('volume.snapshot.deleted', null, { volume: name, snapshot: snap });
    });
  }
}
