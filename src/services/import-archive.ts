/**
 * Instance archives in (corral import), from a stream (the API's upload body):
 * - the manifest first (core/instance-archive.ts checks it), then the name (the manifest's or the one given): taken
 *   is ALREADY_EXISTS before a byte is written; the image it names must be here (its recorded sha256, for a published
 *   image, checked);
 * - each file written into the new instance's folder as it comes, its size and sha256 checked against the manifest;
 *   the end of the archive must come, and nothing but zeros after it;
 * - only then: the root disk inspected as an untrusted image import (no backing file, no data file: storage/inspect)
 *   and written as a new overlay on this host's copy of the image (`qemu-img convert -B`), so that every root disk
 *   stays an overlay on its image. The archive's disk is flattened: every cluster it holds is written (the image's
 *   data too, uncompressed: as much space as a --full copy), and what it lacks is written as zeros, so the data is
 *   whole even where this host's image differs from the one exported from. Each volume in the archive, inspected
 *   the same way, becomes a new standalone volume of the name and format it had (VolumeStore.fromImage: qcow2, or
 *   raw again for an entry of format raw), attached to the new instance on its bus: a volume of that name on this
 *   host is ALREADY_EXISTS before a byte is written (delete or rename it, there is no renaming on import). The row
 *   stored with a new uuid and new MACs, its root disk local (importedSpec: an archive of an instance on the shared
 *   pool imports as a local, non-HA one).
 * An archive with snapshots (export --snapshots) keeps its disks whole: it needs this host's image to be the very one
 * exported from (its identity digest, INVALID_IMAGE otherwise, before a byte is written); the root disk, inspected,
 * is moved into place and pointed at that image (`qemu-img rebase -u`), each qcow2 volume's file copied as it is (a
 * gzip-compressed member is decompressed as it comes, at most its manifest's unpackedSize), and the
 * snapshot records written to the new instance's snapshots.json, so `corral snapshot list` and restore see them.
 * A truncated or changed archive, or any other failure: INVALID_ARCHIVE (or the step's own code), the folder and the
 * volumes made removed, no row. A crash midway leaves a folder without a row, which reconcile removes (sweepInstanceDirs).
 */
import { randomUUID } from 'node:crypto';
import { mkdirSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { CorralError } from '../core/errors.js';
import { MANIFEST_NAME, MAX_MANIFEST_BYTES, decodeManifest, importedSpec, type ArchiveFile, type ArchiveManifest } from '../core/instance-archive.js';
import { validateName } from '../core/names.js';
import { instancePaths } from '../core/paths.js';
import { invalidArchive, padding } from '../core/tar.js';
import { assertFits } from '../host/space.js';
import { convert, rebaseUnsafe, untrustedInfo } from '../qemu/img.js';
import { writeJsonAtomic } from '../host/fs-atomic.js';
import { SNAPSHOT_RECORDS_FILE } from '../core/snapshots.js';
import type { ImageTransfer } from './image-transfer.js';
import { openImportSource } from '../storage/import-source.js';
import { checkImageHeader, checkImgInfo } from '../storage/inspect.js';
import type { ImageStore, Progress } from '../storage/images.js';
import { NewVolumes, madeOrRemoved, verifyImage } from './copies.js';
import type { EventBus } from './events.js';
import type { InstanceService, InstanceView } from './instances.js';
import { TarReader } from './tar-stream.js';
import { receiveProgress } from './upload-file.js';
import type { VolumeService } from './volumes.js';

export interface ImportDeps {
  dataDir: string;
  instances: InstanceService;
  images: ImageStore;
  volumes: VolumeService;
  transfer: Pick<ImageTransfer, 'identity'>;
  events: EventBus;
}

/** The files of an archive received into the new instance's folder, checked against the manifest. */
interface Staged {
  root: string;
  efiVars: string | null;
  /** each volume's file, in the manifest's order, with its entry */
  volumes: Array<{ entry: ArchiveFile; file: string }>;
}

export class ArchiveImporter {
  constructor(private d: ImportDeps) {}

  /** `total`: the upload's length when known (for progress). */
  async import(body: Readable, name: string | undefined, total: number | null, progress: Progress = () => {}): Promise<InstanceView> {
    if (name !== undefined) validateName('name', name);
    const reader = new TarReader(body, receiveProgress(total, progress, 'receiving the archive'));
    const first = await reader.next();
    if (!first || first.name !== MANIFEST_NAME) throw invalidArchive(`its first member is not ${MANIFEST_NAME}: not a Corral instance archive`);
    if (first.size > MAX_MANIFEST_BYTES) throw invalidArchive(`its manifest takes ${first.size} bytes, more than a manifest may`);
    const m = decodeManifest(await reader.read(first.size));
    await reader.read(padding(first.size));
    const to = name ?? m.instance.name;
    if (this.d.instances.listRows().some((r) => r.name === to)) {
      throw new CorralError('ALREADY_EXISTS', `instance "${to}" already exists: give the import another name (corral import FILE NAME)`, { field: 'name' });
    }
    const volumes = m.files.filter((f) => f.role === 'volume').map((f) => f.volume!);
    for (const v of volumes) this.d.volumes.store.assertFree(v);
    const image = this.d.images.get(m.image.name);
    const whole = m.snapshots !== undefined;
    if (whole) {
      const here = (await this.d.transfer.identity(image)).digest;
      if (here !== m.image.digest) {
        throw new CorralError('INVALID_IMAGE', `the archive keeps its disks whole with their snapshots, as a layer over image "${image.name}" of digest ${m.image.digest}; this host's image "${image.name}" is ${here}: import it where that image is, or export without --snapshots`, { image: image.name });
      }
    }
    assertFits(this.d.dataDir, m.files.reduce((n, f) => n + f.size + (f.unpackedSize ?? 0) + (f.virtualSize ?? 0), 0), `importing instance "${to}"`);
    const uuid = randomUUID();
    const p = instancePaths(this.d.dataDir, uuid);
    const vols = new NewVolumes(this.d.volumes, to, uuid);
    return madeOrRemoved(p.dir, vols, this.d.images.claim(image.name), async () => {
      mkdirSync(p.dir, { recursive: true, mode: 0o711 });
      const staged = await this.receive(reader, m, p.dir);
      progress({ step: 'verify', message: `every file's sha256 matches the manifest; checking image "${image.name}"` });
      await verifyImage(image);
      if (whole) {
        await this.inspected(staged.root, async () => renameSync(staged.root, p.disk));
        await rebaseUnsafe(p.disk, { path: image.disk, format: image.format });
      } else {
        await this.inspected(staged.root, (src) => convert(src, 'qcow2', p.disk, 'qcow2', {
          untrusted: true, backing: { path: image.disk, format: image.format }, onPercent: (pc) => progress({ step: 'convert', message: 'writing the root disk onto the image', percent: pc }),
        }));
        rmSync(staged.root, { force: true });
      }
      for (const v of staged.volumes) {
        // a raw volume comes as a flattened qcow2 and is made raw again; a qcow2 one of an archive with snapshots whole
        const volume = v.entry.volume!;
        await this.inspected(v.file, (src) => vols.make(volume, src, 'qcow2', {
          untrusted: true, whole: whole && v.entry.format === 'qcow2', format: v.entry.format,
          onPercent: (pc) => progress({ step: 'convert', message: `writing volume "${volume}"`, percent: pc }),
        }));
        rmSync(v.file, { force: true });
      }
      if (staged.efiVars) renameSync(staged.efiVars, p.efiVars);
      if (m.snapshots) writeJsonAtomic(join(p.dir, SNAPSHOT_RECORDS_FILE), { snapshots: m.snapshots }, 0o600);
      const spec = importedSpec(m.instance.spec, uuid, { has: (mac) => this.d.instances.macInUse(mac) });
      const root = m.files[0]!;
      if ((root.virtualSize ?? 0) > image.virtualSize) spec.disk = root.virtualSize!;
      const view = await this.d.instances.recordMade(to, uuid, spec, `imported from an archive of "${m.instance.name}" (${m.createdAt})`);
      await vols.settle();
      this.d.events.publish('instance.imported', to, { from: m.instance.name, consistency: m.consistency });
      progress({ step: 'done', message: `instance ${to} imported`, percent: 100 });
      return view;
    });
  }

  /** Each file of the manifest, in order, into `dir`, checked; then the archive's end. */
  private async receive(reader: TarReader, m: ArchiveManifest, dir: string): Promise<Staged> {
    const out: Staged = { root: '', efiVars: null, volumes: [] };
    for (const f of m.files) {
      const e = await reader.next();
      if (!e) throw invalidArchive(`it ends before ${f.name} (truncated)`);
      if (e.name !== f.name) throw invalidArchive(`member "${e.name}" comes where the manifest says ${f.name}`);
      if (e.size !== f.size) throw invalidArchive(`${f.name} has ${e.size} bytes, the manifest says ${f.size}`);
      const file = join(dir, f.role === 'volume' ? `archive-volume-${out.volumes.length}.qcow2` : f.role === 'root' ? 'archive-root.qcow2' : 'archive-efi-vars.fd');
      // a compressed whole disk is decompressed as it comes; the sha256 is of the member's bytes
      const gz = f.compression === 'gzip' ? { gunzip: { maxBytes: f.unpackedSize! } } : {};
      const got = await reader.toFile(e, file, gz);
      if (got.sha256 !== f.sha256) throw invalidArchive(`${f.name}'s sha256 is ${got.sha256}, the manifest says ${f.sha256}: the archive was changed or damaged`);
      if (f.compression && got.written !== f.unpackedSize) throw invalidArchive(`${f.name} decompresses to ${got.written} bytes, the manifest says ${f.unpackedSize}`);
      if (f.role === 'root') out.root = file;
      else if (f.role === 'volume') out.volumes.push({ entry: f, file });
      else out.efiVars = file;
    }
    if ((await reader.next()) !== null) throw invalidArchive('a member follows the files its manifest lists');
    if (!(await reader.restIsZeros())) throw invalidArchive('something that is not zeros follows its end');
    return out;
  }

  /** An archive's disk, untrusted: inspected through its open descriptor, then `use`d by that descriptor's path. */
  private async inspected(staged: string, use: (fdPath: string) => Promise<void>): Promise<void> {
    const src = openImportSource(staged);
    try {
      checkImageHeader(src.fd, 'qcow2');
      checkImgInfo(await untrustedInfo(src.fdPath, 'qcow2'), 'qcow2');
      await use(src.fdPath);
    } finally {
      src.close();
    }
  }
}
