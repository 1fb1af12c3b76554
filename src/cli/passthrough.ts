/** `corral passthrough attach|detach|list`: host PCI devices given to an instance whole (VFIO). */
import type { Command } from 'commander';
import type { Hostdev as HostdevView } from '../api/schemas-host.js';
import type { ApiClient } from './client.js';
import { printJson, printLines, table } from './format.js';

const enc = encodeURIComponent;

export function hostdevTable(list: HostdevView[]): string {
  return table(
    ['ID', 'KIND', 'ADDRESS', 'CLASS', 'DRIVER', 'IOMMU-GROUP', 'BOUND'],
    list.map((h) => [
      h.id,
      h.kind === 'sriov-vf' ? `sriov-vf of ${h.pf ?? '?'}${h.vlan ? ` vlan ${h.vlan}` : ''}` : h.kind,
      h.address ?? '(taken at start)',
      h.className ?? '-',
      h.driver ?? '-',
      h.iommuGroup === null ? '-' : String(h.iommuGroup),
      h.bound ? 'yes' : 'no',
    ]),
  );
}

export function registerPassthroughCommands(program: Command, client: () => ApiClient): void {
  const pt = program.command('passthrough').alias('pt').description('give host PCI devices to instances (VFIO; the instance must be stopped)');

  pt
    .command('attach')
    .description('give a host PCI device to a stopped instance: at each start its whole IOMMU group goes to vfio-pci, and back to its drivers at stop')
    .argument('<name>', 'instance name')
    .argument('<address...>', 'PCI address, 0000:03:00.0 or 03:00.0 (see corral host devices); several to give the devices of one IOMMU group together')
    .option('--json', 'print the API JSON')
    .action(async (name: string, addresses: string[], o: { json?: boolean }) => {
      const res = await client().call<{ hostdevs: HostdevView[] }>('POST', `/v1/instances/${enc(name)}/hostdevs`, { address: addresses.length === 1 ? addresses[0] : addresses });
      if (o.json) printJson(res);
      else {
        const added = res.hostdevs.filter((h) => h.kind === 'passthrough').slice(-addresses.length);
        printLines(added.map((h) => `instance ${name}: ${h.address ?? '?'} attached as ${h.id} (${h.className ?? 'PCI device'}, IOMMU group ${h.iommuGroup ?? '-'})`).join('\n'));
      }
    });

  pt
    .command('detach')
    .description('take a passthrough device from a stopped instance')
    .argument('<name>', 'instance name')
    .argument('<device>', 'its id (hostdev0) or PCI address')
    .option('--json', 'print the API JSON')
    .action(async (name: string, device: string, o: { json?: boolean }) => {
      const res = await client().call<{ hostdevs: HostdevView[] }>('DELETE', `/v1/instances/${enc(name)}/hostdevs/${enc(device)}`);
      if (o.json) printJson(res);
      else printLines(`instance ${name}: ${device} detached`);
    });

  pt
    .command('list')
    .alias('ls')
    .description("an instance's passthrough devices and SR-IOV VFs")
    .argument('<name>', 'instance name')
    .option('--json', 'print the API JSON')
    .action(async (name: string, o: { json?: boolean }) => {
      const res = await client().call<{ hostdevs: HostdevView[] }>('GET', `/v1/instances/${enc(name)}/hostdevs`);
      if (o.json) printJson(res);
      else printLines(hostdevTable(res.hostdevs ?? []));
    });
}
