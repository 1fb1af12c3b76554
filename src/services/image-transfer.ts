/**
 * An image moving between two hosts for a live migration whose root overlay needs its base there (the controller
 * relays the files: src/cluster/migration-disks.ts):
 * - identity: the image's name and a digest of its files' contents (sha256 each, core/migration-disks.ts
 *   imageDigest), so two hosts tell whether they hold the same image. A file's sha256 is kept in memory while its
 *   size, mtime and inode stay the same: a migration does not read a big image again each time;
 * - the source sends each file as it is (disk, kernel, initrd);
 * - the destination receives each file into a staging folder of its image store (the sha256 and size checked as
 *   it is written), inspects the disk as an import is inspected, and commits the image as a whole: a half-received
 *   image never shows. An image committed for a migration is removed again if that migration is given up (and no
 *   instance uses it); once the guest runs here it stays, as any other image.
 */
import { createHash } from 'node:crypto';
import { createReadStream, existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { CorralError, isCorralError } from '../core/errors.js';
import { IMAGE_FILE_ROLES, imageDigest, type ImageFileRole, type ImageIdentity } from '../core/migration-disks.js';
import { validateName } from '../core/names.js';
import { assertFits } from '../host/space.js';
import { imgInfo } from '../qemu/img.js';
import { checkImageHeader, checkImgInfo } from '../storage/inspect.js';
import type { ImageRecord, ImageStore } from '../storage/images.js';
import type { EventBus } from './events.js';
import { receiveToFile } from './upload-file.js';

/** The file of each role in an image's folder. */
export function imageFileName(role: ImageFileRole, format: 'qcow2' | 'raw'): string {
  return role === 'disk' ? `disk.${format}` : role === 'kernel' ? 'vmlinuz' : 'initrd.img';
}

/** The path of an image's file of that role, or null when the image has none. */
export function imageFileOf(image: ImageRecord, role: ImageFileRole): string | null {
  return role === 'disk' ? image.disk : role === 'kernel' ? image.kernel ?? null : image.initrd ?? null;
}

/** What the destination needs to write the image's record besides its files (and what it reads of the disk). */
export interface ImageRecordFields {
  cmdline?: string;
  createdAt: string;
  source: 'tiny' | 'import' | 'publish';
}

interface Staged {
  want: ImageIdentity;
  dir: string;
  got: Map<ImageFileRole, { sha256: string; size: number }>;
}

export function parseRole(v: unknown): ImageFileRole {
  if (typeof v !== 'string' || !(IMAGE_FILE_ROLES as readonly string[]).includes(v)) {
    throw new CorralError('INVALID_SPEC', `role: an image file is one of ${IMAGE_FILE_ROLES.join(', ')}, got ${JSON.stringify(v)}`, { field: 'role' });
  }
  return v as ImageFileRole;
}

export class ImageTransfer {
  private sums = new Map<string, { key: string; sha256: string }>();
  /** images being received, by the instance whose migration brings them */
  private staged = new Map<string, Staged>();
  /** images committed for a migration still under way, by instance */
  private made = new Map<string, string>();

  constructor(private readonly d: { images: ImageStore; events: EventBus; removeImage: (name: string) => void; log: { warn(o: object, m: string): void } }) {}

  /** The sha256 of a file (kept while its size, mtime and inode stay the same). */
  async sha256(path: string): Promise<{ sha256: string; size: number }> {
    const st = statSync(path);
    const key = `${st.size}:${st.mtimeMs}:${st.ino}`;
    const had = this.sums.get(path);
    if (had && had.key === key) return { sha256: had.sha256, size: st.size };
    const h = createHash('sha256');
    await pipeline(createReadStream(path), h);
    const sha256 = h.digest('hex');
    this.sums.set(path, { key, sha256 });
    return { sha256, size: st.size };
  }

  /** The identity of an image of this host. */
  async identity(image: ImageRecord): Promise<ImageIdentity> {
    const files: ImageIdentity['files'] = [];
    for (const role of IMAGE_FILE_ROLES) {
      const path = imageFileOf(image, role);
      if (path !== null) files.push({ role, ...(await this.sha256(path)) });
    }
    return { name: image.name, kind: image.kind, format: image.format, digest: imageDigest(files), files };
  }

  /** The identity of this host's image of that name, or null when it has none. */
  async identityOf(name: string): Promise<ImageIdentity | null> {
    const image = this.d.images.tryGet(name);
    return image ? this.identity(image) : null;
  }

  /**
   * Begin receiving image `want` for the migration of `instance`: a staging folder of the image store, once the
   * image is known to be missing here and to fit. What an earlier begin staged for that instance goes.
   */
  begin(instance: string, want: ImageIdentity): void {
    validateName('image', want.name);
    if (want.format !== 'qcow2' && want.format !== 'raw') throw new CorralError('INVALID_SPEC', 'image.format: qcow2 or raw', { field: 'image.format' });
    if (want.kind !== 'kernel' && want.kind !== 'disk') throw new CorralError('INVALID_SPEC', 'image.kind: kernel or disk', { field: 'image.kind' });
    if (!Array.isArray(want.files) || !want.files.some((f) => f.role === 'disk')) throw new CorralError('INVALID_SPEC', 'image.files: the image\'s files (a disk at least)', { field: 'image.files' });
    for (const f of want.files) {
      parseRole(f.role);
      if (!Number.isSafeInteger(f.size) || f.size < 0 || typeof f.sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(f.sha256)) throw new CorralError('INVALID_SPEC', `image.files: ${f.role}: a size and a sha256`, { field: 'image.files' });
    }
    if (this.d.images.tryGet(want.name)) throw new CorralError('ALREADY_EXISTS', `image "${want.name}" is on this host already`, { name: want.name });
    this.discard(instance);
    assertFits(this.d.images.dir, want.files.reduce((n, f) => n + f.size, 0), `image "${want.name}" for the migration of instance "${instance}"`, { thin: false });
    this.staged.set(instance, { want, dir: this.d.images.stage(want.name), got: new Map() });
  }

  /**
   * Receive one file of the image begun for `instance`: written into the staging folder as it comes, refused
   * (INVALID_IMAGE, the staging folder removed) when its size or sha256 is not the one announced.
   */
  async receive(instance: string, role: ImageFileRole, body: Readable): Promise<{ sha256: string; size: number }> {
    const s = this.staged.get(instance);
    if (!s) throw new CorralError('INVALID_STATE', `no image is being received for the migration of instance "${instance}"`, { name: instance });
    const want = s.want;
    const spec = want.files.find((f) => f.role === role);
    if (!spec) throw new CorralError('INVALID_SPEC', `role: image "${want.name}" has no ${role} file`, { field: 'role' });
    let got: { size: number; sha256: string };
    try {
      // never written past the size announced (upload-file.ts: the API's uploads are received the same way)
      got = await receiveToFile(body, join(s.dir, imageFileName(role, want.format)), { length: spec.size, max: spec.size, what: `the ${role} file of image "${want.name}"`, mode: 0o644 });
    } catch (e) {
      this.discard(instance);
      if (isCorralError(e) && e.code === 'TOO_LARGE') {
        throw new CorralError('INVALID_IMAGE', `the ${role} file of image "${want.name}" came with more than the ${spec.size} bytes announced`, { image: want.name, role });
      }
      throw new CorralError('MIGRATION_FAILED', `the ${role} file of image "${want.name}" did not come whole: ${(e as Error).message}`, { image: want.name, role });
    }
    const { size, sha256 } = got;
    if (sha256 !== spec.sha256) {
      this.discard(instance);
      throw new CorralError('INVALID_IMAGE', `the ${role} file of image "${want.name}" came with ${size} bytes and sha256 ${sha256}, not the ${spec.size} bytes and ${spec.sha256} announced`, { image: want.name, role });
    }
    s.got.set(role, { sha256, size });
    return { sha256, size };
  }

  /**
   * Commit the image received for `instance`: every file announced has come whole, the disk reads as the format it
   * claims with no backing or data file (as an import), then image.json and the folder moved into place.
   */
  async commit(instance: string, fields: ImageRecordFields): Promise<ImageRecord> {
    const s = this.staged.get(instance);
    if (!s) throw new CorralError('INVALID_STATE', `no image is being received for the migration of instance "${instance}"`, { name: instance });
    const want = s.want;
    try {
      const missing = want.files.filter((f) => !s.got.has(f.role)).map((f) => f.role);
      if (missing.length > 0) throw new CorralError('INVALID_STATE', `image "${want.name}": its ${missing.join(', ')} file${missing.length === 1 ? ' has' : 's have'} not come`, { name: want.name });
      if (imageDigest(want.files) !== want.digest) throw new CorralError('INVALID_IMAGE', `image "${want.name}": the digest announced is not its files'`, { name: want.name });
      const disk = join(s.dir, imageFileName('disk', want.format));
      checkImageHeader(disk, want.format);
      const info = await imgInfo(disk, want.format);
      checkImgInfo(info, want.format);
      const final = this.d.images.pathOf(want.name);
      const at = (role: ImageFileRole): string => join(final, imageFileName(role, want.format));
      const record: ImageRecord = {
        name: want.name, kind: want.kind, format: want.format, disk: at('disk'),
        ...(s.got.has('kernel') ? { kernel: at('kernel') } : {}), ...(s.got.has('initrd') ? { initrd: at('initrd') } : {}),
        ...(typeof fields.cmdline === 'string' ? { cmdline: fields.cmdline } : {}), virtualSize: info['virtual-size'],
        createdAt: typeof fields.createdAt === 'string' ? fields.createdAt : new Date().toISOString(), source: fields.source === 'tiny' || fields.source === 'publish' ? fields.source : 'import',
      };
      const made = this.d.images.commit(s.dir, record);
      this.staged.delete(instance);
      this.made.set(instance, want.name);
      this.d.events.publish('image.received', null, { image: want.name, digest: want.digest, reason: `the live migration of instance "${instance}"` });
      return made;
    } catch (e) {
      this.discard(instance);
      throw e;
    }
  }

  /** The image committed for `instance`'s migration stays: the guest runs here. */
  keep(instance: string): void {
    this.made.delete(instance);
  }

  /** Remove what `instance`'s migration staged, and the image it committed unless an instance uses it. */
  discard(instance: string): void {
    const s = this.staged.get(instance);
    if (s) {
      this.staged.delete(instance);
      this.d.images.discard(s.dir);
    }
    const image = this.made.get(instance);
    if (image === undefined) return;
    this.made.delete(instance);
    if (![...this.made.values()].includes(image) && existsSync(this.d.images.pathOf(image))) {
      try {
        this.d.removeImage(image);
      } catch (e) {
        this.d.log.warn({ image, err: (e as Error).message }, 'the image a failed migration brought stays');
      }
    }
  }
}
