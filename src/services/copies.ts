/**
 * Copies of instances and images made from them:
 * - copy (linked, the default): a new stopped instance whose root disk is a new qcow2 overlay on the same base image,
 *   holding what the source's overlay holds (`qemu-img convert -B IMAGE`). It shares nothing with the source but the
 *   image, which no instance writes: the source may go on running and writing, be copied again or deleted, and
 *   neither sees the other's writes. (A copy backed by a frozen source overlay would save the copy of that data, but
 *   would need the source to move onto a new overlay of its own and could never be flattened away.)
 * - copy --full: the root disk flattened (`qemu-img convert`, no backing file at all): it needs not even the image's
 *   disk (a kernel-kind image still gives its kernel at boot).
 * - Attached volumes: each copied whole (flattened: a linked copy of a volume would be a clone, which pins its
 *   source read-only for ever) into a new volume named COPY-VOLUME of the same format (a raw volume stays raw),
 *   attached to the copy on the same bus. A name taken is ALREADY_EXISTS before anything is made; vhost-user disks
 *   are refused (notCopyable).
 * - copy --snapshots (a stopped instance, no clone attached; not with --full): the root overlay's file and each qcow2
 *   volume's copied whole, their internal snapshots in them, and the snapshot records written to the copy's
 *   snapshots.json, each volume named as the copy's (copiedSnapshots), so `corral snapshot list|restore` on the copy
 *   see them. Without it a copy has no snapshots (flattened disks hold none).
 * - A running (or paused) source is read through point-in-time backups of all its disks at one instant
 *   (disks-at-instant.ts): the copy is what a power cut at that instant would leave, the guest never stops.
 * - The copy has a new uuid, new MACs, no fixed addresses yet (its first start reserves them), no port forwards, no
 *   passthrough devices (core/instance-archive.ts copySpec).
 * - publish: a stopped instance's root disk, flattened, becomes a new image (with the image's kernel, initrd and
 *   command line for a kernel-kind image) whose disk's sha256 is recorded in image.json.
 * A failure leaves nothing: the new folder (or the image's staging folder) and the new volumes go, no row is stored.
 */
import { randomUUID, createHash } from 'node:crypto';
import { copyFileSync, createReadStream, existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { CorralError, invalidSpec } from '../core/errors.js';
import { copiedSnapshots, copiedVolumeName, copySpec, notCopyable, notWhole } from '../core/instance-archive.js';
import { SNAPSHOT_RECORDS_FILE } from '../core/snapshots.js';
import { writeJsonAtomic } from '../host/fs-atomic.js';
import type { InstanceDisk } from '../core/spec-schema.js';
import { validateName } from '../core/names.js';
import { instancePaths } from '../core/paths.js';
import { assertFits } from '../host/space.js';
import { convert, imgInfo, rebaseUnsafe } from '../qemu/img.js';
import { checkImgInfo } from '../storage/inspect.js';
import type { ImageRecord, ImageStore, Progress } from '../storage/images.js';
import type { EventBus } from './events.js';
import type { InstanceService, InstanceView } from './instances.js';
import { disksAtInstant, type RootBackupDeps } from './disks-at-instant.js';
import type { RunAs } from '../host/run-as.js';
import type { ImgFormat } from '../qemu/img.js';
import type { VolumeService } from './volumes.js';
import type { VolumeRecord, VolumeStore } from '../storage/volumes.js';
import type { SnapshotService } from './snapshots.js';

export interface CopyDeps {
  dataDir: string;
  instances: InstanceService;
  images: ImageStore;
  volumes: VolumeService;
  /** the snapshot records a copy with snapshots carries */
  snapshots: Pick<SnapshotService, 'readyRecords'>;
  events: EventBus;
  runAs?: RunAs;
}

/** sha256 of a file's bytes. */
export async function fileSha256(path: string): Promise<string> {
  const h = createHash('sha256');
  await pipeline(createReadStream(path), h);
  return h.digest('hex');
}

/** An image whose disk's sha256 was recorded (published images): INVALID_IMAGE when the disk is no longer that. */
export async function verifyImage(image: ImageRecord): Promise<void> {
  if (image.sha256 === undefined) return;
  const now = await fileSha256(image.disk);
  if (now !== image.sha256) {
    throw new CorralError('INVALID_IMAGE', `image "${image.name}": its disk's sha256 is ${now}, not the ${image.sha256} recorded when it was made: it was changed behind Corral's back`, { image: image.name });
  }
}

/**
 * Make a new instance in folder `dir` (a copy's, an import's): `work` fills it, makes its volumes through `vols`
 * and records the instance; on any failure the folder and the volumes made go. `release` (the image's claim) is
 * called either way.
 */
export async function madeOrRemoved<T>(dir: string, vols: NewVolumes, release: () => void, work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (e) {
    await vols.removeAll();
    rmSync(dir, { recursive: true, force: true });
    throw e;
  } finally {
    release();
  }
}

/**
 * The volumes a copy or an import makes for its new instance (name, uuid), attached to it as made; removed when it
 * fails. Each carries the instance's uuid as `madeFor` until `settle`, after the instance is recorded: a daemon that
 * dies between the two drops them at its next start (dropUnrecorded).
 */
export class NewVolumes {
  private made: string[] = [];

  constructor(private volumes: VolumeService, private instance: string, private uuid: string) {}

  /** Volume `name` from image `src` (VolumeStore.fromImage), attached to the new instance. */
  async make(name: string, src: string, format: ImgFormat, opts: Parameters<VolumeStore['fromImage']>[3] = {}): Promise<void> {
    await this.volumes.exclusive(async () => {
      await this.volumes.store.fromImage(name, src, format, { ...opts, madeFor: this.uuid });
      this.made.push(name);
      this.volumes.store.setAttached(name, this.instance);
    });
  }

  /** The instance is recorded: the volumes are its own now (a mark left by a failure here goes at the next start). */
  async settle(): Promise<void> {
    const names = this.made.splice(0);
    await this.volumes.exclusive(async () => {
      for (const n of names) this.volumes.store.settle(n);
    }).catch(() => undefined);
  }

  async removeAll(): Promise<void> {
    const names = this.made.splice(0).reverse();
    await this.volumes.exclusive(async () => {
      for (const n of names) {
        this.volumes.store.setAttached(n, null);
        await this.volumes.store.remove(n);
      }
    }).catch(() => undefined);
  }
}

/**
 * At daemon start: the volumes a copy or an import made for an instance it never recorded (the daemon died between the
 * two; `recorded` holds the uuids of the instances there are) go; those whose instance was recorded lose the mark.
 */
export function dropUnrecorded(volumes: VolumeService, recorded: ReadonlySet<string>): Promise<string[]> {
  return volumes.exclusive(async () => {
    const dropped: string[] = [];
    for (const v of volumes.store.records()) {
      if (v.madeFor === undefined) continue;
      if (recorded.has(v.madeFor)) {
        volumes.store.settle(v.name);
        continue;
      }
      try {
        volumes.store.setAttached(v.name, null);
        await volumes.store.remove(v.name);
        dropped.push(`volume ${v.name} (made for an instance never recorded)`);
      } catch (e) {
        // (a daemon starts whatever one leftover says: the volume stays, named in the log)
        dropped.push(`volume ${v.name} (made for an instance never recorded) could not be removed: ${(e as Error).message}`);
      }
    }
    return dropped;
  });
}

export class CopyService {
  constructor(private d: CopyDeps) {}

  private backupDeps(): RootBackupDeps {
    return { instances: this.d.instances, volumes: this.d.volumes.store, ...(this.d.runAs ? { runAs: this.d.runAs } : {}) };
  }

  /**
   * Copy instance `name` to a new stopped instance `to` (linked to the image, or flattened with `full`); with
   * `snapshots` (a stopped instance, linked), its disks whole with their snapshots and the snapshot records.
   */
  async copy(name: string, to: string, opts: { full?: boolean; snapshots?: boolean }, progress: Progress = () => {}): Promise<InstanceView> {
    validateName('name', to);
    if (opts.full && opts.snapshots) throw invalidSpec('snapshots', 'a copy with snapshots keeps the root disk a layer over the image (a flattened disk drops its snapshots): leave out --full');
    if (this.d.instances.listRows().some((r) => r.name === to)) throw new CorralError('ALREADY_EXISTS', `instance "${to}" already exists`, { field: 'name' });
    const uuid = randomUUID();
    const p = instancePaths(this.d.dataDir, uuid);
    let release = (): void => undefined;
    const vols = new NewVolumes(this.d.volumes, to, uuid);
    return madeOrRemoved(p.dir, vols, () => release(), async () => {
      const spec = await this.d.instances.withLock(name, async () => {
        const row = this.d.instances.rowOf(name);
        const store = this.d.volumes.store;
        const why = notCopyable(name, row.spec);
        if (why) throw why;
        const recs = row.spec.disks.map((x) => store.record(x.volume));
        if (opts.snapshots) {
          const whole = notWhole(name, row.state, recs.filter((r) => r.backing !== null).map((r) => r.name), 'a copy', 'copy');
          if (whole) throw whole;
        }
        const disks: InstanceDisk[] = row.spec.disks.map((x) => ({ volume: copiedVolumeName(to, x.volume), bus: x.bus }));
        for (const x of disks) store.assertFree(x.volume);
        const image = this.d.images.get(row.spec.image);
        release = this.d.images.claim(image.name);
        const from = this.d.instances.paths(row);
        assertFits(this.d.dataDir, (await imgInfo(from.disk, 'qcow2'))['virtual-size'], `the root disk of copy "${to}"`);
        assertFits(store.dir, recs.reduce((n, r) => n + r.virtualSize, 0), `the volumes of copy "${to}"`);
        mkdirSync(p.dir, { recursive: true, mode: 0o711 });
        if (opts.snapshots) {
          await this.copyWhole(from.disk, p, image, recs, disks, vols, progress);
        } else {
          progress({ step: 'backup', message: `reading the disks of "${name}" at one instant`, percent: 0 });
          const src = await disksAtInstant(this.backupDeps(), row, image, (pc) => progress({ step: 'backup', message: 'backing up the running guest\'s disks', percent: pc }));
          try {
            const copying = (pc: number): void => progress({ step: 'copy', message: opts.full ? 'copying the root disk, flattened' : 'copying the root disk onto the image', percent: pc });
            if (!opts.full && src.consistency === 'backup') renameSync(src.root.path, p.disk); // the backup is that overlay already
            else await convert(src.root.path, 'qcow2', p.disk, 'qcow2', { onPercent: copying, ...(opts.full ? {} : { backing: { path: image.disk, format: image.format } }) });
            for (const [i, v] of src.volumes.entries()) {
              const copied = disks[i]!.volume;
              // (a raw volume is made raw again: from a running guest its backup is a qcow2)
              await vols.make(copied, v.path, v.format, { format: recs[i]!.format, onPercent: (pc) => progress({ step: 'copy', message: `copying volume "${v.volume}" to "${copied}"`, percent: pc }) });
            }
          } finally {
            src.release();
          }
        }
        if (row.spec.firmware === 'uefi' && existsSync(from.efiVars)) copyFileSync(from.efiVars, p.efiVars);
        if (opts.snapshots) writeJsonAtomic(join(p.dir, SNAPSHOT_RECORDS_FILE), { snapshots: copiedSnapshots(this.d.snapshots.readyRecords(name), to) }, 0o600);
        return copySpec(row.spec, uuid, { has: (mac) => this.d.instances.macInUse(mac) }, disks);
      });
      const view = await this.d.instances.recordMade(to, uuid, spec, `${opts.full ? 'full ' : ''}copy of "${name}"${opts.snapshots ? ' with its snapshots' : ''}`);
      await vols.settle();
      this.d.events.publish('instance.copied', to, { from: name, full: opts.full === true, snapshots: opts.snapshots === true });
      progress({ step: 'done', message: `instance ${to} made from ${name}`, percent: 100 });
      return view;
    });
  }

  /**
   * A stopped instance's disks copied whole with their internal snapshots (copy --snapshots): the root overlay's file
   * (pointed at the image again), each qcow2 volume's file as it is; a raw volume (no snapshots) converted.
   */
  private async copyWhole(overlay: string, p: { disk: string }, image: ImageRecord, recs: VolumeRecord[], disks: InstanceDisk[], vols: NewVolumes, progress: Progress): Promise<void> {
    progress({ step: 'copy', message: 'copying the root disk whole, with its snapshots' });
    copyFileSync(overlay, p.disk);
    await rebaseUnsafe(p.disk, { path: image.disk, format: image.format });
    for (const [i, r] of recs.entries()) {
      const copied = disks[i]!.volume;
      progress({ step: 'copy', message: `copying volume "${r.name}" to "${copied}"${r.format === 'qcow2' ? ' whole, with its snapshots' : ''}` });
      await vols.make(copied, r.path, r.format, r.format === 'qcow2' ? { whole: true } : { format: 'raw' });
    }
  }

  /** A stopped instance's root disk, flattened, as new image `imageName` (its disk's sha256 recorded). */
  async publish(name: string, imageName: string, progress: Progress = () => {}): Promise<ImageRecord> {
    validateName('image', imageName);
    if (this.d.images.tryGet(imageName)) throw new CorralError('ALREADY_EXISTS', `image "${imageName}" already exists`, { field: 'image' });
    const record = await this.d.instances.withLock(name, async () => {
      const row = this.d.instances.rowOf(name);
      if (row.state !== 'stopped' && row.state !== 'crashed') {
        throw new CorralError('INVALID_STATE', `instance "${name}" is ${row.state}: stop it first (an image is made from a stopped instance's disk)`, { state: row.state });
      }
      const base = this.d.images.get(row.spec.image);
      const from = this.d.instances.paths(row);
      const info = await imgInfo(from.disk, 'qcow2');
      assertFits(this.d.images.dir, info['virtual-size'], `image "${imageName}"`);
      const staging = this.d.images.stage(imageName);
      try {
        const disk = join(staging, 'disk.qcow2');
        await convert(from.disk, 'qcow2', disk, 'qcow2', { onPercent: (pc) => progress({ step: 'copy', message: `flattening the root disk of "${name}"`, percent: pc }) });
        const made = await imgInfo(disk, 'qcow2');
        checkImgInfo(made, 'qcow2');
        progress({ step: 'checksum', message: 'sha256 of the image\'s disk' });
        const sha256 = await fileSha256(disk);
        const final = this.d.images.pathOf(imageName);
        const rec: ImageRecord = {
          name: imageName, kind: base.kind, format: 'qcow2', disk: join(final, 'disk.qcow2'), virtualSize: made['virtual-size'],
          createdAt: new Date().toISOString(), source: 'publish', sha256,
        };
        // a kernel-kind image boots its kernel and initrd with its command line: the new image carries them
        if (base.kernel) {
          copyFileSync(base.kernel, join(staging, 'vmlinuz'));
          rec.kernel = join(final, 'vmlinuz');
        }
        if (base.initrd) {
          copyFileSync(base.initrd, join(staging, 'initrd.img'));
          rec.initrd = join(final, 'initrd.img');
        }
        if (base.cmdline !== undefined) rec.cmdline = base.cmdline;
        return this.d.images.commit(staging, rec);
      } catch (e) {
        this.d.images.discard(staging);
        throw e;
      }
    });
    this.d.events.publish('image.published', null, { image: imageName, instance: name, sha256: record.sha256 });
    progress({ step: 'done', message: `image ${imageName} published from ${name}`, percent: 100 });
    return record;
  }
}
