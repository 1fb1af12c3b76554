/**
 * The qemu-img calls volumes need beyond src/qemu/img.ts: create a blank image, internal snapshots, and a
 * lock probe. argv only, formats always given, paths absolute. Also the one place where QEMU's image-lock
 * failure ('Failed to get "write" lock') becomes VOLUME_IN_USE: every volume operation passes its qemu-img
 * errors through lockErrorToInUse().
 */
import { resolve } from 'node:path';
import { CorralError } from '../core/errors.js';
import { run } from '../host/exec.js';
import { IMG_TIMEOUT_MS, QEMU_IMG, qemuImgErrorLine, type ImgFormat } from '../qemu/img.js';

/** qemu-img's message when another process (a running QEMU) holds the image's lock. */
export const LOCK_RE = /Failed to get (?:shared )?"[a-z ]+" lock/;

/**
 * Turn a qemu-img failure caused by QEMU's image lock into VOLUME_IN_USE naming the volume; anything else
 * is returned unchanged.
 */
export function lockErrorToInUse(e: unknown, volume: string, verb: string): unknown {
  if (!(e instanceof CorralError)) return e;
  const stderr = typeof e.details.stderr === 'string' ? e.details.stderr : '';
  const m = LOCK_RE.exec(stderr) ?? LOCK_RE.exec(e.message);
  if (!m) return e;
  return new CorralError(
    'VOLUME_IN_USE',
    `volume "${volume}" cannot be ${verb}: its image is open in a running QEMU (${m[0]}); stop the VM using it first`,
    { name: volume, reason: 'image locked by a running QEMU' },
  );
}

/** Run qemu-img (the one command runner, 2 min); a failure is QEMU_FAILED carrying qemu-img's own line in details.stderr. */
export async function qemuImg(argv: string[], what: string): Promise<string> {
  const { stdout } = await run(QEMU_IMG, argv, { timeoutMs: IMG_TIMEOUT_MS, what, code: 'QEMU_FAILED', errorLine: qemuImgErrorLine });
  return stdout;
}

/** `qemu-img create -f FMT PATH SIZE` (no preallocation: a raw file is sparse). */
export async function createImage(path: string, format: ImgFormat, sizeBytes: number): Promise<void> {
  await qemuImg(['create', '-q', '-f', format, resolve(path), String(sizeBytes)], 'qemu-img create');
}

/**
 * This one image alone, as a `json:` block spec: the format explicit (`qemu-img snapshot` has no -f) and,
 * for qcow2, `backing: null` so that the backing chain is not opened (a lock held on a clone's source must
 * not be blamed on the clone). The path is JSON-escaped, so no file name can add options.
 */
export function imageSpec(path: string, format: ImgFormat): string {
  const spec: Record<string, unknown> = { driver: format, file: { driver: 'file', filename: resolve(path) } };
  if (format === 'qcow2') spec.backing = null;
  return `json:${JSON.stringify(spec)}`;
}

export type SnapshotOp = '-c' | '-a' | '-d';

/** `qemu-img snapshot -c|-a|-d NAME json:{qcow2 image}`. */
export async function snapshotOp(path: string, op: SnapshotOp, snap: string): Promise<void> {
  await qemuImg(['snapshot', '-q', op, snap, imageSpec(path, 'qcow2')], 'qemu-img snapshot');
}

/**
 * Fail (QEMU_FAILED with the lock message, for lockErrorToInUse) when a process holds the image open:
 * `qemu-img info` without --force-share asks for the shared lock a running QEMU refuses.
 */
export async function probeLock(path: string, format: ImgFormat): Promise<void> {
  await qemuImg(['info', '--output=json', imageSpec(path, format)], 'qemu-img info');
}
