/**
 * Instance archives (corral export / import) and copies (corral copy): what an archive holds and how its manifest
 * is checked, and the spec a copy or an import gets. Pure.
 *
 * An archive is a tar file (core/tar.ts) of, in this order:
 * - `manifest.json`: the format and its version, the instance's name and spec, the base image it was made from (name
 *   and digest, for the record: the disks do not need it), and each file that follows with its size and sha256;
 * - `disks/root.qcow2`: the root disk, flattened (its image's data included, no backing file) and compressed
 *   (`qemu-img convert -c`): the archive stands alone;
 * - `efi-vars.fd`: the UEFI variable store, for an instance that boots UEFI;
 * - `disks/volumes/<volume>.qcow2`: each attached volume, in the spec's disk order, flattened and compressed like
 *   the root disk; its entry names the volume and its bus (they must be the spec's disks, in order).
 * A raw volume travels the same way (a flattened compressed qcow2 member); its entry's `format` is `raw` (a disk's
 * entry names the format of the disk on the host, its member is a qcow2 image either way), and an import makes it a
 * raw volume again.
 * With snapshots (`corral export --snapshots`, a stopped instance), the disks are kept whole instead, their
 * internal snapshots in them (`qemu-img convert` would drop them), each gzip-compressed (`compression: "gzip"`, the
 * member named `.qcow2.gz`, `unpackedSize` the file's bytes): the root disk is the instance's overlay itself, its
 * backing file reference removed (it reads right only over the image of the manifest's digest, which an import
 * requires), each qcow2 volume its file as it is (a raw volume holds no snapshots: it goes as above); the manifest's
 * `snapshots` holds Corral's records. The size and sha256 of a member are of its bytes in the archive.
 * Nothing else: an import refuses any other member, a member out of order, a size or sha256 not the manifest's.
 * Version 2 added raw volumes and compressed whole disks; version 1 archives (neither) still import.
 */
import { TypeCompiler } from '@sinclair/typebox/compiler';
import { CorralError } from './errors.js';
import { macFor } from './nics.js';
import { validateName } from './names.js';
import { ROOT_DISK_KEY, validateSnapshotName, type SnapshotRecord } from './snapshots.js';
import { normalizeSpec } from './spec.js';
import { DISK_BUSES, InstanceSpecSchema, type DiskBus, type InstanceDisk, type InstanceSpec } from './spec-schema.js';
import { isVhostUser } from './disks.js';

export const ARCHIVE_FORMAT = 'corral-instance-archive';
export const ARCHIVE_VERSION = 2;
/** The versions this Corral imports (1: no raw volumes, no compressed whole disks). */
export const ARCHIVE_VERSIONS_READ: readonly number[] = [1, 2];
export const MANIFEST_NAME = 'manifest.json';
/** The manifest is small: a spec and a few file lines. A bigger first member is not a Corral manifest. */
export const MAX_MANIFEST_BYTES = 1024 * 1024;

export const ARCHIVE_FILES = { root: 'disks/root.qcow2', 'efi-vars': 'efi-vars.fd' } as const;
export type ArchiveRole = keyof typeof ARCHIVE_FILES | 'volume';
/** How a whole disk is compressed in an archive with snapshots (its member's name ends with `.gz`). */
export type ArchiveCompression = 'gzip';

/** The tar member of attached volume `volume` (`gz`: gzip-compressed). */
export function volumeMember(volume: string, gz = false): string {
  return `disks/volumes/${volume}.qcow2${gz ? '.gz' : ''}`;
}

/** The tar member of a file of the archive (`gz`: gzip-compressed, a disk's only). */
export function memberName(f: Pick<ArchiveFile, 'role' | 'volume'>, gz = false): string {
  if (f.role === 'volume') return volumeMember(f.volume!, gz);
  return `${ARCHIVE_FILES[f.role]}${gz ? '.gz' : ''}`;
}

export interface ArchiveFile {
  role: ArchiveRole;
  /** the tar member's name */
  name: string;
  /** the disk's format on the host: the root disk's qcow2, a volume's qcow2 or raw; the UEFI store's raw */
  format: 'qcow2' | 'raw';
  /** bytes of the member as the archive holds it (the compressed qcow2 file); the sha256 is of these bytes */
  size: number;
  sha256: string;
  /** a whole disk of an archive with snapshots, gzip-compressed: `unpackedSize` is the disk file's bytes */
  compression?: ArchiveCompression;
  unpackedSize?: number;
  /** the disk's size as the guest sees it (qcow2 only) */
  virtualSize?: number;
  /** role volume: the volume's name and the bus it is attached on (the spec's disk) */
  volume?: string;
  bus?: DiskBus;
}

export interface ArchiveManifest {
  format: typeof ARCHIVE_FORMAT;
  version: number;
  createdAt: string;
  instance: { name: string; spec: InstanceSpec };
  /** the image the instance was made from: the spec names it, and its kernel boots a kernel-kind image */
  image: { name: string; kind: 'kernel' | 'disk'; digest: string };
  /** how the disks were read: the instance was stopped, or a point-in-time backup of the running guest */
  consistency: 'stopped' | 'backup';
  files: ArchiveFile[];
  /**
   * exported with --snapshots: the instance's snapshot records (ready ones), its disks kept whole with their
   * internal snapshots, the root disk a layer over the image (see above); absent otherwise
   */
  snapshots?: SnapshotRecord[];
}

const specChecker = TypeCompiler.Compile(InstanceSpecSchema);
const SHA256_RE = /^[0-9a-f]{64}$/;

function invalid(field: string, message: string): CorralError {
  return new CorralError('INVALID_ARCHIVE', `the archive's manifest is not valid: ${field}: ${message}`, { field });
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Check a parsed manifest: every field Corral reads, the files in their one order, the spec against its schema. */
export function validateManifest(raw: unknown): ArchiveManifest {
  if (!isObject(raw)) throw invalid('manifest', 'not a JSON object');
  if (raw.format !== ARCHIVE_FORMAT) throw invalid('format', `not a Corral instance archive (format ${JSON.stringify(raw.format)})`);
  if (typeof raw.version !== 'number' || !ARCHIVE_VERSIONS_READ.includes(raw.version)) {
    throw invalid('version', `version ${JSON.stringify(raw.version)}; this Corral reads versions ${ARCHIVE_VERSIONS_READ.join(' and ')}`);
  }
  const version = raw.version;
  if (typeof raw.createdAt !== 'string') throw invalid('createdAt', 'a date is required');
  const inst = raw.instance;
  if (!isObject(inst)) throw invalid('instance', 'an object with name and spec is required');
  try {
    validateName('instance.name', inst.name);
  } catch (e) {
    throw invalid('instance.name', (e as Error).message);
  }
  if (!isObject(inst.spec)) throw invalid('instance.spec', 'an object is required');
  const spec = normalizeSpec(inst.spec as Parameters<typeof normalizeSpec>[0]);
  if (!specChecker.Check(spec)) {
    const first = specChecker.Errors(spec).First();
    throw invalid(`instance.spec${(first?.path ?? '').replace(/\//g, '.')}`, first?.message ?? 'does not match the spec schema');
  }
  const image = raw.image;
  if (!isObject(image) || typeof image.name !== 'string' || (image.kind !== 'kernel' && image.kind !== 'disk') || typeof image.digest !== 'string') {
    throw invalid('image', 'name, kind and digest are required');
  }
  if (image.name !== spec.image) throw invalid('image.name', `"${image.name}" is not the spec's image "${spec.image}"`);
  if (raw.consistency !== 'stopped' && raw.consistency !== 'backup') throw invalid('consistency', 'stopped or backup');
  if (!Array.isArray(raw.files)) throw invalid('files', 'a list is required');
  const files = raw.files.map((f, i) => checkFile(f, i, version));
  const roles = files.filter((f) => f.role !== 'volume').map((f) => f.role);
  if (files[0]?.role !== 'root') throw invalid('files', 'the root disk comes first');
  if (new Set(roles).size !== roles.length) throw invalid('files', 'a role is listed twice');
  const vols = files.filter((f) => f.role === 'volume');
  if (files.slice(files.length - vols.length).some((f) => f.role !== 'volume')) throw invalid('files', 'the volumes come last');
  const want = spec.disks.map((d) => `${d.volume}:${d.bus}`).join(',');
  if (vols.map((f) => `${f.volume}:${f.bus}`).join(',') !== want) throw invalid('files', `the volumes are the spec's disks, in order (${want || 'none'})`);
  if (roles.includes('efi-vars') !== (spec.firmware === 'uefi')) throw invalid('files', 'the UEFI variable store comes with a UEFI instance, and only with one');
  const out: ArchiveManifest = {
    format: ARCHIVE_FORMAT, version, createdAt: raw.createdAt,
    instance: { name: inst.name as string, spec }, image: { name: image.name, kind: image.kind, digest: image.digest },
    consistency: raw.consistency, files,
  };
  if (raw.snapshots !== undefined) {
    if (raw.consistency !== 'stopped') throw invalid('snapshots', 'snapshots come with the disks of a stopped instance');
    // a raw volume holds no snapshot: the records name the root disk and qcow2 volumes only
    out.snapshots = checkSnapshots(raw.snapshots, [ROOT_DISK_KEY, ...vols.filter((f) => f.format === 'qcow2').map((f) => f.volume!)]);
  }
  return out;
}

const isCount = (v: unknown): boolean => Number.isSafeInteger(v) && (v as number) >= 0;

/** The snapshot records of an archive: each whole and ready, its disks among the instance's (`disks`). */
function checkSnapshots(raw: unknown, disks: readonly string[]): SnapshotRecord[] {
  if (!Array.isArray(raw)) throw invalid('snapshots', 'a list is required');
  const names = new Set<string>();
  return raw.map((r, i) => {
    const field = `snapshots[${i}]`;
    if (!isObject(r)) throw invalid(field, 'an object is required');
    try {
      validateSnapshotName(r.name);
    } catch (e) {
      throw invalid(`${field}.name`, (e as Error).message);
    }
    if (names.has(r.name as string)) throw invalid(`${field}.name`, `snapshot "${r.name as string}" is listed twice`);
    names.add(r.name as string);
    if (r.phase !== 'ready') throw invalid(`${field}.phase`, 'only ready snapshots are archived');
    if (typeof r.createdAt !== 'string' || typeof r.memory !== 'boolean' || typeof r.frozen !== 'boolean') throw invalid(field, 'createdAt, memory and frozen are required');
    if (r.instanceState !== 'running' && r.instanceState !== 'paused' && r.instanceState !== 'stopped') throw invalid(`${field}.instanceState`, 'running, paused or stopped');
    if (!isCount(r.vmStateSize) || !isCount(r.cpus) || !isCount(r.memoryBytes)) throw invalid(field, 'vmStateSize, cpus and memoryBytes are counts');
    if (!Array.isArray(r.disks) || r.disks.length === 0) throw invalid(`${field}.disks`, 'a list of disks is required');
    const ds = r.disks.map((d, j) => {
      if (!isObject(d) || typeof d.disk !== 'string' || !disks.includes(d.disk)) throw invalid(`${field}.disks[${j}]`, `a disk of the instance (${disks.join(', ')})`);
      if (!isCount(d.dateSec) || !isCount(d.dateNsec) || !isCount(d.vmStateSize)) throw invalid(`${field}.disks[${j}]`, 'dateSec, dateNsec and vmStateSize are counts');
      return { disk: d.disk, dateSec: d.dateSec as number, dateNsec: d.dateNsec as number, vmStateSize: d.vmStateSize as number };
    });
    return {
      name: r.name as string, createdAt: r.createdAt, phase: 'ready', memory: r.memory, frozen: r.frozen, instanceState: r.instanceState,
      vmStateSize: r.vmStateSize as number, disks: ds, cpus: r.cpus as number, memoryBytes: r.memoryBytes as number,
    };
  });
}

function checkFile(f: unknown, i: number, version: number): ArchiveFile {
  const field = `files[${i}]`;
  if (!isObject(f)) throw invalid(field, 'an object is required');
  if (f.role !== 'root' && f.role !== 'efi-vars' && f.role !== 'volume') throw invalid(`${field}.role`, 'root, efi-vars or volume');
  const role = f.role;
  if (role === 'volume') {
    try {
      validateName('volume', f.volume);
    } catch (e) {
      throw invalid(`${field}.volume`, (e as Error).message);
    }
    if (typeof f.bus !== 'string' || !(DISK_BUSES as readonly string[]).includes(f.bus)) throw invalid(`${field}.bus`, `one of ${DISK_BUSES.join(', ')}`);
  }
  // version 2: a volume may be raw, a disk gzip-compressed
  const formats = role === 'efi-vars' ? ['raw'] : role === 'volume' && version >= 2 ? ['qcow2', 'raw'] : ['qcow2'];
  if (!formats.includes(f.format as string)) throw invalid(`${field}.format`, `the ${role} file is ${formats.join(' or ')}`);
  const format = f.format as 'qcow2' | 'raw';
  if (f.compression !== undefined && (version < 2 || role === 'efi-vars' || f.compression !== 'gzip')) throw invalid(`${field}.compression`, 'only a disk of a version 2 archive is compressed, with gzip');
  const gz = f.compression === 'gzip';
  const name = memberName({ role, volume: f.volume as string }, gz);
  if (f.name !== name) throw invalid(`${field}.name`, `the ${role} file is "${name}"`);
  if (!isCount(f.size)) throw invalid(`${field}.size`, 'a byte count is required');
  if (typeof f.sha256 !== 'string' || !SHA256_RE.test(f.sha256)) throw invalid(`${field}.sha256`, '64 lower-case hex digits are required');
  const out: ArchiveFile = { role, name, format, size: f.size as number, sha256: f.sha256 };
  if (role !== 'efi-vars') {
    if (!Number.isSafeInteger(f.virtualSize) || (f.virtualSize as number) <= 0) throw invalid(`${field}.virtualSize`, 'the disk\'s size is required');
    out.virtualSize = f.virtualSize as number;
  }
  if (gz) {
    if (!isCount(f.unpackedSize)) throw invalid(`${field}.unpackedSize`, 'the byte count of the compressed disk file is required');
    out.compression = 'gzip';
    out.unpackedSize = f.unpackedSize as number;
  }
  if (role === 'volume') {
    out.volume = f.volume as string;
    out.bus = f.bus as DiskBus;
  }
  return out;
}

/** The manifest as its member's bytes. */
export function encodeManifest(m: ArchiveManifest): Buffer {
  return Buffer.from(`${JSON.stringify(m, null, 2)}\n`, 'utf8');
}

/** Parse and check the manifest member's bytes. */
export function decodeManifest(bytes: Buffer): ArchiveManifest {
  let raw: unknown;
  try {
    raw = JSON.parse(bytes.toString('utf8'));
  } catch (e) {
    throw invalid('manifest', `not JSON: ${(e as Error).message}`);
  }
  return validateManifest(raw);
}

/**
 * Why an instance cannot be copied or exported (null when it can; `exporting`: for an archive): a copy of a root disk
 * on the shared pool (the copy's root would go to the shared pool too, under a name of its own that the cluster's
 * placement and HA record: a copy makes local disks only, so it is refused; an archive only reads the disk, and an
 * import makes a local root disk of it: importedSpec), or volumes on a vhost-user bus (their image is open in a
 * storage daemon, not in QEMU, which cannot back it up at the instant the other disks are read).
 */
export function notCopyable(name: string, spec: InstanceSpec, exporting = false): CorralError | null {
  if (spec.rootPool === 'shared' && !exporting) {
    return new CorralError('INVALID_STATE', `instance "${name}" has its root disk on the shared pool: a copy is made of local root disks only (export it and import the archive: that makes a local one)`, { name, field: 'pool' });
  }
  const vhost = spec.disks.filter((d) => isVhostUser(d.bus)).map((d) => d.volume);
  if (vhost.length > 0) {
    return new CorralError('INVALID_STATE', `instance "${name}" has volumes on a vhost-user bus (${vhost.join(', ')}): their image is open in a storage daemon, which copies and archives cannot read; detach them first`, { name, volumes: vhost });
  }
  return null;
}

/**
 * Why an instance's disks cannot be taken whole with their snapshots (`what`: "an archive", "a copy"; null when
 * they can): it must be stopped (a backup of a running guest holds no snapshots), and no clone may be attached (a
 * clone's file reads its source volume, which the copy would not have).
 */
export function notWhole(name: string, state: string, clones: readonly string[], what: string, without: string): CorralError | null {
  if (state !== 'stopped' && state !== 'crashed') {
    return new CorralError('INVALID_STATE', `instance "${name}" is ${state}: ${what} with snapshots is made of a stopped instance's disks (a backup of a running one holds no snapshots); stop it first`, { state });
  }
  if (clones.length > 0) {
    return new CorralError('INVALID_STATE', `instance "${name}" has clones attached (${clones.join(', ')}): ${what} with snapshots keeps each volume's file whole, and a clone's reads its source; ${without} without --snapshots`, { name, volumes: [...clones] });
  }
  return null;
}

/** A copy's snapshot records: the same snapshots, each volume's disk named after the copy's volume (copiedVolumeName). */
export function copiedSnapshots(records: readonly SnapshotRecord[], copy: string): SnapshotRecord[] {
  return records.map((r) => ({ ...structuredClone(r), disks: r.disks.map((d) => ({ ...d, disk: d.disk === ROOT_DISK_KEY ? d.disk : copiedVolumeName(copy, d.disk) })) }));
}

/** The name of a copy's volume: the copy's name and the source volume's (copies of volumes are new volumes). */
export function copiedVolumeName(copy: string, volume: string): string {
  return validateName('name', `${copy}-${volume}`);
}

/**
 * The spec of a copy (or an imported instance) given its new uuid: the same machine, but each NIC with a new MAC
 * (the one a NIC of that id of a new instance gets; `taken`: every MAC on the host), no fixed address (the copy's
 * first start reserves one on its bridge network), no port forwards (the host's ports are the original's), and no
 * host devices (a PCI device passes through to one guest; attach another to the copy), and `disks` for volumes (the
 * copy's own volumes, made by the caller; none by default).
 */
export function copySpec(spec: InstanceSpec, uuid: string, taken: Pick<ReadonlySet<string>, 'has'>, disks: InstanceDisk[] = []): InstanceSpec {
  const macs = new Set<string>();
  const nics = spec.nics.map((n) => {
    const mac = macFor(uuid, Number(n.id.replace(/^net/, '')) || 0, { has: (m) => taken.has(m) || macs.has(m) });
    macs.add(mac);
    const { address: _address, forwards: _forwards, ...rest } = n;
    return { ...rest, mac };
  });
  return { ...structuredClone(spec), nics, hostdevs: [], disks: structuredClone(disks) };
}

/**
 * The spec of an imported instance (given its new uuid): copySpec with the archive's own volumes, and its root disk
 * local (an import writes it in the instance's folder), so neither on the shared pool nor HA, whatever the exported
 * instance was.
 */
export function importedSpec(spec: InstanceSpec, uuid: string, taken: Pick<ReadonlySet<string>, 'has'>): InstanceSpec {
  const { rootPool: _pool, ha: _ha, ...local } = copySpec(spec, uuid, taken, spec.disks);
  return local;
}
