/**
 * Volume use cases over the `default` pool. All volume operations run one after another (one lock): they
 * are short qemu-img calls, and serialising them keeps name checks, clone/delete and snapshot checks free of
 * races without per-volume lock ordering.
 */
import type { EventBus } from './events.js';
import { KeyedLock } from './locks.js';
import type { SnapshotInfo, Volume, VolumeDetails, VolumeRecord, VolumeStore } from '../storage/volumes.js';

/**
 * Resizes a volume inside the running QEMU that has it open and returns true, or returns false when no running
 * instance has it open (then qemu-img resizes the file). Given by the disk service, which holds the lock of the
 * instance the volume is attached to.
 */
export type OnlineResize = (r: VolumeRecord, bytes: number) => Promise<boolean>;

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

  /** Grow (or with shrink cut) a volume; `online` resizes one open in a running instance (see OnlineResize). */
  resize(name: string, size: string | number, shrink = false, online?: OnlineResize): Promise<Volume> {
    return this.run(async () => {
      const { record, bytes } = this.store.planResize(name, size, shrink);
      const live = online !== undefined && (await online(record, bytes));
      const v = live ? await this.store.sizeChanged(name) : await this.store.resize(name, bytes, { shrink });
      this.events.publish('volume.resized', null, { volume: v.name, size: v.virtualSize, ...(live ? { live, instance: record.attachedTo } : {}) });
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
