/**
 * Instance archives (corral export / import) and copies (corral copy): what an archive holds and how its manifest
 * is checked, and the spec a copy or an import gets. Pure.
 *
 * An archive is a tar file (core/tar.ts) of, in this order:
 * - `manifest.json`: the format and its version, the instance's name and spec, the base image it was made from (name
 *   and digest, for the record: the disks do not need it), and each file that follows with its size and sha256;
 * - `disks/root.qcow2`: the root disk, flattened (its image's data included, no backing file) and compressed
 *   (`qemu-img convert -c`): the archive stands alone;
 * - `efi-vars.fd`: the UEFI variable store, for an instance that boots UEFI.
 * Nothing else: an import refuses any other member, a member out of order, a size or sha256 not the manifest's.
 */
import { TypeCompiler } from '@sinclair/typebox/compiler';
import { CorralError } from './errors.js';
import { macFor } from './nics.js';
import { validateName } from './names.js';
import { normalizeSpec } from './spec.js';
import { InstanceSpecSchema, type InstanceSpec } from './spec-schema.js';

export const ARCHIVE_FORMAT = 'corral-instance-archive';
export const ARCHIVE_VERSION = 1;
export const MANIFEST_NAME = 'manifest.json';
/** The manifest is small: a spec and a few file lines. A bigger first member is not a Corral manifest. */
export const MAX_MANIFEST_BYTES = 1024 * 1024;

export const ARCHIVE_FILES = { root: 'disks/root.qcow2', 'efi-vars': 'efi-vars.fd' } as const;
export type ArchiveRole = keyof typeof ARCHIVE_FILES;

export interface ArchiveFile {
  role: ArchiveRole;
  /** the tar member's name */
  name: string;
  format: 'qcow2' | 'raw';
  /** bytes of the member (the compressed qcow2 file) */
  size: number;
  sha256: string;
  /** the disk's size as the guest sees it (qcow2 only) */
  virtualSize?: number;
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
  if (raw.version !== ARCHIVE_VERSION) throw invalid('version', `version ${JSON.stringify(raw.version)}; this Corral reads version ${ARCHIVE_VERSION}`);
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
  const files = raw.files.map((f, i) => checkFile(f, i));
  const roles = files.map((f) => f.role);
  if (roles[0] !== 'root') throw invalid('files', 'the root disk comes first');
  if (new Set(roles).size !== roles.length) throw invalid('files', 'a role is listed twice');
  if (roles.includes('efi-vars') !== (spec.firmware === 'uefi')) throw invalid('files', 'the UEFI variable store comes with a UEFI instance, and only with one');
  return {
    format: ARCHIVE_FORMAT, version: ARCHIVE_VERSION, createdAt: raw.createdAt,
    instance: { name: inst.name as string, spec }, image: { name: image.name, kind: image.kind, digest: image.digest },
    consistency: raw.consistency, files,
  };
}

function checkFile(f: unknown, i: number): ArchiveFile {
  const field = `files[${i}]`;
  if (!isObject(f)) throw invalid(field, 'an object is required');
  if (f.role !== 'root' && f.role !== 'efi-vars') throw invalid(`${field}.role`, 'root or efi-vars');
  const role = f.role;
  if (f.name !== ARCHIVE_FILES[role]) throw invalid(`${field}.name`, `the ${role} file is "${ARCHIVE_FILES[role]}"`);
  const format = role === 'root' ? 'qcow2' : 'raw';
  if (f.format !== format) throw invalid(`${field}.format`, `the ${role} file is ${format}`);
  if (!Number.isSafeInteger(f.size) || (f.size as number) < 0) throw invalid(`${field}.size`, 'a byte count is required');
  if (typeof f.sha256 !== 'string' || !SHA256_RE.test(f.sha256)) throw invalid(`${field}.sha256`, '64 lower-case hex digits are required');
  const out: ArchiveFile = { role, name: ARCHIVE_FILES[role], format, size: f.size as number, sha256: f.sha256 };
  if (role === 'root') {
    if (!Number.isSafeInteger(f.virtualSize) || (f.virtualSize as number) <= 0) throw invalid(`${field}.virtualSize`, 'the disk\'s size is required');
    out.virtualSize = f.virtualSize as number;
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
 * Why an instance cannot be copied or exported (null when it can): its root disk on the shared pool (the copy would
 * be a second instance on the cluster's disk), or volumes attached (they are the volume store's; copy them with
 * `corral volume clone` and attach the clone).
 */
export function notCopyable(name: string, spec: InstanceSpec): CorralError | null {
  if (spec.rootPool === 'shared') {
    return new CorralError('INVALID_STATE', `instance "${name}" has its root disk on the shared pool: copies and archives are of local root disks only`, { name, field: 'pool' });
  }
  if (spec.disks.length > 0) {
    const vols = spec.disks.map((d) => d.volume);
    return new CorralError('INVALID_STATE', `instance "${name}" has volumes attached (${vols.join(', ')}): detach them first (copy a volume with corral volume clone, then attach the clone to the copy)`, { name, volumes: vols });
  }
  return null;
}

/**
 * The spec of a copy (or an imported instance) given its new uuid: the same machine, but each NIC with a new MAC
 * (the one a NIC of that id of a new instance gets; `taken`: every MAC on the host), no fixed address (the copy's
 * first start reserves one on its bridge network), no port forwards (the host's ports are the original's), and no
 * host devices (a PCI device passes through to one guest; attach another to the copy).
 */
export function copySpec(spec: InstanceSpec, uuid: string, taken: Pick<ReadonlySet<string>, 'has'>): InstanceSpec {
  const macs = new Set<string>();
  const nics = spec.nics.map((n) => {
    const mac = macFor(uuid, Number(n.id.replace(/^net/, '')) || 0, { has: (m) => taken.has(m) || macs.has(m) });
    macs.add(mac);
    const { address: _address, forwards: _forwards, ...rest } = n;
    return { ...rest, mac };
  });
  return { ...structuredClone(spec), nics, hostdevs: [], disks: [] };
}
