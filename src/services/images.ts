/** Image use cases: list, import (inspected, never probed) from a host file or an upload, build the tiny image. */
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import type { EventBus } from './events.js';
import type { ImageRecord, ImageStore, Progress } from '../storage/images.js';
import { buildTiny } from '../storage/tiny.js';
import { CorralError, invalidSpec } from '../core/errors.js';
import { validateName } from '../core/spec.js';
import { assertFits } from '../host/space.js';
import type { Store } from '../store/store.js';
import { receiveProgress, receiveToFile, tooLarge, uploadMax } from './upload-file.js';

export class ImageService {
  private building: Promise<ImageRecord> | null = null;

  constructor(private dataDir: string, private store: ImageStore, private db: Store, private events: EventBus, private maxUpload = uploadMax()) {}

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

  /**
   * What an upload is refused for before a byte of it is written: its name (valid, free), its format, its length
   * (declared, at most the cap) and the space it needs (its staged copy and the image made of it).
   */
  checkUpload(name: string, format: string, length: number | null): number {
    validateName('name', name);
    if (format !== 'qcow2' && format !== 'raw') throw invalidSpec('format', `"${format}" is not an image format: use qcow2 or raw`);
    if (this.store.tryGet(name)) throw new CorralError('ALREADY_EXISTS', `image "${name}" already exists`, { field: 'name' });
    if (length === null) throw new CorralError('INVALID_SPEC', 'body: an upload needs its Content-Length (the size of the file)', { field: 'file' });
    if (length > this.maxUpload) throw tooLarge(`the upload of image "${name}"`, length, this.maxUpload);
    assertFits(this.store.dir, 2 * length, `uploading image "${name}" (its file, then the image made of it)`, { thin: false });
    return length;
  }

  /**
   * An image from an upload: the body written to a staging folder of the image store (a crash's leftover is swept
   * at the next start), then imported from there as a host file is (import: every check), the staged file removed
   * whatever happens.
   */
  async upload(name: string, format: 'qcow2' | 'raw', body: Readable, declared: number | null, progress: Progress): Promise<ImageRecord> {
    const length = this.checkUpload(name, format, declared);
    const staging = this.store.stage(`upload-${name}`);
    try {
      const file = join(staging, `upload.${format}`);
      await receiveToFile(body, file, { length, max: this.maxUpload, what: `the upload of image "${name}"`, onBytes: receiveProgress(length, progress, `receiving ${name}`) });
      return await this.import(name, file, format, progress);
    } finally {
      this.store.discard(staging);
    }
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
