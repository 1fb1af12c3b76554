/** `corral snapshot create|list|restore|delete`: snapshots of all of an instance's disks, with its RAM when asked. */
import type { Command } from 'commander';
import type { InstanceSnapshot } from '../api/schemas-snapshots.js';
import { formatSize } from '../core/units.js';
import type { ApiClient } from './client.js';
import { printJson, printLines, table } from './format.js';

const enc = encodeURIComponent;

/** How a snapshot was taken, in words: with memory, frozen by the agent, crash-consistent, or offline. */
function kind(s: InstanceSnapshot): string {
  if (s.memory) return 'memory';
  if (s.instanceState === 'stopped') return 'disks (stopped)';
  return s.frozen ? 'disks (frozen)' : 'disks (crash-consistent)';
}

export function snapshotTable(list: InstanceSnapshot[]): string {
  return table(['NAME', 'TAKEN', 'KIND', 'VMSTATE', 'DISKS'], list.map((s) => [s.name, s.createdAt, kind(s), s.memory ? formatSize(s.vmStateSize) : '-', s.disks.join(',')]));
}

export function registerSnapshotCommands(program: Command, client: () => ApiClient): void {
  const snap = program.command('snapshot').alias('snapshots').description('snapshots of all of an instance\'s disks at one instant, with its RAM when asked');
  const base = (name: string): string => `/v1/instances/${enc(name)}/snapshots`;

  snap
    .command('create')
    .description('snapshot every disk at one instant (a running guest\'s filesystems are frozen by its agent when it answers); --memory saves the RAM and device state too')
    .argument('<name>', 'instance name')
    .argument('<snapshot>', 'snapshot name')
    .option('--memory', 'save the running guest\'s RAM and device state too: a restore resumes it where it was')
    .option('--json', 'print the API JSON')
    .action(async (name: string, snapshot: string, o: { memory?: boolean; json?: boolean }) => {
      const res = await client().call<InstanceSnapshot>('POST', base(name), { name: snapshot, ...(o.memory ? { memory: true } : {}) });
      if (o.json) printJson(res);
      else printLines(`instance ${name}: snapshot ${snapshot} taken (${kind(res)}${res.memory ? `, ${formatSize(res.vmStateSize)} of VM state` : ''})`);
    });

  snap
    .command('list')
    .alias('ls')
    .description('an instance\'s snapshots')
    .argument('<name>', 'instance name')
    .option('--json', 'print the API JSON')
    .action(async (name: string, o: { json?: boolean }) => {
      const res = await client().call<{ snapshots: InstanceSnapshot[] }>('GET', base(name));
      if (o.json) printJson(res);
      else printLines(snapshotTable(res.snapshots ?? []));
    });

  snap
    .command('restore')
    .description('restore a snapshot: a memory snapshot leaves the guest running where it was, a disk-only one leaves the instance stopped')
    .argument('<name>', 'instance name')
    .argument('<snapshot>', 'snapshot name')
    .option('--force', 'restore even though the instance runs (its present state is discarded)')
    .option('--json', 'print the API JSON')
    .action(async (name: string, snapshot: string, o: { force?: boolean; json?: boolean }) => {
      const res = await client().call<{ snapshot: InstanceSnapshot; state: string }>('POST', `${base(name)}/${enc(snapshot)}/restore`, o.force ? { force: true } : {});
      if (o.json) printJson(res);
      else printLines(`instance ${name}: snapshot ${snapshot} restored; the instance is ${res.state}`);
    });

  snap
    .command('delete')
    .alias('rm')
    .description('delete a snapshot from every disk')
    .argument('<name>', 'instance name')
    .argument('<snapshot>', 'snapshot name')
    .option('--json', 'print the API JSON')
    .action(async (name: string, snapshot: string, o: { json?: boolean }) => {
      const res = await client().call('DELETE', `${base(name)}/${enc(snapshot)}`);
      if (o.json) printJson(res);
      else printLines(`instance ${name}: snapshot ${snapshot} deleted`);
    });
}
