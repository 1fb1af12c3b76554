/**
 * VFIO passthrough, host side: plan which devices of an IOMMU group move to vfio-pci, move them (driver_override,
 * unbind, drivers_probe), roll back on a failure midway, and give them back. All writes go under the sysfs root
 * given, through an injectable FsOps so tests can record them or simulate the kernel.
 */
import { existsSync, readlinkSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { CorralError } from '../core/errors.js';
import { isPciBridge, parsePciAddress, pciDeviceDir, readPciDevice, requirePciDevice, iommuGroupMembers } from './pci.js';

/** The file operations vfio/sriov use; the default is the real file system. */
export interface FsOps {
  write(path: string, value: string): void;
  /** The last component of a symlink's target, or null if there is no such link. */
  readlink(path: string): string | null;
  exists(path: string): boolean;
}

export const realFs: FsOps = {
  write: (path, value) => writeFileSync(path, value),
  readlink: (path) => {
    try {
      return basename(readlinkSync(path));
    } catch {
      return null;
    }
  },
  exists: (path) => existsSync(path),
};

/** Drivers a group member may already sit on without blocking passthrough. */
const PASSTHROUGH_DRIVERS = new Set(['vfio-pci', 'pci-stub']);

export interface VfioPlanMember {
  address: string;
  driver: string | null;
  className: string;
  /** bind: moves to vfio-pci; keep-bridge: a PCI bridge, left on its driver; already-vfio: nothing to do. */
  action: 'bind' | 'keep-bridge' | 'already-vfio';
}

export interface VfioPlan {
  address: string;
  group: number;
  /** The character device QEMU opens, relative to the /dev root: vfio/<group>. */
  vfioDevice: string;
  members: VfioPlanMember[];
}

/** What bindVfio did, to persist and hand to releaseVfio later. */
export interface VfioBinding {
  address: string;
  group: number;
  members: Array<{ address: string; originalDriver: string | null }>;
}

export interface VfioOptions {
  ops?: FsOps;
  /** The /dev root (default /dev): <dev>/vfio/<group> must exist after binding. */
  dev?: string;
  /** Addresses already given to instances: any of them in the group is DEVICE_IN_USE. */
  inUse?: ReadonlySet<string>;
  /** Other devices given to the same guest: group members among them move to vfio-pci whatever driver they are on. */
  together?: ReadonlySet<string>;
}

/**
 * The whole IOMMU group of `address`, and what binding would do to each member. Refuses with
 * IOMMU_GROUP_NOT_VIABLE when another member (not a PCI bridge) is on a host driver other than vfio-pci/pci-stub,
 * naming it (unless it is in `together`: given to the same guest); with DEVICE_IN_USE when a member is already
 * given to an instance.
 */
export function planVfioBind(sys: string, address: string, opts: Pick<VfioOptions, 'inUse' | 'together'> = {}): VfioPlan {
  const dev = readPciDevice(sys, address);
  if (dev.iommuGroup === null) {
    throw new CorralError(
      'IOMMU_GROUP_NOT_VIABLE',
      `${dev.address} has no IOMMU group: the IOMMU is off (boot with intel_iommu=on or amd_iommu=on, and enable VT-d/AMD-Vi in the firmware)`,
      { address: dev.address },
    );
  }
  const group = dev.iommuGroup;
  const addrs = iommuGroupMembers(sys, group);
  if (!addrs.includes(dev.address)) addrs.push(dev.address);
  const members: VfioPlanMember[] = [];
  for (const a of addrs.sort()) {
    const m = a === dev.address ? dev : readPciDevice(sys, a);
    if (opts.inUse?.has(m.address)) {
      throw new CorralError('DEVICE_IN_USE', `${m.address} (IOMMU group ${group}) is already given to an instance`, { address: m.address, group });
    }
    let action: VfioPlanMember['action'];
    if (m.driver === 'vfio-pci') action = 'already-vfio';
    else if (m.address !== dev.address && isPciBridge(m)) action = 'keep-bridge';
    else if (m.address === dev.address || opts.together?.has(m.address) || m.driver === null || PASSTHROUGH_DRIVERS.has(m.driver)) action = 'bind';
    else {
      throw new CorralError(
        'IOMMU_GROUP_NOT_VIABLE',
        `IOMMU group ${group} of ${dev.address} is not viable: ${m.address} (${m.className}) is in use by the host driver ${m.driver}; ` +
          'every device of a group goes to the guest together (unbind it, or pass it through too)',
        { address: dev.address, group, device: m.address, driver: m.driver },
      );
    }
    members.push({ address: m.address, driver: m.driver, className: m.className, action });
  }
  return { address: dev.address, group, vfioDevice: `vfio/${group}`, members };
}

type Step = 'driver_override' | 'unbind' | 'drivers_probe' | 'check';

/** Put one member back on its original driver, as far as possible; returns the errors met. */
function restoreMember(sys: string, ops: FsOps, address: string, original: string | null): string[] {
  const dir = pciDeviceDir(sys, address);
  const errors: string[] = [];
  const attempt = (what: string, f: () => void): void => {
    try {
      f();
    } catch (e) {
      errors.push(`${what}: ${(e as Error).message}`);
    }
  };
  attempt('clear driver_override', () => ops.write(join(dir, 'driver_override'), '\n'));
  const current = ops.readlink(join(dir, 'driver'));
  if (current !== null && current !== original) {
    attempt(`unbind from ${current}`, () => ops.write(join(sys, 'bus/pci/drivers', current, 'unbind'), address));
  }
  if (original !== null && current !== original) {
    attempt(`bind to ${original}`, () => ops.write(join(sys, 'bus/pci/drivers', original, 'bind'), address));
  }
  return errors;
}

/**
 * Move the IOMMU group of `address` to vfio-pci: for each member to bind, write vfio-pci to driver_override,
 * unbind it from its driver, write its address to drivers_probe, and check it landed on vfio-pci. Then
 * <dev>/vfio/<group> must exist. On any failure every member touched goes back to its original driver and the
 * error names the device and the step.
 */
export function bindVfio(sys: string, address: string, opts: VfioOptions = {}): VfioBinding {
  const ops = opts.ops ?? realFs;
  const devRoot = opts.dev ?? '/dev';
  const plan = planVfioBind(sys, address, opts);
  if (!ops.exists(join(sys, 'bus/pci/drivers/vfio-pci'))) {
    throw new CorralError('INVALID_STATE', 'the vfio-pci driver is not loaded (modprobe vfio-pci)', { address: plan.address });
  }
  const done: VfioBinding['members'] = [];
  for (const m of plan.members.filter((x) => x.action === 'bind')) {
    const dir = pciDeviceDir(sys, m.address);
    let step: Step = 'driver_override';
    done.push({ address: m.address, originalDriver: m.driver });
    try {
      ops.write(join(dir, 'driver_override'), 'vfio-pci');
      step = 'unbind';
      if (m.driver !== null) ops.write(join(sys, 'bus/pci/drivers', m.driver, 'unbind'), m.address);
      step = 'drivers_probe';
      ops.write(join(sys, 'bus/pci/drivers_probe'), m.address);
      step = 'check';
      const now = ops.readlink(join(dir, 'driver'));
      if (now !== 'vfio-pci') throw new CorralError('INTERNAL', `bound to ${now ?? 'no driver'} instead of vfio-pci`);
    } catch (e) {
      const rollback = rollBack(sys, ops, done);
      throw new CorralError(
        'INTERNAL',
        `binding ${m.address} (IOMMU group ${plan.group}) to vfio-pci failed at ${step}: ${(e as Error).message}; ` +
          `${rollback.length === 0 ? 'the group was given back to its drivers' : `rollback incomplete: ${rollback.join('; ')}`}`,
        { address: plan.address, device: m.address, step, group: plan.group, rollbackErrors: rollback },
      );
    }
  }
  const node = join(devRoot, plan.vfioDevice);
  if (!ops.exists(node)) {
    const rollback = rollBack(sys, ops, done);
    throw new CorralError(
      'IOMMU_GROUP_NOT_VIABLE',
      `${node} does not exist after binding group ${plan.group} to vfio-pci (is the IOMMU enabled and the vfio module loaded?); the group was given back`,
      { address: plan.address, group: plan.group, path: node, rollbackErrors: rollback },
    );
  }
  return { address: plan.address, group: plan.group, members: done };
}

function rollBack(sys: string, ops: FsOps, done: VfioBinding['members']): string[] {
  const errors: string[] = [];
  for (const m of [...done].reverse()) {
    for (const e of restoreMember(sys, ops, m.address, m.originalDriver)) errors.push(`${m.address}: ${e}`);
  }
  return errors;
}

/**
 * Give a bound group back: for each member clear driver_override, unbind from vfio-pci, drivers_probe (and bind
 * to the original driver explicitly if the probe did not pick it, as for pci-stub). Goes through every member
 * even if one fails; returns the failures (empty when all went back).
 */
export function releaseVfio(sys: string, record: VfioBinding, opts: Pick<VfioOptions, 'ops'> = {}): Array<{ address: string; error: string }> {
  const ops = opts.ops ?? realFs;
  const failures: Array<{ address: string; error: string }> = [];
  for (const m of record.members) {
    const dir = pciDeviceDir(sys, m.address);
    try {
      requirePciDevice(sys, m.address);
      ops.write(join(dir, 'driver_override'), '\n');
      if (ops.readlink(join(dir, 'driver')) === 'vfio-pci') ops.write(join(sys, 'bus/pci/drivers/vfio-pci/unbind'), m.address);
      ops.write(join(sys, 'bus/pci/drivers_probe'), m.address);
      const now = ops.readlink(join(dir, 'driver'));
      if (m.originalDriver !== null && now !== m.originalDriver) {
        if (now !== null) ops.write(join(sys, 'bus/pci/drivers', now, 'unbind'), m.address);
        ops.write(join(sys, 'bus/pci/drivers', m.originalDriver, 'bind'), m.address);
      }
    } catch (e) {
      failures.push({ address: m.address, error: (e as Error).message });
    }
  }
  return failures;
}

/** The QEMU -device JSON for a host PCI device given through VFIO. */
export function vfioDeviceJson(address: string, id: string): { driver: 'vfio-pci'; host: string; id: string } {
  return { driver: 'vfio-pci', host: parsePciAddress(address), id };
}
