/**
 * Local disks in a live migration (libvirt's copy-storage migration), the pure part: which disks move (a root disk
 * on the host's local pool, every attached volume but vhost-user ones, which are blockers), how each is mirrored
 * (the root overlay `sync: top` onto the same base image on the destination, a volume `sync: full`), the QMP
 * arguments of both sides (the destination's NBD server and exports, the source's NBD client nodes and
 * blockdev-mirror jobs), the figures read back from query-jobs, and the checks made before anything moves (the
 * destination's volume names, its copy of the base image).
 *
 * Every NBD call takes an optional `tls-creds` object id, so that TLS on the NBD connection is one argument.
 */
import { createHash } from 'node:crypto';
import { CorralError } from './errors.js';
import { ROOT_DISK_ID, blockNodeId } from './device-ids.js';
import { isVhostUser, volumeIds } from './disks.js';
import type { InstanceSpec } from './spec.js';

/** A disk that moves with the instance, as its source host has it. */
export interface MovingDisk {
  /** the guest device id (disk0, vol-NAME) */
  id: string;
  /** its format node, the same name on both sides (the destination starts from the same launch plan) */
  node: string;
  role: 'root' | 'volume';
  /** the volume's name (role volume) */
  volume?: string;
  format: 'qcow2' | 'raw';
  /** bytes: the destination's new disk is made this size (a mirror needs both the same size) */
  virtualSize: number;
  /** top: only what the root overlay holds over its base image (the destination has the same base); full: all */
  sync: 'top' | 'full';
}

/** An image as two hosts compare it: the name and a digest of its files' contents. */
export interface ImageIdentity {
  name: string;
  kind: 'kernel' | 'disk';
  format: 'qcow2' | 'raw';
  /** sha256 over each file's role and sha256 (imageDigest) */
  digest: string;
  /** the files (disk, kernel, initrd) with their sizes and sha256, in that order */
  files: Array<{ role: ImageFileRole; size: number; sha256: string }>;
}

export type ImageFileRole = 'disk' | 'kernel' | 'initrd';
export const IMAGE_FILE_ROLES: readonly ImageFileRole[] = ['disk', 'kernel', 'initrd'];

/**
 * What the source says of an instance's local disks. `image`: the root overlay's base (null: no local root), with
 * what a destination that lacks it writes in its record (`imageRecord`).
 */
export interface DiskFacts {
  disks: MovingDisk[];
  image: ImageIdentity | null;
  imageRecord: { cmdline?: string; createdAt: string; source: string } | null;
}

/** The disks of a spec that are files of their host: a local root overlay, and the attached volumes (in order). */
export function movingDisks(spec: Pick<InstanceSpec, 'rootPool' | 'disks'>): Array<Pick<MovingDisk, 'id' | 'node' | 'role' | 'volume' | 'sync'>> {
  const out: Array<Pick<MovingDisk, 'id' | 'node' | 'role' | 'volume' | 'sync'>> = [];
  if (spec.rootPool !== 'shared') out.push({ id: ROOT_DISK_ID, node: blockNodeId({ id: ROOT_DISK_ID }), role: 'root', sync: 'top' });
  for (const d of spec.disks ?? []) {
    if (isVhostUser(d.bus)) continue; // a blocker (core/migration.ts)
    const ids = volumeIds(d.volume);
    out.push({ id: ids.id, node: ids.node, role: 'volume', volume: d.volume, sync: 'full' });
  }
  return out;
}

/** The names QEMU gets for disk number `i` of a migration: node names are at most 31 characters. */
export function mirrorIds(i: number): { job: string; target: string; exportId: string } {
  return { job: `mig-job${i}`, target: `mig-nbd${i}`, exportId: `mig-exp${i}` };
}

/** The name a disk is exported under on the destination's NBD server: its node name. */
export function exportName(d: Pick<MovingDisk, 'node'>): string {
  return d.node;
}

/** TLS on an NBD connection: the migration's tls-creds-x509 object (migration-tls.ts), and on the server the
 * authz object that lets in only that migration's source, on the client the name the server's certificate carries. */
export interface NbdTls { creds: string; authz?: string | null; hostname?: string | null }

const tls = (t: NbdTls | undefined, side: 'server' | 'client'): Record<string, string> => {
  if (!t) return {};
  const out: Record<string, string> = { 'tls-creds': t.creds };
  if (side === 'server' && t.authz) out['tls-authz'] = t.authz;
  if (side === 'client' && t.hostname) out['tls-hostname'] = t.hostname;
  return out;
};

/** nbd-server-start on the destination (its address, a free port); SocketAddressLegacy, as QEMU 7.2 takes it. */
export function nbdServerStartArgs(host: string, port: number, t?: NbdTls): Record<string, unknown> {
  return { addr: { type: 'inet', data: { host, port: String(port) } }, ...tls(t, 'server') };
}

/** block-export-add of disk `i`: its format node, writable, for the source's mirror to write into. */
export function blockExportArgs(d: Pick<MovingDisk, 'node'>, i: number): Record<string, unknown> {
  return { type: 'nbd', id: mirrorIds(i).exportId, 'node-name': d.node, name: exportName(d), writable: true };
}

/** blockdev-add on the source: an NBD client node to disk `i`'s export on the destination. */
export function nbdClientArgs(d: Pick<MovingDisk, 'node'>, i: number, host: string, port: number, t?: NbdTls): Record<string, unknown> {
  return { driver: 'nbd', 'node-name': mirrorIds(i).target, server: { type: 'inet', host, port: String(port) }, export: exportName(d), ...tls(t, 'client') };
}

/**
 * blockdev-mirror of disk `i` into its NBD node. `speed`: bytes per second (0: no cap; a migration's --bandwidth caps
 * its mirrors too, as libvirt does). The job is not dismissed on its own: its outcome is read from query-jobs.
 */
export function blockdevMirrorArgs(d: Pick<MovingDisk, 'node' | 'sync'>, i: number, speed: number | null): Record<string, unknown> {
  const ids = mirrorIds(i);
  return { 'job-id': ids.job, device: d.node, target: ids.target, sync: d.sync, speed: speed ?? 0, 'auto-dismiss': false };
}

/** One disk's mirror as the progress shows it. */
export interface DiskMirrorFigures {
  disk: string;
  volume: string | null;
  /** QEMU's job status: created, running, ready, standby, concluded ... (none: no such job) */
  status: string;
  doneBytes: number;
  totalBytes: number;
  ready: boolean;
  error: string | null;
}

/** All the mirrors of a migration: the sums, and where they stand. */
export interface MirrorFigures {
  /** copying until every mirror is ready; failed: one ended with an error; cancelled: the migration was cancelled */
  status: 'copying' | 'ready' | 'failed' | 'cancelled' | 'none';
  doneBytes: number;
  totalBytes: number;
  disks: DiskMirrorFigures[];
  error: string | null;
}

/**
 * The figures of a migration's mirrors from query-jobs while they copy (disks in plan order): a job missing,
 * ended (concluded, with an error or not: nothing asked it to end) or failing is `failed`; `cancelled` when the
 * migration was cancelled.
 */
export function mirrorFigures(disks: ReadonlyArray<Pick<MovingDisk, 'id' | 'volume'>>, jobs: readonly JobLike[], cancelled = false): MirrorFigures {
  const each: DiskMirrorFigures[] = disks.map((d, i) => {
    const j = jobs.find((x) => x.id === mirrorIds(i).job);
    // a paused VM (or a ready job with nothing to do) shows `standby`: ready all the same
    const ready = j !== undefined && (j.status === 'ready' || j.status === 'standby');
    return {
      disk: d.id, volume: d.volume ?? null, status: j?.status ?? 'none', doneBytes: j?.['current-progress'] ?? 0, totalBytes: j?.['total-progress'] ?? 0,
      ready, error: j?.error ?? null,
    };
  });
  const failed = each.find((d) => d.error !== null || ['none', 'aborting', 'concluded', 'null'].includes(d.status));
  const sum = (k: 'doneBytes' | 'totalBytes'): number => each.reduce((n, d) => n + d[k], 0);
  const status: MirrorFigures['status'] = disks.length === 0 ? 'none' : cancelled ? 'cancelled' : failed ? 'failed' : each.every((d) => d.ready) ? 'ready' : 'copying';
  const error = status === 'failed' && failed ? `disk ${failed.disk}: ${failed.error ?? (failed.status === 'none' ? 'its mirror job is gone' : `its mirror ended (${failed.status}) before it was asked to`)}` : null;
  return { status, doneBytes: sum('doneBytes'), totalBytes: sum('totalBytes'), disks: each, error };
}

/** A job as query-jobs lists it (vm/driver.ts JobInfo). */
export interface JobLike { id: string; status: string; 'current-progress': number; 'total-progress': number; error?: string }

/**
 * Where the ending of `count` mirrors stands (after block-job-cancel): done once every job is concluded (or gone:
 * dismissed already); `errors` names the disks whose job concluded with an error (a failed completion, or the
 * forced cancel's "Operation canceled").
 */
export function mirrorsEnded(disks: ReadonlyArray<Pick<MovingDisk, 'id'>>, jobs: readonly JobLike[]): { done: boolean; errors: string[] } {
  let done = true;
  const errors: string[] = [];
  disks.forEach((d, i) => {
    const j = jobs.find((x) => x.id === mirrorIds(i).job);
    if (j === undefined) return;
    if (j.status !== 'concluded' && j.status !== 'null') done = false;
    else if (j.error !== undefined) errors.push(`disk ${d.id}: ${j.error}`);
  });
  return { done, errors };
}

/** sha256 of an image as a whole: over each file's role and sha256, in IMAGE_FILE_ROLES order. */
export function imageDigest(files: ReadonlyArray<{ role: ImageFileRole; sha256: string }>): string {
  const h = createHash('sha256');
  for (const role of IMAGE_FILE_ROLES) {
    const f = files.find((x) => x.role === role);
    if (f) h.update(`${role}:${f.sha256}\n`);
  }
  return h.digest('hex');
}

/**
 * What the destination does about the root overlay's base image: it has the same (the name and digest match):
 * `same`; it has none of that name: `transfer`; it has another image of that name: NOT_MIGRATABLE naming it.
 */
export function imagePlan(host: string, want: Pick<ImageIdentity, 'name' | 'digest'>, have: Pick<ImageIdentity, 'digest'> | null): 'same' | 'transfer' {
  if (have === null) return 'transfer';
  if (have.digest === want.digest) return 'same';
  throw new CorralError('NOT_MIGRATABLE', `host ${host} has another image named "${want.name}" (its content differs from the source's: digest ${have.digest.slice(0, 12)} vs ${want.digest.slice(0, 12)}): the root disk's overlay needs the same base image there; give one of them another name`, { image: want.name, host });
}

/** The moving volumes whose names the destination has already (NOT_MIGRATABLE naming them, before anything moves). */
export function assertVolumesFree(host: string, disks: ReadonlyArray<Pick<MovingDisk, 'volume'>>, taken: (name: string) => boolean): void {
  const clash = disks.map((d) => d.volume).filter((v): v is string => v !== undefined && taken(v));
  if (clash.length > 0) {
    throw new CorralError('NOT_MIGRATABLE', `host ${host} already has ${clash.length === 1 ? 'a volume' : 'volumes'} named ${clash.map((v) => `"${v}"`).join(', ')}: the instance's volumes move with it under their names (delete or rename that one first, or choose another host)`, { volumes: clash, host });
  }
}

/**
 * The disks an incoming request names, checked against the spec (the same disks, in the same order, with a size
 * and format each): INVALID_SPEC otherwise. Nothing of the destination is trusted from the request but sizes.
 */
export function checkIncomingDisks(spec: Pick<InstanceSpec, 'rootPool' | 'disks'>, disks: unknown): MovingDisk[] {
  const want = movingDisks(spec);
  const bad = (why: string): CorralError => new CorralError('INVALID_SPEC', `disks: ${why}`, { field: 'disks' });
  if (!Array.isArray(disks)) {
    if (disks === undefined && want.length === 0) return [];
    throw bad(`the instance has ${want.length} local disk${want.length === 1 ? '' : 's'} to move (${want.map((w) => w.id).join(', ')}): each with its size and format`);
  }
  if (disks.length !== want.length) throw bad(`${disks.length} given, the instance has ${want.length} local disks (${want.map((w) => w.id).join(', ') || 'none'})`);
  return want.map((w, i) => {
    const d = disks[i] as Record<string, unknown> | null;
    if (typeof d !== 'object' || d === null || d.id !== w.id) throw bad(`disk ${i}: expected ${w.id}`);
    if (d.format !== 'qcow2' && d.format !== 'raw') throw bad(`disk ${w.id}: format must be qcow2 or raw`);
    if (w.role === 'root' && d.format !== 'qcow2') throw bad('disk0: the root disk is a qcow2 overlay');
    if (typeof d.virtualSize !== 'number' || !Number.isSafeInteger(d.virtualSize) || d.virtualSize <= 0 || d.virtualSize % 512 !== 0) throw bad(`disk ${w.id}: virtualSize must be whole 512-byte sectors`);
    return { ...w, format: d.format, virtualSize: d.virtualSize };
  });
}
