/**
 * SR-IOV on the host: set a PF's VF count (sriov_numvfs), list its VFs (virtfnN), pick a free one, and set a VF's
 * MAC/VLAN through `ip link` on the PF's netdev. Writes and commands go through injectable FsOps / exec.
 */
import { join } from 'node:path';
import { CorralError, invalidSpec } from '../core/errors.js';
import { run } from './exec.js';
import { linkName, pciDeviceDir, readPciDevice, virtfns } from './pci.js';
import { listDir, readInt } from './sysfs.js';
import { realFs, type FsOps } from './vfio.js';

export interface VfInfo {
  index: number;
  address: string;
  driver: string | null;
  /** Not bound to vfio-pci and not recorded as given to an instance. */
  free: boolean;
}

export interface SriovState {
  pf: string;
  netdev: string | null;
  totalVfs: number;
  numVfs: number;
  vfs: VfInfo[];
}

/** The PF's address if it supports SR-IOV, else SRIOV_UNSUPPORTED (PCI_DEVICE_NOT_FOUND if absent). */
function requirePf(sys: string, pf: string): { address: string; totalVfs: number } {
  const dev = readPciDevice(sys, pf);
  if (dev.sriov && 'physfn' in dev.sriov) {
    throw new CorralError('SRIOV_UNSUPPORTED', `${dev.address} is itself a VF of ${dev.sriov.physfn}; give the PF`, { pf: dev.address, physfn: dev.sriov.physfn });
  }
  if (!dev.sriov) throw new CorralError('SRIOV_UNSUPPORTED', `${dev.address} (${dev.className}) does not support SR-IOV`, { pf: dev.address });
  return { address: dev.address, totalVfs: dev.sriov.totalVfs };
}

/** The PF's network interface name (<sys>/bus/pci/devices/<pf>/net/*), or null (not a NIC, or no driver). */
export function pfNetdev(sys: string, pf: string): string | null {
  return listDir(join(pciDeviceDir(sys, pf), 'net'))[0] ?? null;
}

/** The PF's VFs with their driver and whether each is free. */
export function listVfs(sys: string, pf: string, inUse: ReadonlySet<string> = new Set()): VfInfo[] {
  const { address } = requirePf(sys, pf);
  return virtfns(sys, address).map(({ index, address: a }) => {
    const driver = linkName(join(pciDeviceDir(sys, a), 'driver'));
    return { index, address: a, driver, free: driver !== 'vfio-pci' && !inUse.has(a) };
  });
}

export function sriovState(sys: string, pf: string, inUse: ReadonlySet<string> = new Set()): SriovState {
  const { address, totalVfs } = requirePf(sys, pf);
  return {
    pf: address,
    netdev: pfNetdev(sys, address),
    totalVfs,
    numVfs: readInt(join(pciDeviceDir(sys, address), 'sriov_numvfs')) ?? 0,
    vfs: listVfs(sys, address, inUse),
  };
}

/** The first free VF of the PF; INSUFFICIENT_RESOURCES when there is none. */
export function pickFreeVf(sys: string, pf: string, inUse: ReadonlySet<string> = new Set()): VfInfo {
  const vfs = listVfs(sys, pf, inUse);
  const vf = vfs.find((v) => v.free);
  if (!vf) {
    throw new CorralError('INSUFFICIENT_RESOURCES', `no free VF on ${pf}: ${vfs.length} VF(s), all in use (corral host sriov ${pf} --vfs N to create more)`, { pf, vfs: vfs.length });
  }
  return vf;
}

/**
 * Set the PF's VF count. Refuses n above sriov_totalvfs (INVALID_SPEC, field vfs) before writing anything, and a
 * change that would destroy a VF given to an instance (DEVICE_IN_USE). Going from a non-zero count to another
 * non-zero count writes 0 first, as the kernel requires.
 */
export function setVfCount(sys: string, pf: string, n: number, opts: { ops?: FsOps; inUse?: ReadonlySet<string> } = {}): SriovState {
  const ops = opts.ops ?? realFs;
  const inUse = opts.inUse ?? new Set<string>();
  const { address, totalVfs } = requirePf(sys, pf);
  if (!Number.isInteger(n) || n < 0) throw invalidSpec('vfs', `must be a whole number >= 0, got ${n}`);
  if (n > totalVfs) {
    throw new CorralError('INVALID_SPEC', `vfs: ${address} supports at most ${totalVfs} VFs (sriov_totalvfs), asked for ${n}`, { field: 'vfs', pf: address, totalVfs, requested: n });
  }
  const file = join(pciDeviceDir(sys, address), 'sriov_numvfs');
  const current = readInt(file) ?? 0;
  if (current === n) return sriovState(sys, address, inUse);
  const busy = listVfs(sys, address, inUse).filter((v) => inUse.has(v.address));
  if (busy.length > 0) {
    throw new CorralError('DEVICE_IN_USE', `cannot change the VF count of ${address}: VF(s) ${busy.map((v) => v.address).join(', ')} are given to instances`, {
      pf: address, vfs: busy.map((v) => v.address),
    });
  }
  const write = (value: number): void => {
    try {
      ops.write(file, String(value));
    } catch (e) {
      throw new CorralError('INTERNAL', `writing ${value} to ${file} failed: ${(e as Error).message}`, { pf: address, requested: n });
    }
  };
  if (current !== 0 && n !== 0) write(0);
  write(n);
  return sriovState(sys, address, inUse);
}

const MAC = /^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/;

/** argv for `ip link set dev NETDEV vf N mac M [vlan V]` (pure; validates its inputs). */
export function vfMacArgv(netdev: string, vfIndex: number, mac: string, vlan?: number): string[] {
  if (!/^[A-Za-z0-9_.:-]{1,15}$/.test(netdev)) throw invalidSpec('netdev', `'${netdev}' is not an interface name`);
  if (!Number.isInteger(vfIndex) || vfIndex < 0) throw invalidSpec('vf', `must be a whole number >= 0, got ${vfIndex}`);
  if (!MAC.test(mac)) throw invalidSpec('mac', `'${mac}' is not a MAC address (aa:bb:cc:dd:ee:ff)`);
  if (vlan !== undefined && (!Number.isInteger(vlan) || vlan < 0 || vlan > 4094)) throw invalidSpec('vlan', `must be 0-4094, got ${vlan}`);
  const argv = ['ip', 'link', 'set', 'dev', netdev, 'vf', String(vfIndex), 'mac', mac.toLowerCase()];
  if (vlan !== undefined) argv.push('vlan', String(vlan));
  return argv;
}

export type Exec = (argv: string[]) => Promise<void>;

/** Runs through the one command runner: a missing `ip` is MISSING_TOOL, a failure names the command and its stderr. */
export const realExec: Exec = async (argv) => {
  await run(argv[0]!, argv.slice(1), { timeoutMs: 10_000 });
};

/** Set VF vfIndex's MAC (and VLAN) on the PF's netdev; returns the argv it ran. */
export async function setVfMac(
  sys: string, pf: string, vfIndex: number, mac: string, opts: { vlan?: number; exec?: Exec } = {},
): Promise<string[]> {
  const { address } = requirePf(sys, pf);
  const netdev = pfNetdev(sys, address);
  if (!netdev) throw new CorralError('SRIOV_UNSUPPORTED', `${address} has no network interface (is its driver loaded?); cannot set a VF MAC`, { pf: address });
  const argv = vfMacArgv(netdev, vfIndex, mac, opts.vlan);
  try {
    await (opts.exec ?? realExec)(argv);
  } catch (e) {
    if (e instanceof CorralError) throw new CorralError(e.code, e.message, { ...e.details, pf: address, vf: vfIndex });
    throw new CorralError('INTERNAL', `${argv.join(' ')} failed: ${(e as Error).message}`, { pf: address, vf: vfIndex });
  }
  return argv;
}
