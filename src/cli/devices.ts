/** `corral host devices` (PCI devices: IOMMU groups, drivers, SR-IOV) and `corral host sriov PF [--vfs N]`. */
import type { Command } from 'commander';
import type { PciDevice, SriovState } from '../api/schemas-host.js';
import type { ApiClient } from './client.js';
import { keyValues, printJson, printLines, table } from './format.js';

export type PciDeviceView = PciDevice;
export type SriovStateView = SriovState;

function sriovCell(s: PciDeviceView['sriov']): string {
  if (!s) return '-';
  if ('physfn' in s) return `VF of ${s.physfn}`;
  return `PF ${s.numVfs}/${s.totalVfs} VFs`;
}

export function devicesTable(devices: PciDeviceView[]): string {
  return table(
    ['ADDRESS', 'VENDOR:DEVICE', 'CLASS', 'DRIVER', 'IOMMU-GROUP', 'NUMA', 'SR-IOV'],
    devices.map((d) => [
      d.address,
      `${d.vendor ?? '????'}:${d.device ?? '????'}`,
      d.className,
      d.driver ?? '-',
      d.iommuGroup === null ? '-' : d.iommuGroupPeers.length === 0 ? String(d.iommuGroup) : `${d.iommuGroup} (+${d.iommuGroupPeers.length})`,
      d.numaNode === null ? '-' : String(d.numaNode),
      sriovCell(d.sriov),
    ]),
  );
}

export function sriovDetails(s: SriovStateView): string {
  const head = keyValues([
    ['pf', s.pf],
    ['netdev', s.netdev ?? '-'],
    ['vfs', `${s.numVfs} of ${s.totalVfs}`],
  ]);
  if (s.vfs.length === 0) return head;
  return `${head}\n\n${table(['VF', 'ADDRESS', 'DRIVER', 'FREE'], s.vfs.map((v) => [String(v.index), v.address, v.driver ?? '-', v.free ? 'yes' : 'no']))}`;
}

/** Adds `devices` and `sriov` to the `host` command group. */
export function registerDeviceCommands(host: Command, client: () => ApiClient): void {
  host
    .command('devices')
    .description('PCI devices: ids, class, driver, IOMMU group (+N: other devices in it), NUMA node, SR-IOV')
    .option('--json', 'print the API JSON')
    .action(async (o: { json?: boolean }) => {
      const res = await client().call<{ devices: PciDeviceView[] }>('GET', '/v1/host/devices');
      if (o.json) printJson(res);
      else printLines(devicesTable(res.devices));
    });
  host
    .command('sriov')
    .description("a PF's SR-IOV virtual functions and which are free; with --vfs, set their number (0 removes them)")
    .argument('<pf>', 'the physical function, 0000:03:00.0 or 03:00.0')
    .option('--vfs <n>', 'number of VFs wanted')
    .option('--json', 'print the API JSON')
    .action(async (pf: string, o: { vfs?: string; json?: boolean }) => {
      const vfs = o.vfs === undefined ? undefined : /^\d+$/.test(o.vfs) ? Number(o.vfs) : o.vfs;
      const res = vfs === undefined
        ? await client().call<SriovStateView>('GET', `/v1/host/sriov/${encodeURIComponent(pf)}`)
        : await client().call<SriovStateView>('POST', '/v1/host/sriov', { pf, vfs });
      if (o.json) printJson(res);
      else printLines(sriovDetails(res));
    });
}
