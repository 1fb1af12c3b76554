/**
 * Disk space admission: a disk that could not be written to its full size is refused before it is made, not
 * discovered when a guest's writes fail. Thin images (qcow2 volumes, overlays) may be promised more than is free
 * by a ratio (CORRAL_DISK_RATIO, default 1: no promise beyond what is free now). Part of what is free is kept
 * for the daemon's own records and logs: 5% of the filesystem, at most 1 GiB.
 */
import { existsSync, statfsSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { CorralError } from '../core/errors.js';
import { formatSize } from '../core/units.js';

export interface Space {
  free: number;
  reserve: number;
}

/** The space of the filesystem `dir` is (or will be, when made) on: its nearest existing folder's. */
export function spaceOf(dir: string): Space {
  let at = resolve(dir);
  while (!existsSync(at) && dirname(at) !== at) at = dirname(at);
  const st = statfsSync(at);
  const total = st.blocks * st.bsize;
  return { free: st.bavail * st.bsize, reserve: Math.min(1024 ** 3, Math.floor(total * 0.05)) };
}

/** The thin-provisioning ratio from CORRAL_DISK_RATIO (a number >= 1; anything else is 1). */
export function diskRatio(env: NodeJS.ProcessEnv = process.env): number {
  const r = Number(env.CORRAL_DISK_RATIO);
  return Number.isFinite(r) && r >= 1 ? r : 1;
}

/**
 * Refuse (INSUFFICIENT_RESOURCES, resource disk) `what`, which may grow to `bytes` in `dir`, when that is more
 * than `dir`'s filesystem has free (less the reserve) times the ratio (1 for what is written at once: `thin` false).
 */
export function assertFits(dir: string, bytes: number, what: string, opts: { thin?: boolean; space?: Space } = {}): void {
  const { free, reserve } = opts.space ?? spaceOf(dir);
  const usable = Math.max(0, free - reserve) * (opts.thin === false ? 1 : diskRatio());
  if (bytes <= usable) return;
  throw new CorralError('INSUFFICIENT_RESOURCES',
    `disk space: ${what} may take ${formatSize(bytes)}, and the filesystem of ${dir} has ${formatSize(free)} free, ${formatSize(reserve)} of it kept for the daemon's records` +
    `${opts.thin === false || diskRatio() === 1 ? '' : ` (thin disks may promise ${diskRatio()}x what is free)`}`,
    { resource: 'disk', needed: bytes, free, reserve, dir });
}
