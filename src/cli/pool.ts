/** `corral pool show`: the resource pool: capacity, allocated, free (`corral pool rebalance` is in moves.ts). */
import type { Command } from 'commander';
import type { Pool as PoolView } from '../api/schemas-instances.js';
import type { ApiClient } from './client.js';
import { printJson, printLines, size, table } from './format.js';
import { registerRebalanceCommand } from './moves.js';
import { baselineLines } from './cpu-report.js';

interface ClusterPoolHost {
  name: string; state: string; capacity: { cpus: number; memory: number }; allocated: { cpus: number; memory: number; instances: number };
  cpu?: { accel: string; best: string | null } | null;
}

/** A controller's pool: the sums of its `up` hosts, then each host. */
function clusterPoolDetails(p: PoolView & { hosts: ClusterPoolHost[]; cpuBaselines?: Parameters<typeof baselineLines>[0] }): string {
  return [
    table(['RESOURCE', 'CAPACITY', 'ALLOCATED', 'FREE'], [
      ['vCPUs', String(p.capacity.cpus), String(p.allocated.cpus), String(p.free.cpus)],
      ['memory', size(p.capacity.memory), size(p.allocated.memory), size(p.free.memory)],
    ]),
    `instances placed: ${p.allocated.instances} (capacity counts the hosts that are up)`,
    '',
    table(['HOST', 'STATE', 'VCPUS', 'MEMORY', 'INSTANCES', 'CPU'], p.hosts.map((h) => [
      h.name, h.state, `${h.allocated.cpus}/${h.capacity.cpus}`, `${size(h.allocated.memory)}/${size(h.capacity.memory)}`, String(h.allocated.instances),
      h.cpu ? `${h.cpu.accel}, up to ${h.cpu.best ?? '-'}` : '-',
    ])),
    '',
    ...baselineLines(p.cpuBaselines),
  ].join('\n');
}

export function poolDetails(p: PoolView | (PoolView & { hosts: ClusterPoolHost[] })): string {
  if ('hosts' in p && Array.isArray(p.hosts)) return clusterPoolDetails(p);
  return [
    table(['RESOURCE', 'CAPACITY', 'ALLOCATED', 'FREE'], [
      ['vCPUs', String(p.capacity.cpus), String(p.allocated.cpus), String(p.free.cpus)],
      ['memory', size(p.capacity.memory), size(p.allocated.memory), size(p.free.memory)],
    ]),
    `instances holding resources: ${p.allocated.instances}`,
    `ratios: cpu ${p.ratios.cpu}, memory ${p.ratios.memory}; memory reserved for the host: ${size(p.reservedMemory)}`,
  ].join('\n');
}

export function registerPoolCommands(program: Command, client: () => ApiClient): void {
  const pool = program.command('pool').description('the resource pool of this host');
  pool
    .command('show', { isDefault: true })
    .description('capacity (host x ratio, less the reserve), what running instances hold, and what is free')
    .option('--json', 'print the API JSON')
    .action(async (o: { json?: boolean }) => {
      const res = await client().call<PoolView>('GET', '/v1/pool');
      if (o.json) printJson(res);
      else printLines(poolDetails(res));
    });
  registerRebalanceCommand(pool, client);
}
