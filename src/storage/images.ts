/**
 * The image store: one folder a image under $DATA/images/<name>/, described by image.json. An image is
 * assembled in a hidden staging folder (`.staging-<name>-<random>`), its image.json written last
 * (tmp + fsync + rename), and the folder renamed into place: a half-made image never shows, and a
 * failed import leaves nothing behind.
 */
import { chmodSync, existsSync, readdirSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { CorralError, invalidSpec } from '../core/errors.js';
import { dataPaths } from '../core/paths.js';
import { formatSize } from '../core/units.js';
import { printable, validateName } from '../core/spec.js';
import { convert, imgInfo, untrustedInfo, type ImgFormat, type ImgInfo } from '../qemu/img.js';
import { openImportSource } from './import-source.js';
import { assertFits } from '../host/space.js';
import { crashPoint } from '../host/crash-points.js';
import { checkImageHeader, checkImgInfo } from './inspect.js';
import { fsyncDir } from '../host/fs-atomic.js';
import { RecordDir, writeJsonAtomic } from './record-dir.js';

export interface ImageRecord {
  name: string;
  kind: 'kernel' | 'disk';
  format: 'qcow2' | 'raw';
  /** absolute path of the root disk */
  disk: string;
  kernel?: string;
  initrd?: string;
  /** base kernel command line for direct kernel boot (kind 'kernel' only); the daemon appends corral.hostname=NAME */
  cmdline?: string;
  virtualSize: number;
  createdAt: string;
  source: 'tiny' | 'import' | 'publish';
  /** sha256 of the disk file as it was made (published images): checked again when an archive import uses the image */
  sha256?: string;
}

export type Progress = (ev: { step: string; message: string; percent?: number }) => void;

const RECORD = 'image.json';

export { writeJsonAtomic };

function isRecord(v: unknown): v is ImageRecord {
  if (typeof v !== 'object' || v === null) return false;
  const r = v as Record<string, unknown>;
  return typeof r.name === 'string' && (r.kind === 'kernel' || r.kind === 'disk') && (r.format === 'qcow2' || r.format === 'raw')
    && typeof r.disk === 'string' && typeof r.virtualSize === 'number';
}

/** qemu-img info of an import's source, through its open descriptor (import-source.ts). */
async function inspect(fdPath: string, format: ImgFormat): Promise<ImgInfo> {
  try {
    return await untrustedInfo(fdPath, format);
  } catch (e) {
    if (e instanceof CorralError && e.code === 'INVALID_IMAGE') {
      const reason = typeof e.details.stderr === 'string' ? e.details.stderr : e.message;
      throw new CorralError('INVALID_IMAGE', `image refused: format: not a valid ${format} image: ${reason}`, { field: 'format', reason });
    }
    throw e;
  }
}

export class ImageStore {
  readonly dir: string;
  private records: RecordDir<ImageRecord>;

  /** images being rebuilt or deleted now, with what is happening to them */
  private changing = new Map<string, string>();
  /** instances being made on each image now (their overlay created, their row not yet stored) */
  private making = new Map<string, number>();

  constructor(dataDir: string) {
    this.dir = dataPaths(dataDir).images;
    this.records = new RecordDir(this.dir, RECORD, isRecord, 0o755);
  }

  /**
   * An instance is being made on image `name` (its overlay will back onto the image's disk): refused with
   * IMAGE_IN_USE while the image is being rebuilt or deleted. Call the returned release once the instance's row
   * is stored (or its creation failed). Together with holdForChange, neither can start while the other runs.
   */
  claim(name: string): () => void {
    const change = this.changing.get(name);
    if (change !== undefined) throw new CorralError('IMAGE_IN_USE', `image "${name}" is being ${change}: no instance can be made from it until that is done`, { image: name });
    this.making.set(name, (this.making.get(name) ?? 0) + 1);
    let held = true;
    return () => {
      if (!held) return;
      held = false;
      const n = (this.making.get(name) ?? 1) - 1;
      if (n > 0) this.making.set(name, n);
      else this.making.delete(name);
    };
  }

  /**
   * Image `name` is about to be `verb` (rebuilt, deleted): refused while an instance is being made on it or it is
   * already changing; new instances on it are refused until the returned release is called, so the lock spans
   * the whole change (a build of minutes included). The caller still checks that no stored instance uses it.
   */
  holdForChange(name: string, verb: string): () => void {
    const change = this.changing.get(name);
    if (change !== undefined) throw new CorralError('IMAGE_IN_USE', `image "${name}" is already being ${change}`, { image: name });
    if ((this.making.get(name) ?? 0) > 0) throw new CorralError('IMAGE_IN_USE', `image "${name}" cannot be ${verb}: an instance is being made from it`, { image: name });
    this.changing.set(name, verb);
    return () => {
      if (this.changing.get(name) === verb) this.changing.delete(name);
    };
  }

  /** What crashed work left in the folder (record-dir.ts sweep()): dead makers' staging folders, removal folders. */
  sweep(alive: (pid: number) => boolean): string[] {
    return this.records.sweep(alive);
  }

  /** The folder an image lives in once committed. */
  pathOf(name: string): string {
    return this.records.pathOf(name);
  }

  list(): ImageRecord[] {
    return this.records.list();
  }

  tryGet(name: string): ImageRecord | null {
    try {
      validateName('name', name);
    } catch {
      return null;
    }
    return this.read(name);
  }

  get(name: string): ImageRecord {
    validateName('name', name);
    const r = this.read(name);
    if (!r) throw new CorralError('IMAGE_NOT_FOUND', `image "${name}" does not exist`, { name });
    return r;
  }

  private read(name: string): ImageRecord | null {
    return this.records.read(name);
  }

  /** A fresh hidden staging folder for building image `name`; remove it on failure with discard(). */
  stage(name: string): string {
    return this.records.stage(name);
  }

  discard(staging: string): void {
    this.records.discard(staging);
  }

  /**
   * Write image.json into the staging folder and move the folder into place. Refuses (ALREADY_EXISTS) when
   * the name exists, unless replace is set: then the old folder is moved aside and removed afterwards.
   */
  commit(staging: string, record: ImageRecord, opts: { replace?: boolean } = {}): ImageRecord {
    this.records.writeRecord(staging, record);
    // every QEMU reads base images (an overlay's backing file, a kernel and initrd) as its unprivileged user
    for (const f of readdirSync(staging, { withFileTypes: true })) if (f.isFile()) chmodSync(join(staging, f.name), 0o644);
    const final = this.pathOf(record.name);
    let old: string | null = null;
    if (existsSync(final)) {
      if (!opts.replace && this.read(record.name)) throw new CorralError('ALREADY_EXISTS', `image "${record.name}" already exists`, { name: record.name });
      // replaced, or a leftover folder without a valid image.json (an interrupted older version)
      old = this.records.aside(record.name);
      renameSync(final, join(old, 'image'));
    }
    try {
      renameSync(staging, final);
      fsyncDir(this.records.dir);
    } catch (e) {
      if (old) renameSync(join(old, 'image'), final);
      throw e;
    } finally {
      if (old) rmSync(old, { recursive: true, force: true });
    }
    return record;
  }

  async import(name: string, file: string, format: 'qcow2' | 'raw', progress: Progress = () => {}): Promise<ImageRecord> {
    validateName('name', name);
    if (format !== 'qcow2' && format !== 'raw') throw invalidSpec('format', `"${printable(String(format))}" is not an image format: use qcow2 or raw`);
    if (existsSync(this.pathOf(name))) throw new CorralError('ALREADY_EXISTS', `image "${name}" already exists`, { name });
    const src = openImportSource(file);
    try {
      assertFits(this.dir, src.allocated, `importing ${src.path}`, { thin: false });
      progress({ step: 'inspect', message: `inspecting ${src.path} as ${format}` });
      checkImageHeader(src.fd, format);
      checkImgInfo(await inspect(src.fdPath, format), format);
      const staging = this.stage(name);
      try {
        const disk = join(staging, `disk.${format}`);
        progress({ step: 'copy', message: `copying into the image store`, percent: 0 });
        await convert(src.fdPath, format, disk, format, { untrusted: true, onPercent: (p) => progress({ step: 'copy', message: `copying into the image store`, percent: p }) });
        const info = await imgInfo(disk, format);
        checkImgInfo(info, format);
        crashPoint('import.copied'); // a staging folder of a dead daemon: swept at the next start
        const record: ImageRecord = {
          name, kind: 'disk', format, disk: join(this.pathOf(name), `disk.${format}`),
          virtualSize: info['virtual-size'], createdAt: new Date().toISOString(), source: 'import',
        };
        this.commit(staging, record);
        progress({ step: 'done', message: `image ${name} imported (${formatSize(info['virtual-size'])} virtual)`, percent: 100 });
        return record;
      } catch (e) {
        this.discard(staging);
        throw e;
      }
    } finally {
      src.close();
    }
  }

  remove(name: string): void {
    this.get(name);
    this.records.remove(name);
  }
}
