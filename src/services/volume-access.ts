/**
 * Who may open each volume's image: derived, every time, from which instances are live and what they have
 * attached, never remembered, so a crash or a restart cannot leave a volume open to QEMU's user by mistake:
 * - given: attached to a live instance; its QEMU (or storage daemon) writes it: owned by QEMU's user, 0600;
 * - lent: under a clone a live instance has attached (a backing file QEMU reads): root's, group-readable 0640;
 * - anything else: root's, 0600 (QEMU's user cannot open it).
 * Each volume's folder is root's, 0711: reachable to open a file in it, not listable, not writable.
 * Settled when a VM ends, after a live detach, and at daemon start; given before a VM or a hot-plug opens it.
 */
import { dirname } from 'node:path';
import { giveTo, lendTo, ownAs, takeBack, type RunAs } from '../host/run-as.js';
import { chainOf, type VolumeLink } from './volume-holders.js';

export type VolumeAccess = 'given' | 'lent';

/** What each volume must be open to, from the attached volumes of every live instance. Pure. */
export function volumeAccess(records: readonly VolumeLink[], liveAttached: readonly string[][]): Map<string, VolumeAccess> {
  const out = new Map<string, VolumeAccess>();
  for (const attached of liveAttached) {
    for (const v of attached) {
      out.set(v, 'given');
      for (const under of chainOf(v, records).slice(1)) if (out.get(under) !== 'given') out.set(under, 'lent');
    }
  }
  return out;
}

interface VolumeFile extends VolumeLink {
  path: string;
}

/** Make the files of `volumes` what `access` says (see the top of this file). */
export function applyVolumeAccess(who: RunAs, volumes: readonly VolumeFile[], access: ReadonlyMap<string, VolumeAccess>): void {
  for (const v of volumes) {
    try {
      ownAs(dirname(v.path), 0, 0, 0o711);
      const a = access.get(v.name);
      if (a === 'given') giveTo(who, v.path);
      else if (a === 'lent') lendTo(who, v.path);
      else takeBack(v.path);
    } catch (e) {
      // a volume whose file is gone: whoever opens it says so in its own words (QEMU, a storage daemon)
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
  }
}

/** Give `attached` (and lend what it reads) to QEMU's user, for a start or a hot-plug. */
export function giveVolumes(who: RunAs, volumes: readonly VolumeFile[], attached: readonly string[]): void {
  const access = volumeAccess(volumes, [[...attached]]);
  applyVolumeAccess(who, volumes.filter((v) => access.has(v.name)), access);
}
