/**
 * Instance archives out (corral export), in two steps so that the long part reports progress and the download has a
 * known length:
 * - prepare: under the instance's lock, its disks at one instant (disks-at-instant.ts: the files of a stopped
 *   instance, point-in-time backups of a running one's root disk and volumes, in one transaction), each flattened
 *   and compressed (`qemu-img convert -c`; a raw volume too, its entry's format raw) into $DATA/exports/<id>/, their
 *   sha256 taken, the UEFI variables copied, the manifest written (core/instance-archive.ts);
 *   With `snapshots` (a stopped instance only): the disks kept whole with their internal snapshots instead, each
 *   gzip-compressed (the root overlay copied and its backing reference removed, each qcow2 volume's file;
 *   core/instance-archive.ts), and the instance's snapshot records in the manifest;
 * - download: the tar of the manifest and the files (tar-stream.ts), with its length; the folder goes once the
 *   download ends (whole or not), and at the latest an hour after it was prepared, and at the daemon's next start.
 */
import { randomUUID } from 'node:crypto';
import { copyFileSync, createReadStream, createWriteStream, existsSync, mkdirSync, readdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import { CorralError } from '../core/errors.js';
import { ARCHIVE_FILES, ARCHIVE_FORMAT, ARCHIVE_VERSION, MANIFEST_NAME, encodeManifest, memberName, notCopyable, notWhole, type ArchiveFile, type ArchiveManifest } from '../core/instance-archive.js';
import { assertFits } from '../host/space.js';
import { convert, imgInfo, rebaseUnsafe, type ImgFormat } from '../qemu/img.js';
import type { ImageRecord, ImageStore, Progress } from '../storage/images.js';
import type { InstanceRow } from '../store/store.js';
import { fileSha256 } from './copies.js';
import type { EventBus } from './events.js';
import type { ImageTransfer } from './image-transfer.js';
import type { InstanceService } from './instances.js';
import { disksAtInstant } from './disks-at-instant.js';
import type { VolumeService } from './volumes.js';
import type { SnapshotService } from './snapshots.js';
import { tarSize, tarStream, type TarMember } from './tar-stream.js';
import type { RunAs } from '../host/run-as.js';

/** How long a prepared archive waits for its download. */
export const EXPORT_TTL_MS = 60 * 60_000;

export interface ExportDeps {
  dataDir: string;
  instances: InstanceService;
  images: ImageStore;
  volumes: VolumeService;
  snapshots: Pick<SnapshotService, 'readyRecords'>;
  transfer: Pick<ImageTransfer, 'identity'>;
  events: EventBus;
  runAs?: RunAs;
}

/** A prepared archive, as the API reports it. */
export interface PreparedExport {
  id: string;
  instance: string;
  /** bytes of the whole archive */
  size: number;
  /** bytes the instance's disks hold (the root overlay's and the volumes' allocation, as `du` counts it) */
  diskBytes: number;
  manifest: ArchiveManifest;
}

/** A disk's entry before its member is written. */
type DiskFile = Pick<ArchiveFile, 'role' | 'format' | 'virtualSize' | 'volume' | 'bus'>;

interface Prepared extends PreparedExport {
  dir: string;
  members: TarMember[];
  timer: NodeJS.Timeout;
}

export class ExportService {
  private prepared = new Map<string, Prepared>();
  readonly dir: string;

  constructor(private d: ExportDeps) {
    this.dir = join(d.dataDir, 'exports');
  }

  /** At daemon start: archives prepared by an earlier daemon are never downloaded now. */
  sweep(): string[] {
    if (!existsSync(this.dir)) return [];
    const gone = readdirSync(this.dir).map((f) => join(this.dir, f));
    for (const f of gone) rmSync(f, { recursive: true, force: true });
    return gone;
  }

  async prepare(name: string, opts: { snapshots?: boolean } = {}, progress: Progress = () => {}): Promise<PreparedExport> {
    const id = randomUUID();
    const dir = join(this.dir, id);
    try {
      const manifest = await this.d.instances.withLock(name, async () => {
        const row = this.d.instances.rowOf(name);
        const store = this.d.volumes.store;
        const why = notCopyable(name, row.spec, true);
        if (why) throw why;
        const image = this.d.images.get(row.spec.image);
        const p = this.d.instances.paths(row);
        const held = [p.disk, ...row.spec.disks.map((x) => store.record(x.volume).path)].reduce((n, f) => n + statSync(f).blocks * 512, 0);
        assertFits(this.d.dataDir, held, `the archive of instance "${name}"`, { thin: false });
        if (opts.snapshots) return this.whole(name, row, image, dir, held, progress);
        progress({ step: 'backup', message: `reading the disks of "${name}" at one instant`, percent: 0 });
        const src = await disksAtInstant({ instances: this.d.instances, volumes: store, ...(this.d.runAs ? { runAs: this.d.runAs } : {}) }, row, image,
          (pc) => progress({ step: 'backup', message: 'backing up the running guest\'s disks', percent: pc }));
        const files: ArchiveFile[] = [];
        try {
          mkdirSync(dir, { recursive: true, mode: 0o700 });
          files.push(await this.compressed(dir, { role: 'root', format: 'qcow2', virtualSize: src.root.virtualSize }, src.root, 'the root disk', progress));
          if (row.spec.firmware === 'uefi') files.push(this.efiVars(dir, p.efiVars));
          for (const v of src.volumes) {
            const f = { role: 'volume' as const, format: store.record(v.volume).format, virtualSize: v.virtualSize, volume: v.volume, bus: v.bus };
            files.push(await this.compressed(dir, f, v, `volume "${v.volume}"`, progress));
          }
        } finally {
          src.release();
        }
        const m: ArchiveManifest = {
          format: ARCHIVE_FORMAT, version: ARCHIVE_VERSION, createdAt: new Date().toISOString(),
          instance: { name, spec: row.spec }, image: { name: image.name, kind: image.kind, digest: (await this.d.transfer.identity(image)).digest },
          consistency: src.consistency, files,
        };
        return { m, diskBytes: held };
      });
      progress({ step: 'checksum', message: 'sha256 of each file' });
      for (const f of manifest.m.files) f.sha256 = await fileSha256(this.pathOf(dir, f));
      const members: TarMember[] = [
        { name: MANIFEST_NAME, data: encodeManifest(manifest.m) },
        ...manifest.m.files.map((f) => ({ name: f.name, data: this.pathOf(dir, f) })),
      ];
      const timer = setTimeout(() => this.release(id), EXPORT_TTL_MS);
      timer.unref();
      const out: Prepared = { id, instance: name, size: tarSize(members), diskBytes: manifest.diskBytes, manifest: manifest.m, dir, members, timer };
      this.prepared.set(id, out);
      this.d.events.publish('instance.exported', name, { id, size: out.size, consistency: manifest.m.consistency });
      progress({ step: 'done', message: `archive of ${name} ready (${out.size} bytes)`, percent: 100 });
      return { id, instance: name, size: out.size, diskBytes: out.diskBytes, manifest: manifest.m };
    } catch (e) {
      rmSync(dir, { recursive: true, force: true });
      throw e;
    }
  }

  /**
   * The archive's files and manifest with the disks kept whole (export --snapshots), each gzip-compressed: a stopped
   * instance's overlay, copied and rebased onto no backing file, and its qcow2 volumes' files as they are (a clone's
   * would need its source); a raw volume, which holds no snapshots, flattened and compressed as without --snapshots.
   */
  private async whole(name: string, row: InstanceRow, image: ImageRecord, dir: string, held: number, progress: Progress): Promise<{ m: ArchiveManifest; diskBytes: number }> {
    const vols = row.spec.disks.map((x) => ({ disk: x, rec: this.d.volumes.store.record(x.volume) }));
    const why = notWhole(name, row.state, vols.filter((v) => v.rec.backing !== null).map((v) => v.rec.name), 'an archive', 'export');
    if (why) throw why;
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const p = this.d.instances.paths(row);
    const overlay = join(dir, 'overlay.qcow2');
    copyFileSync(p.disk, overlay);
    await rebaseUnsafe(overlay, null);
    progress({ step: 'compress', message: 'compressing the root disk whole, with its snapshots' });
    const files = [await this.gzipped(dir, { role: 'root', format: 'qcow2', virtualSize: (await imgInfo(overlay, 'qcow2'))['virtual-size'] }, overlay)];
    rmSync(overlay, { force: true });
    if (row.spec.firmware === 'uefi') files.push(this.efiVars(dir, p.efiVars));
    for (const { disk, rec } of vols) {
      const f = { role: 'volume' as const, format: rec.format, virtualSize: rec.virtualSize, volume: disk.volume, bus: disk.bus };
      progress({ step: 'compress', message: `compressing volume "${disk.volume}"${rec.format === 'qcow2' ? ' whole, with its snapshots' : ''}` });
      files.push(rec.format === 'qcow2' ? await this.gzipped(dir, f, rec.path) : await this.compressed(dir, f, rec, `volume "${disk.volume}"`, progress));
    }
    const m: ArchiveManifest = {
      format: ARCHIVE_FORMAT, version: ARCHIVE_VERSION, createdAt: new Date().toISOString(),
      instance: { name, spec: row.spec }, image: { name: image.name, kind: image.kind, digest: (await this.d.transfer.identity(image)).digest },
      consistency: 'stopped', files, snapshots: this.d.snapshots.readyRecords(name),
    };
    return { m, diskBytes: held };
  }

  /** A disk flattened and compressed into a qcow2 member (`qemu-img convert -c`), from `src` (a file and its format). */
  private async compressed(dir: string, f: DiskFile, src: { path: string; format: ImgFormat }, what: string, progress: Progress): Promise<ArchiveFile> {
    const out: ArchiveFile = { ...f, name: memberName(f), size: 0, sha256: '' };
    const file = this.pathOf(dir, out);
    await convert(src.path, src.format, file, 'qcow2', { compress: true, onPercent: (pc) => progress({ step: 'compress', message: `flattening and compressing ${what}`, percent: pc }) });
    out.size = statSync(file).size;
    return out;
  }

  /** A qcow2 disk file kept whole (its internal snapshots in it), gzip-compressed into its member. */
  private async gzipped(dir: string, f: DiskFile, src: string): Promise<ArchiveFile> {
    const out: ArchiveFile = { ...f, name: memberName(f, true), size: 0, sha256: '', compression: 'gzip', unpackedSize: statSync(src).size };
    const file = this.pathOf(dir, out);
    await pipeline(createReadStream(src), createGzip(), createWriteStream(file, { mode: 0o600 }));
    out.size = statSync(file).size;
    return out;
  }

  /** The UEFI variable store, copied as it is. */
  private efiVars(dir: string, path: string): ArchiveFile {
    const out: ArchiveFile = { role: 'efi-vars', name: ARCHIVE_FILES['efi-vars'], format: 'raw', size: statSync(path).size, sha256: '' };
    copyFileSync(path, this.pathOf(dir, out));
    return out;
  }

  /** Where a file of the archive waits for the download. */
  private pathOf(dir: string, f: Pick<ArchiveFile, 'name'>): string {
    return join(dir, f.name.replaceAll('/', '_'));
  }

  /** The archive's bytes and length; call done() when the download ends (the files go). */
  open(id: string): { stream: Readable; size: number; done: () => void } {
    const p = this.prepared.get(id);
    if (!p) throw new CorralError('NOT_FOUND', `no archive ${id} is waiting for its download (it went after its download, an hour, or a daemon restart)`, { id });
    return { stream: tarStream(p.members), size: p.size, done: () => this.release(id) };
  }

  release(id: string): void {
    const p = this.prepared.get(id);
    if (!p) return;
    clearTimeout(p.timer);
    this.prepared.delete(id);
    rmSync(p.dir, { recursive: true, force: true });
  }
}
