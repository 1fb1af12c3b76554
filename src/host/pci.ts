/**
 * PCI devices as sysfs shows them: <sys>/bus/pci/devices/<addr>/{vendor,device,class,numa_node,driver,iommu_group,
 * sriov_totalvfs,sriov_numvfs,physfn,virtfn*}. Every reader takes the sysfs root so tests use fake trees.
 */
import { readlinkSync } from 'node:fs';
import { basename, join } from 'node:path';
import { CorralError, invalidSpec } from '../core/errors.js';
import { isDir, listDir, readInt, readText } from './sysfs.js';

/** A PCI device's SR-IOV side: a physical function (with its VFs) or a virtual function (with its PF). */
export type PciSriov = { totalVfs: number; numVfs: number; vfs: string[] } | { physfn: string };

export interface PciDevice {
  /** Full address, domain included, lower case: 0000:03:00.0. */
  address: string;
  /** Vendor and device ids, 4 hex digits without 0x ("8086", "10fb"). */
  vendor: string | null;
  device: string | null;
  /** Class code, 6 hex digits without 0x ("020000"), and its class+subclass ("0200"). */
  class: string | null;
  classCode: string | null;
  className: string;
  driver: string | null;
  iommuGroup: number | null;
  /** The other devices in the same IOMMU group (this one left out). */
  iommuGroupPeers: string[];
  numaNode: number | null;
  sriov: PciSriov | null;
}

const CLASS_NAMES: Record<string, string> = {
  '0100': 'SCSI controller', '0101': 'IDE controller', '0104': 'RAID controller', '0106': 'SATA controller',
  '0107': 'SAS controller', '0108': 'NVMe controller', '0180': 'Storage controller',
  '0200': 'Ethernet controller', '0207': 'InfiniBand controller', '0280': 'Network controller',
  '0300': 'VGA controller', '0302': '3D controller', '0380': 'Display controller',
  '0401': 'Audio device', '0403': 'Audio device', '0480': 'Multimedia controller',
  '0500': 'RAM memory', '0580': 'Memory controller',
  '0600': 'Host bridge', '0601': 'ISA bridge', '0604': 'PCI bridge', '0680': 'Bridge',
  '0700': 'Serial controller', '0880': 'System peripheral',
  '0c03': 'USB controller', '0c05': 'SMBus', '0c04': 'Fibre Channel',
  '1200': 'Processing accelerator', '0b40': 'Co-processor',
};
const BASE_NAMES: Record<string, string> = {
  '01': 'Storage controller', '02': 'Network controller', '03': 'Display controller', '04': 'Multimedia controller',
  '05': 'Memory controller', '06': 'Bridge', '07': 'Communication controller', '08': 'System peripheral',
  '0c': 'Serial bus controller', '12': 'Processing accelerator',
};

/** A readable name for a class code ("020000", "0x0200" or "0200"). */
export function pciClassName(code: string | null): string {
  if (!code) return 'unknown';
  const c = code.replace(/^0x/i, '').toLowerCase();
  return CLASS_NAMES[c.slice(0, 4)] ?? BASE_NAMES[c.slice(0, 2)] ?? `class ${c.slice(0, 4)}`;
}

/** True for PCI-to-PCI bridges (class 0x0604), which may stay on their driver in a group given to a guest. */
export function isPciBridge(dev: Pick<PciDevice, 'classCode'>): boolean {
  return dev.classCode === '0604';
}

const ADDRESS = /^(?:([0-9a-fA-F]{4}):)?([0-9a-fA-F]{2}):([01][0-9a-fA-F])\.([0-7])$/;

/** `0000:03:00.0` or `03:00.0` (domain 0000) -> `0000:03:00.0`; anything else is INVALID_SPEC (field address). */
export function parsePciAddress(s: string, field = 'address'): string {
  const m = typeof s === 'string' ? ADDRESS.exec(s) : null;
  if (!m) throw invalidSpec(field, `'${String(s)}' is not a PCI address (expected DDDD:BB:DD.F or BB:DD.F, e.g. 0000:03:00.0)`);
  return `${(m[1] ?? '0000').toLowerCase()}:${m[2]!.toLowerCase()}:${m[3]!.toLowerCase()}.${m[4]}`;
}

export function pciDevicesDir(sys: string): string {
  return join(sys, 'bus/pci/devices');
}

export function pciDeviceDir(sys: string, address: string): string {
  return join(pciDevicesDir(sys), address);
}

/** The last component of a symlink's target (driver, iommu_group, physfn, virtfnN), or null if no such link. */
export function linkName(path: string): string | null {
  try {
    return basename(readlinkSync(path));
  } catch {
    return null;
  }
}

function hexId(path: string, digits: number): string | null {
  const t = readText(path);
  if (t === null || !/^(0x)?[0-9a-fA-F]+$/.test(t)) return null;
  return t.replace(/^0x/i, '').toLowerCase().padStart(digits, '0');
}

/** The address given (parsed) if it exists under <sys>, else PCI_DEVICE_NOT_FOUND. */
export function requirePciDevice(sys: string, address: string): string {
  const addr = parsePciAddress(address);
  if (!isDir(pciDeviceDir(sys, addr))) throw new CorralError('PCI_DEVICE_NOT_FOUND', `no PCI device ${addr} on this host`, { address: addr });
  return addr;
}

/** Members of IOMMU group N, sorted. */
export function iommuGroupMembers(sys: string, group: number): string[] {
  return listDir(join(sys, 'kernel/iommu_groups', String(group), 'devices'));
}

/** The VFs of a PF, by virtfnN index: [{index, address}]. */
export function virtfns(sys: string, pf: string): Array<{ index: number; address: string }> {
  const dir = pciDeviceDir(sys, pf);
  return listDir(dir)
    .map((n) => /^virtfn(\d+)$/.exec(n)?.[1])
    .filter((n): n is string => n !== undefined)
    .map(Number)
    .sort((a, b) => a - b)
    .map((index) => ({ index, address: linkName(join(dir, `virtfn${index}`)) }))
    .filter((v): v is { index: number; address: string } => v.address !== null);
}

/** One device; PCI_DEVICE_NOT_FOUND if absent, INVALID_SPEC if the address is malformed. */
export function readPciDevice(sys: string, address: string): PciDevice {
  const addr = requirePciDevice(sys, address);
  const dir = pciDeviceDir(sys, addr);
  const cls = hexId(join(dir, 'class'), 6);
  const group = linkName(join(dir, 'iommu_group'));
  const iommuGroup = group !== null && /^\d+$/.test(group) ? Number(group) : null;
  const numa = readInt(join(dir, 'numa_node'));
  const physfn = linkName(join(dir, 'physfn'));
  const totalVfs = readInt(join(dir, 'sriov_totalvfs'));
  let sriov: PciSriov | null = null;
  if (physfn !== null) sriov = { physfn };
  else if (totalVfs !== null && totalVfs > 0) {
    sriov = { totalVfs, numVfs: readInt(join(dir, 'sriov_numvfs')) ?? 0, vfs: virtfns(sys, addr).map((v) => v.address) };
  }
  return {
    address: addr,
    vendor: hexId(join(dir, 'vendor'), 4),
    device: hexId(join(dir, 'device'), 4),
    class: cls,
    classCode: cls ? cls.slice(0, 4) : null,
    className: pciClassName(cls),
    driver: linkName(join(dir, 'driver')),
    iommuGroup,
    iommuGroupPeers: iommuGroup === null ? [] : iommuGroupMembers(sys, iommuGroup).filter((a) => a !== addr),
    numaNode: numa === null || numa < 0 ? null : numa,
    sriov,
  };
}

/** Every PCI device under <sys>/bus/pci/devices, by address. Entries that are not PCI addresses are skipped. */
export function listPciDevices(sys = '/sys'): PciDevice[] {
  return listDir(pciDevicesDir(sys))
    .filter((n) => ADDRESS.test(n) && n.length === 12)
    .map((n) => readPciDevice(sys, n));
}
