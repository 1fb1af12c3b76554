/**
 * `corral resize NAME [--cpus N] [--memory SIZE]` (live: vCPU hotplug, balloon and virtio-mem) and
 * `corral stats NAME`: the CPU, memory and NIC views of a running instance together.
 */
import type { Command } from 'commander';
import { CliError, type ApiClient } from './client.js';
import { cpuReport, type CpuStats } from './cpu.js';
import { memoryDetails, resizeMemory, type MemoryStatsView, type StoppedMemoryResize } from './memory.js';
import { printJson, printLines, size } from './format.js';
import { nicStatsTable } from './nics.js';
import type { NicStats } from '../api/schemas-network.js';
import { wholeNumber } from './instances.js';

const enc = encodeURIComponent;

/** `db1: memory 1 GiB (live; the guest sees 1 GiB)` or `db1: memory 1 GiB (stopped: applies at the next start)`. */
export function resizedMemoryLine(name: string, m: MemoryStatsView | StoppedMemoryResize): string {
  if ('state' in m && typeof m.state === 'string') return `${name}: memory ${size(m.memory)} (${m.state}: applies at the next start)`;
  const s = m as MemoryStatsView;
  return `${name}: memory ${size(s.requested ?? s.configured.memory)} (live; the guest sees ${size(s.guest.visible)})`;
}

export function registerStatsCommands(program: Command, client: () => ApiClient): void {
  program
    .command('resize')
    .description('change vCPUs (hotplug up to --max-cpus) and memory (balloon down, virtio-mem up to --max-memory) of an instance')
    .argument('<name>', 'instance name')
    .option('--cpus <n>', 'vCPUs', wholeNumber)
    .option('--memory <size>', 'guest memory, e.g. 512M or 2G')
    .option('--json', 'print the API JSON')
    .action(async (name: string, o: { cpus?: number; memory?: string; json?: boolean }) => {
      if (o.cpus === undefined && o.memory === undefined) throw new CliError('say what to change: --cpus N and/or --memory SIZE');
      const out: Record<string, unknown> = {};
      // the same answer for both: live on a running instance, stored for the next start on a stopped one
      const how = (r: { state?: string }): string => (r.state ? `${r.state}: applies at the next start` : 'live');
      if (o.cpus !== undefined) {
        const r = await client().call<Partial<CpuStats> & { state?: string }>('POST', `/v1/instances/${enc(name)}/cpus`, { count: o.cpus });
        out.cpu = r;
        if (!o.json) printLines(`${name}: ${r.cpus ?? o.cpus} vCPUs (${how(r)})`);
      }
      if (o.memory !== undefined) {
        const m = await resizeMemory(client(), name, o.memory);
        out.memory = m;
        if (!o.json) printLines(resizedMemoryLine(name, m));
      }
      if (o.json) printJson(out);
    });

  program
    .command('stats')
    .description('CPU (per-vCPU host threads and time, pinning, VM exits), memory (balloon, RSS, memory map) and NIC counters (tap or guest agent) of a running instance')
    .argument('<name>', 'instance name')
    .option('--json', 'print the API JSON: {cpu, memory, nics}')
    .action(async (name: string, o: { json?: boolean }) => {
      const [cpu, memory, nics] = await Promise.all([
        client().call<CpuStats>('GET', `/v1/instances/${enc(name)}/cpu`),
        client().call<MemoryStatsView>('GET', `/v1/instances/${enc(name)}/memory`),
        client().call<NicStats>('GET', `/v1/instances/${enc(name)}/nic-stats`),
      ]);
      if (o.json) printJson({ cpu, memory, nics: nics.nics });
      else printLines(`${cpuReport(cpu)}\n\n${memoryDetails(memory)}\n\n${nicStatsTable(nics)}`);
    });
}
