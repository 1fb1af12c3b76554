/** `corral host show`: facts about the host as the daemon sees them. Unknown fields are listed too. */
import type { Command } from 'commander';
import type { ApiClient } from './client.js';
import { fields, keyValues, printJson, printLines, size } from './format.js';
import { registerDeviceCommands } from './devices.js';
import { registerClusterHostCommands, showClusterHost } from './cluster.js';
import { registerEvacuateCommand } from './moves.js';

interface InventorySummary {
  cpu?: { vendor?: string; virtualization?: string | null; hypervisor?: boolean; topology?: { sockets?: number; coresPerSocket?: number; threadsPerCore?: number } };
  numa?: Array<{ id: number; cpus: number[]; memTotal: number | null }>;
  memory?: { hugepages?: Array<{ size: number; total: number; free: number }>; transparentHugepages?: string | null; ksm?: { available: boolean; run?: number; pagesSharing?: number } };
  cgroups?: { version?: string; controllers?: string[] };
}

/** The inventory in a few readable lines (the whole of it is in --json). */
export function inventoryLines(inv: InventorySummary): Array<[string, string]> {
  const t = inv.cpu?.topology;
  const out: Array<[string, string]> = [];
  if (t) out.push(['topology', `${t.sockets} socket(s) x ${t.coresPerSocket} core(s) x ${t.threadsPerCore} thread(s)`]);
  if (inv.cpu) {
    out.push(['virtualization', `${inv.cpu.virtualization ?? 'none advertised (no vmx/svm flag)'}${inv.cpu.hypervisor ? '; this host is itself a VM' : ''}`]);
  }
  if (inv.numa) {
    out.push(['numa', inv.numa.length === 0 ? 'no NUMA information (one node)' : inv.numa.map((n) => `node${n.id}: CPUs ${n.cpus.join(',')}, ${size(n.memTotal)}`).join('; ')]);
  }
  const hp = inv.memory?.hugepages ?? [];
  out.push(['hugepages', hp.length === 0 ? 'none' : hp.map((h) => `${size(h.size)}: ${h.free}/${h.total} free`).join(', ')]);
  if (inv.memory?.transparentHugepages) out.push(['transparent hugepages', inv.memory.transparentHugepages]);
  const ksm = inv.memory?.ksm;
  if (ksm) out.push(['ksm', ksm.available ? `${ksm.run === 1 ? 'running' : 'stopped'}, ${ksm.pagesSharing ?? 0} pages sharing` : 'not available']);
  if (inv.cgroups) out.push(['cgroups', `${inv.cgroups.version} (${(inv.cgroups.controllers ?? []).join(' ')})`]);
  return out;
}

export function hostDetails(host: Record<string, unknown>): string {
  const { inventory, ...rest } = host;
  const inv = inventory && typeof inventory === 'object' ? inventoryLines(inventory as InventorySummary) : [];
  return keyValues([
    ...fields(rest, {
      'memory.total': size,
      'memory.available': size,
      acceleratorForced: (v) => (v === true ? 'yes' : v === false ? 'no' : String(v ?? '-')),
    }),
    ...inv,
  ]);
}

export function registerHostCommands(program: Command, client: () => ApiClient): void {
  const host = program.command('host').description('the host this daemon runs on; against a controller, the cluster\'s hosts');
  host
    .command('show [name]', { isDefault: true })
    .description('show the host: accelerator, QEMU, CPUs, memory; with a NAME, that host of the cluster (against a controller)')
    .option('--json', 'print the API JSON')
    .action(async (name: string | undefined, o: { json?: boolean }) => {
      if (name !== undefined) return showClusterHost(client(), name, o.json === true);
      const res = await client().call<Record<string, unknown>>('GET', '/v1/host');
      if (o.json) printJson(res);
      else printLines(hostDetails(res));
    });
  registerDeviceCommands(host, client);
  registerClusterHostCommands(host, client);
  registerEvacuateCommand(host, client);
}
