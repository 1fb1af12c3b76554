/** `corral memory NAME`: a running instance's memory, and the memory map with host residency per range. */
import type { Command } from 'commander';
import type { MemoryStats, StoppedMemoryResize } from '../api/schemas-compute.js';
import type { ApiClient } from './client.js';
import { keyValues, printJson, printLines, size, table } from './format.js';

/** What the memory route says of a running guest. */
export type MemoryStatsView = MemoryStats;

const hex = (v: number | null): string => (v === null ? '-' : `0x${v.toString(16).padStart(12, '0')}`);

export function memoryDetails(m: MemoryStatsView): string {
  const c = m.configured;
  const g = m.guest;
  const pairs: Array<[string, string]> = [
    ['configured', `${size(c.memory)} at boot${c.maxMemory !== null ? `, up to ${size(c.maxMemory)} (virtio-mem)` : ''}${c.balloon ? ', balloon' : ', no balloon'}`],
    ['requested', m.requested === null ? '- (the boot size)' : size(m.requested)],
    ['guest-visible', `${size(g.visible)}${g.balloon !== null ? ` (balloon at ${size(g.balloon)}` : ' ('}${g.plugged !== null ? `${g.balloon !== null ? ', ' : ''}plugged ${size(g.plugged)})` : g.balloon !== null ? ')' : 'no balloon)'}`],
    ['host rss', `${size(m.host.rss)}${m.host.anonymous !== null ? ` (anonymous ${size(m.host.anonymous)}, shared ${size(m.host.shared)})` : ''}`],
    ['guest free', g.free === null ? '- (no report from the guest yet)' : `${size(g.free)}, available ${size(g.available)}, used ${size(g.used)} of ${size(g.total)}`],
  ];
  const rows = m.map.map((r) => [
    `${hex(r.gpaStart)}-${hex(r.gpaEnd)}`, r.hvaStart === null ? '-' : `${hex(r.hvaStart)}-${hex(r.hvaEnd)}`, size(r.size),
    r.resident === null ? '-' : `${size(r.resident)} (${Math.round((r.resident / r.size) * 100)}%)`, r.region,
  ]);
  return `${keyValues(pairs)}\n\n${table(['GPA-RANGE', 'HVA-RANGE', 'SIZE', 'RESIDENT', 'REGION'], rows)}`;
}

/** A resize of a stopped instance: the boot memory of its next start. */
export type { StoppedMemoryResize };

/** Resize an instance's memory (`corral resize NAME --memory SIZE`): a running one's new stats, or the stored size. */
export function resizeMemory(client: ApiClient, name: string, sizeArg: string): Promise<MemoryStatsView | StoppedMemoryResize> {
  // sent as given: the daemon reads it as a size with a unit (a bare number is refused, not taken as bytes)
  return client.call<MemoryStatsView | StoppedMemoryResize>('POST', `/v1/instances/${encodeURIComponent(name)}/memory`, { size: sizeArg });
}

export function registerMemoryCommands(program: Command, client: () => ApiClient): void {
  program
    .command('memory')
    .description('memory of a running instance: configured, guest-visible, host-resident, guest-reported, and the memory map')
    .argument('<name>', 'instance name')
    .option('--json', 'print the API JSON')
    .action(async (name: string, o: { json?: boolean }) => {
      const res = await client().call<MemoryStatsView>('GET', `/v1/instances/${encodeURIComponent(name)}/memory`);
      if (o.json) printJson(res);
      else printLines(memoryDetails(res));
    });
}
