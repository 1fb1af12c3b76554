/** Image use cases: list, import (inspected, never probed), build the tiny image. */
import type { EventBus } from './events.js';
import type { ImageRecord, ImageStore, Progress } from '../storage/images.js';
import { buildTiny } from '../storage/tiny.js';
import { CorralError } from '../core/errors.js';
import type { Store } from '../store/store.js';

export class ImageService {
  private building: Promise<ImageRecord> | null = null;

  constructor(private dataDir: string, private store: ImageStore, private db: Store, private events: EventBus) {}

  list(): ImageRecord[] {
    return this.store.list();
  }

  get(name: string): ImageRecord {
    return this.store.get(name);
  }

  async import(name: string, file: string, format: 'qcow2' | 'raw', progress: Progress): Promise<ImageRecord> {
    const img = await this.store.import(name, file, format, progress);
    this.events.publish('image.imported', null, { image: name, format });
    return img;
  }

  /** One build at a time; a second caller waits for the same build. */
  async buildTiny(force: boolean, progress: Progress): Promise<ImageRecord> {
    if (this.building) {
      progress({ step: 'wait', message: 'another build of the tiny image is running; waiting for it' });
      return this.building;
    }
    // a rebuild replaces the disk overlays back onto: no instance may use the image, nor be made on it, until done
    const release = force ? this.store.holdForChange('tiny', 'rebuilt') : () => undefined;
    try {
      if (force) this.assertUnused('tiny', 'rebuilt');
      this.building = buildTiny(this.dataDir, progress, { force });
      const img = await this.building;
      this.events.publish('image.built', null, { image: img.name });
      return img;
    } finally {
      this.building = null;
      release();
    }
  }

  /** Instance disks are overlays on their image: the image must not change under them. */
  private assertUnused(name: string, verb: string): void {
    const users = this.db.listInstances().filter((r) => r.spec.image === name).map((r) => r.name);
    if (users.length > 0) throw new CorralError('IMAGE_IN_USE', `image "${name}" cannot be ${verb}: instances ${users.join(', ')} use it`, { instances: users });
  }

  remove(name: string): void {
    const release = this.store.holdForChange(name, 'deleted');
    try {
      this.assertUnused(name, 'deleted');
      this.store.remove(name);
    } finally {
      release();
    }
    this.events.publish('image.deleted', null, { image: name });
  }
}
