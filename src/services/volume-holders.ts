/**
 * Who holds a volume's image. QEMU refuses to open an image that another process has open in a conflicting way
 * (`Failed to get "write" lock`: someone has the image itself open; `Failed to get shared "write" lock`: someone
 * writes to an image of its backing chain, such as a clone's source). A start that fails so is VOLUME_IN_USE
 * naming the volume and the instances holding it, or saying that the holder is no Corral instance. Pure.
 */
import { CorralError } from '../core/errors.js';
import { volumeIds } from '../core/disks.js';
import { LOCK_RE } from '../storage/volumes-img.js';

/** A volume and what it is a clone of. */
export interface VolumeLink {
  name: string;
  backing: string | null;
}

/** An instance, whether a QEMU of it may be alive, and the volumes attached to it. */
export interface InstanceUse {
  name: string;
  alive: boolean;
  volumes: string[];
}

/** The volume and every volume under it: its source, the source's source, and so on. */
export function chainOf(volume: string, records: readonly VolumeLink[]): string[] {
  const by = new Map(records.map((r) => [r.name, r]));
  const out: string[] = [];
  for (let cur: string | null = volume; cur !== null && !out.includes(cur); cur = by.get(cur)?.backing ?? null) out.push(cur);
  return out;
}

/**
 * The live instances, other than `except`, whose images conflict with writing to the volume: an instance writes to
 * its attached volumes and reads their chains, so it conflicts when it opens the volume at all (attached, or under
 * a clone it has attached) or writes to an image the volume is a clone of. Two readers of one source do not.
 */
export function holdersOf(volume: string, records: readonly VolumeLink[], instances: readonly InstanceUse[], except: string): string[] {
  const chain = chainOf(volume, records);
  const conflicts = (attached: string): boolean => chain.includes(attached) || chainOf(attached, records).includes(volume);
  return instances.filter((i) => i.alive && i.name !== except && i.volumes.some(conflicts)).map((i) => i.name);
}

/**
 * A failed start of instance `starting` whose QEMU (or a storage daemon) could not lock the image of one of its
 * volumes becomes VOLUME_IN_USE naming the volume and its holders. QEMU's message quotes the -blockdev it could
 * not open, node-name included; a storage daemon's refusal names its volume. Any other error is returned as is.
 */
export function lockHolderError(e: unknown, starting: string, volumes: readonly string[], records: readonly VolumeLink[], instances: readonly InstanceUse[]): unknown {
  if (!(e instanceof CorralError) || (e.code !== 'QEMU_FAILED' && e.code !== 'VOLUME_IN_USE')) return e;
  const lock = LOCK_RE.exec(e.message);
  if (!lock) return e;
  const named = typeof e.details.name === 'string' && e.code === 'VOLUME_IN_USE' ? e.details.name : null;
  const volume = volumes.find((v) => v === named || e.message.includes(`"node-name":"${volumeIds(v).node}"`));
  if (volume === undefined) return e;
  const holders = holdersOf(volume, records, instances, starting);
  const via = /backing file/.test(e.message) ? 'an image it is a clone of is' : 'its image is';
  const by = holders.length > 0 ? `instance${holders.length > 1 ? 's' : ''} ${holders.map((h) => `"${h}"`).join(', ')}` : 'a process that is not a Corral instance';
  const hint = holders.length > 1 ? 'stop them first' : 'stop it first';
  return new CorralError('VOLUME_IN_USE', `volume "${volume}" cannot be opened by instance "${starting}": ${via} held by ${by} (${lock[0]}); ${hint}`, {
    name: volume, instance: holders[0] ?? null, holders, reason: 'image locked',
  });
}
