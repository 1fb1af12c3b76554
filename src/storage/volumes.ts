/**
 * Volumes in the `default` directory storage pool, $DATA/volumes/<name>/ holding `disk.<format>` and
 * `volume.json`. Metadata is a JSON file per volume, not a SQLite table, for the same reasons as images: the
 * record sits next to the file it describes, and a volume is made in a hidden staging folder (its
 * volume.json written last, tmp + fsync + rename) and the folder renamed into place, so a failed create or
 * clone leaves nothing behind and a half-made volume never shows. Changes to an existing volume (resize,
 * attachedTo) rewrite volume.json atomically.
 *
 * Every qemu-img failure passes through lockErrorToInUse(): a volume open in a running QEMU is VOLUME_IN_USE.
 *
 * A clone is a qcow2 overlay that reads its source for every block it has not written itself, so a source with
 * clones must never change again: it cannot be cloned while attached (its instance may write to it), attached
 * while it has clones, reverted, shrunk or deleted (VOLUME_IN_USE naming the instance or the clones).
 */
import { copyFileSync, existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { CorralError, invalidSpec, isCorralError } from '../core/errors.js';
import { dataPaths } from '../core/paths.js';
import { printable, validateName } from '../core/spec.js';
import { formatSizeExact, parseSize } from '../core/units.js';
import { convert, createOverlay, imgInfo, resize as imgResize, type ImgFormat } from '../qemu/img.js';
import { MAX_IMAGE_SIZE } from './inspect.js';
import { takeBack } from '../host/run-as.js';
import { assertFits } from '../host/space.js';
import { crashPoint } from '../host/crash-points.js';
import { RecordDir } from './record-dir.js';
import { createImage, lockErrorToInUse, probeLock, snapshotOp } from './volumes-img.js';

export const DEFAULT_POOL = 'default';
const RECORD = 'volume.json';

/** What volume.json holds. */
export interface VolumeRecord {
  name: string;
  pool: string;
  format: ImgFormat;
  /** virtual size in bytes */
  virtualSize: number;
  /** absolute path of the image file */
  path: string;
  createdAt: string;
  /** for a clone: the source volume it is an overlay on */
  backing: string | null;
  /** the instance the volume is attached to, or null */
  attachedTo: string | null;
  /**
   * made by a copy or an import for the instance of this uuid, not recorded yet: the mark goes once it is, and a
   * daemon that died between the two drops the volume at its next start (services/copies.ts dropUnrecorded)
   */
  madeFor?: string;
}

export interface SnapshotInfo {
  name: string;
  id: string;
  createdAt: string | null;
  vmStateSize: number;
}

/** A volume as shown: the record plus bytes allocated on disk now. */
export interface Volume extends VolumeRecord {
  allocated: number;
}

export interface VolumeDetails extends Volume {
  snapshots: SnapshotInfo[];
  /** the volumes that are clones of this one */
  clones: string[];
}

function isRecord(v: unknown): v is VolumeRecord {
  if (typeof v !== 'object' || v === null) return false;
  const r = v as Record<string, unknown>;
  return typeof r.name === 'string' && (r.format === 'qcow2' || r.format === 'raw') && typeof r.virtualSize === 'number'
    && typeof r.path === 'string' && (r.backing === null || typeof r.backing === 'string')
    && (r.attachedTo === null || typeof r.attachedTo === 'string') && (r.madeFor === undefined || typeof r.madeFor === 'string');
}

/** Refuse an operation on a volume attached to an instance (VOLUME_IN_USE naming it). For the attach work too. */
export function assertNotInUse(vol: VolumeRecord, verb: string): void {
  if (vol.attachedTo !== null) {
    throw new CorralError('VOLUME_IN_USE', `volume "${vol.name}" cannot be ${verb}: it is attached to instance "${vol.attachedTo}"`, {
      name: vol.name, instance: vol.attachedTo,
    });
  }
}

export function parseFormat(format: unknown): ImgFormat {
  if (format === undefined) return 'qcow2';
  if (format !== 'qcow2' && format !== 'raw') throw invalidSpec('format', `"${printable(String(format))}" is not a volume format: use qcow2 or raw`);
  return format;
}

function allocatedBytes(path: string): number {
  try {
    return statSync(path).blocks * 512;
  } catch {
    return 0;
  }
}

/** A volume is at most as big as an image may be (64 TiB): INVALID_SPEC on size otherwise. */
function withinMax(bytes: number): number {
  if (bytes > MAX_IMAGE_SIZE) throw invalidSpec('size', `${formatSizeExact(bytes)} is more than the 64 TiB a volume may have`);
  return bytes;
}

/** qemu-img refusing a size its format or the filesystem cannot hold (ext4 files end at 16 TiB) is the user's size, not a failure. */
async function tooLargeIsInvalid<T>(bytes: number, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    if (isCorralError(e) && /too large|File too large|exceeds|too big/i.test(e.message)) {
      throw invalidSpec('size', `${formatSizeExact(bytes)} is more than the image format or this filesystem can hold (${e.message})`);
    }
    throw e;
  }
}

/** Run a qemu-img step, mapping QEMU's image-lock refusal to VOLUME_IN_USE. */
async function guarded<T>(name: string, verb: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    throw lockErrorToInUse(e, name, verb);
  }
}

export class VolumeStore {
  readonly dir: string;
  private store: RecordDir<VolumeRecord>;

  constructor(dataDir: string) {
    this.dir = dataPaths(dataDir).volumes;
    this.store = new RecordDir(this.dir, RECORD, isRecord, 0o711);
  }

  pathOf(name: string): string {
    return this.store.pathOf(name);
  }

  private read(name: string): VolumeRecord | null {
    return this.store.read(name);
  }

  private view(r: VolumeRecord): Volume {
    return { ...r, allocated: allocatedBytes(r.path) };
  }

  records(): VolumeRecord[] {
    return this.store.list();
  }

  list(): Volume[] {
    return this.records().map((r) => this.view(r));
  }

  /** What crashed work left in the folder (record-dir.ts sweep()): dead makers' staging folders, removal folders. */
  sweep(alive: (pid: number) => boolean): string[] {
    return this.store.sweep(alive);
  }

  record(name: string): VolumeRecord {
    validateName('name', name);
    const r = this.read(name);
    if (!r) throw new CorralError('VOLUME_NOT_FOUND', `volume "${name}" does not exist`, { name });
    return r;
  }

  clonesOf(name: string): string[] {
    return this.records().filter((r) => r.backing === name).map((r) => r.name);
  }

  async get(name: string): Promise<VolumeDetails> {
    const r = this.record(name);
    return { ...this.view(r), snapshots: await this.snapshots(name), clones: this.clonesOf(name) };
  }

  /** ALREADY_EXISTS when a volume of that name exists (for the checks of copies and imports, before they make one). */
  assertFree(name: string): void {
    if (existsSync(this.pathOf(name))) throw new CorralError('ALREADY_EXISTS', `volume "${name}" already exists`, { name, field: 'name' });
  }

  /** Build a volume in a staging folder, then move it into place; on any failure the folder goes. */
  private async make(name: string, format: ImgFormat, backing: string | null, build: (file: string) => Promise<void>, madeFor?: string): Promise<Volume> {
    const staging = this.store.stage(name);
    try {
      const file = join(staging, `disk.${format}`);
      await build(file);
      takeBack(file); // root's, 0600, until an instance that has it attached runs (src/services/volume-access.ts)
      const info = await imgInfo(file, format);
      const record: VolumeRecord = {
        name, pool: DEFAULT_POOL, format, virtualSize: info['virtual-size'], path: join(this.pathOf(name), `disk.${format}`),
        createdAt: new Date().toISOString(), backing, attachedTo: null, ...(madeFor !== undefined ? { madeFor } : {}),
      };
      this.store.writeRecord(staging, record);
      crashPoint('volume.built'); // a staging folder of a dead daemon: swept at the next start
      this.assertFree(name);
      this.store.place(staging, name);
      return this.view(record);
    } catch (e) {
      this.store.discard(staging);
      throw e;
    }
  }

  async create(nameIn: unknown, size: unknown, format?: unknown): Promise<Volume> {
    const name = validateName('name', nameIn);
    const fmt = parseFormat(format);
    const bytes = withinMax(parseSize('size', size));
    this.assertFree(name);
    assertFits(this.dir, bytes, `volume "${name}"`, { thin: fmt === 'qcow2' });
    return this.make(name, fmt, null, (file) => tooLargeIsInvalid(bytes, () => createImage(file, fmt, bytes)));
  }

  /**
   * A new standalone volume (qcow2, or `format` raw) holding the data of image `src` (`qemu-img convert`, flattened):
   * an instance copy's or an imported archive's volume. `untrusted`: `src` is an untrusted image's open descriptor,
   * inspected already (see ConvertOptions). `whole`: the qcow2 file copied as it is instead, its internal snapshots
   * kept (a standalone qcow2, inspected by the caller). The caller checked the space.
   */
  async fromImage(nameIn: unknown, src: string, srcFormat: ImgFormat, opts: { untrusted?: boolean; whole?: boolean; format?: ImgFormat; onPercent?: (pc: number) => void; madeFor?: string } = {}): Promise<Volume> {
    const name = validateName('name', nameIn);
    this.assertFree(name);
    const { whole, madeFor, format = 'qcow2', ...convertOpts } = opts;
    if (whole && (format !== 'qcow2' || srcFormat !== 'qcow2')) throw new CorralError('INTERNAL', `volume "${name}": only a qcow2 file is copied whole`);
    return this.make(name, format, null, async (file) => {
      if (whole) copyFileSync(src, file);
      else await convert(src, srcFormat, file, format, convertOpts);
    }, madeFor);
  }

  /**
   * A qcow2 overlay on the source (backing format given explicitly): a point-in-time copy, so the source must not
   * be written afterwards. Refused while it is attached to an instance (which may write to it at any time) or open
   * for writing in any other process (QEMU's image lock).
   */
  async clone(source: string, nameIn: unknown): Promise<Volume> {
    const src = this.record(source);
    const name = validateName('name', nameIn);
    this.assertFree(name);
    if (src.attachedTo !== null) {
      throw new CorralError('VOLUME_IN_USE', `volume "${src.name}" cannot be cloned: it is attached to instance "${src.attachedTo}", which may write to it, and a clone reads its source, which must then never change; detach it first`, {
        name: src.name, instance: src.attachedTo,
      });
    }
    if (existsSync(src.path)) await guarded(source, 'cloned', () => probeLock(src.path, src.format));
    assertFits(this.dir, src.virtualSize, `clone "${name}" of volume "${src.name}"`);
    return this.make(name, 'qcow2', src.name, (file) => guarded(source, 'cloned', () => createOverlay(file, src.path, src.format, null)));
  }

  /**
   * The checks of a resize to `size`, before anything is done: a size with a unit, whole 512-byte sectors,
   * shrinking only when asked for and never under clones. Returns the record and the new size in bytes.
   */
  planResize(name: string, size: unknown, shrink = false): { record: VolumeRecord; bytes: number } {
    const r = this.record(name);
    const bytes = withinMax(parseSize('size', size));
    if (bytes % 512 !== 0) throw invalidSpec('size', `must be a whole number of 512-byte sectors, got ${formatSizeExact(bytes)}`);
    if (bytes < r.virtualSize) {
      if (!shrink) {
        throw invalidSpec('size', `${formatSizeExact(bytes)} is smaller than the volume (${formatSizeExact(r.virtualSize)}): shrinking loses data, pass shrink (--shrink) to do it anyway`);
      }
      this.assertNoClones(name, 'shrunk');
    }
    return { record: r, bytes };
  }

  /**
   * Grow, or with shrink also cut, with qemu-img: for a volume no running QEMU has open (its image lock refuses
   * it otherwise: VOLUME_IN_USE). Attached to a stopped instance is fine; a running one resizes it live (the disk
   * service, QMP block_resize) and then calls sizeChanged().
   */
  async resize(name: string, size: unknown, opts: { shrink?: boolean } = {}): Promise<Volume> {
    const { record: r, bytes } = this.planResize(name, size, opts.shrink);
    if (bytes > r.virtualSize) assertFits(this.dir, bytes - r.virtualSize, `growing volume "${name}" by ${formatSizeExact(bytes - r.virtualSize)}`, { thin: r.format === 'qcow2' });
    if (bytes !== r.virtualSize) {
      await guarded(name, 'resized', () => tooLargeIsInvalid(bytes, () => imgResize(r.path, r.format, bytes, { shrink: bytes < r.virtualSize })));
    }
    return this.sizeChanged(name);
  }

  /** Read the image's virtual size again (qemu-img info --force-share: also while a QEMU has it open) into the record. */
  async sizeChanged(name: string): Promise<Volume> {
    const r = this.record(name);
    const info = await imgInfo(r.path, r.format);
    const updated: VolumeRecord = { ...r, virtualSize: info['virtual-size'] };
    this.store.writeRecord(this.pathOf(name), updated);
    return this.view(updated);
  }

  /** Refuse an operation that would change a volume's data under its clones (VOLUME_IN_USE naming them). */
  assertNoClones(name: string, verb: string): void {
    const clones = this.clonesOf(name);
    if (clones.length > 0) {
      throw new CorralError('VOLUME_IN_USE', `volume "${name}" cannot be ${verb}: clones ${clones.join(', ')} depend on it (they read its data, which must not change)`, { name, clones });
    }
  }

  async remove(name: string): Promise<void> {
    const r = this.record(name);
    assertNotInUse(r, 'deleted');
    this.assertNoClones(name, 'deleted');
    // A file removed behind Corral's back is open nowhere: its record can go without asking QEMU.
    if (existsSync(r.path)) await guarded(name, 'deleted', () => probeLock(r.path, r.format));
    this.store.remove(name);
  }

  /** The instance a copy or an import made the volume for is recorded: its `madeFor` mark goes. */
  settle(name: string): void {
    const { madeFor, ...rest } = this.record(name);
    if (madeFor !== undefined) this.store.writeRecord(this.pathOf(name), rest);
  }

  /** Set or clear the instance a volume is attached to (for the attach work). */
  setAttached(name: string, instance: string | null): VolumeRecord {
    const r = this.record(name);
    const updated: VolumeRecord = { ...r, attachedTo: instance };
    this.store.writeRecord(this.pathOf(name), updated);
    return updated;
  }

  // --- internal qcow2 snapshots ---

  private qcow2(name: string, verb: string): VolumeRecord {
    const r = this.record(name);
    if (r.format !== 'qcow2') {
      throw new CorralError('INVALID_SPEC', `format: volume "${name}" is raw: raw volumes have no internal snapshots (cannot ${verb}); use a qcow2 volume`, { field: 'format' });
    }
    return r;
  }

  async snapshots(name: string): Promise<SnapshotInfo[]> {
    const r = this.record(name);
    if (r.format !== 'qcow2') return [];
    const info = await imgInfo(r.path, r.format);
    const raw = Array.isArray(info.snapshots) ? (info.snapshots as Array<Record<string, unknown>>) : [];
    return raw.map((s) => ({
      name: String(s.name),
      id: String(s.id),
      createdAt: typeof s['date-sec'] === 'number' ? new Date(s['date-sec'] * 1000).toISOString() : null,
      vmStateSize: typeof s['vm-state-size'] === 'number' ? s['vm-state-size'] : 0,
    }));
  }

  private async findSnapshot(name: string, snap: string): Promise<SnapshotInfo | undefined> {
    return (await this.snapshots(name)).find((s) => s.name === snap);
  }

  async snapshot(name: string, snapIn: unknown): Promise<SnapshotInfo> {
    const r = this.qcow2(name, 'snapshot');
    const snap = validateName('snapshot', snapIn);
    if (await this.findSnapshot(name, snap)) throw new CorralError('ALREADY_EXISTS', `volume "${name}" already has a snapshot "${snap}"`, { name, snapshot: snap, field: 'snapshot' });
    await guarded(name, 'snapshotted', () => snapshotOp(r.path, '-c', snap));
    const made = await this.findSnapshot(name, snap);
    if (!made) throw new CorralError('INTERNAL', `snapshot "${snap}" of volume "${name}" was not found after creating it`);
    return made;
  }

  private async existing(name: string, snap: string, verb: string): Promise<VolumeRecord> {
    const r = this.qcow2(name, verb);
    validateName('snapshot', snap);
    if (!(await this.findSnapshot(name, snap))) throw new CorralError('SNAPSHOT_NOT_FOUND', `volume "${name}" has no snapshot "${snap}"`, { name, snapshot: snap });
    return r;
  }

  /** Revert the volume's data to a snapshot. Refused while attached or while clones read its data. */
  async revert(name: string, snap: string): Promise<void> {
    const r = await this.existing(name, snap, 'revert');
    assertNotInUse(r, 'reverted');
    this.assertNoClones(name, 'reverted');
    await guarded(name, 'reverted', () => snapshotOp(r.path, '-a', snap));
  }

  async deleteSnapshot(name: string, snap: string): Promise<void> {
    const r = await this.existing(name, snap, 'delete a snapshot');
    await guarded(name, 'changed', () => snapshotOp(r.path, '-d', snap));
  }
}
