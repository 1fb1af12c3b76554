/**
 * Host PCI devices given to an instance whole (VFIO passthrough), as the instance spec stores them: ids
 * hostdev0.., the address in full form (0000:03:00.0). Pure: whether the device exists and its IOMMU group is
 * viable is the host's business (src/host/vfio.ts), asked by the passthrough service.
 */
import { CorralError, invalidSpec } from './errors.js';
import type { InstanceHostdev } from './spec-schema.js';

export type { InstanceHostdev };

/** At most this many passthrough devices per instance. */
export const MAX_HOSTDEVS = 8;

export function nextHostdevId(list: readonly InstanceHostdev[]): string {
  for (let i = 0; ; i++) if (!list.some((h) => h.id === `hostdev${i}`)) return `hostdev${i}`;
}

/** The list with `address` (already normalised) added; ALREADY_EXISTS if the instance has it, INVALID_SPEC past the limit. */
export function planHostdevAttach(instance: string, list: readonly InstanceHostdev[], address: string): InstanceHostdev[] {
  const same = list.find((h) => h.address === address);
  if (same) {
    throw new CorralError('ALREADY_EXISTS', `${address} is already given to instance "${instance}" (${same.id})`, { field: 'address', address, id: same.id });
  }
  if (list.length >= MAX_HOSTDEVS) throw invalidSpec('address', `an instance takes at most ${MAX_HOSTDEVS} passthrough devices`);
  return [...list, { id: nextHostdevId(list), address }];
}

/**
 * The device named by `which`: its id (hostdev1) or its address (`address`: `which` normalised as a PCI
 * address, or null when it is not one). HOSTDEV_NOT_FOUND when the instance has no such device.
 */
export function findHostdev(instance: string, list: readonly InstanceHostdev[], which: string, address: string | null): InstanceHostdev {
  const h = list.find((x) => x.id === which || (address !== null && x.address === address));
  if (!h) {
    throw new CorralError('HOSTDEV_NOT_FOUND', `instance "${instance}" has no passthrough device "${which}" (give its id, e.g. hostdev0, or its PCI address)`, { name: instance, hostdev: which });
  }
  return h;
}
