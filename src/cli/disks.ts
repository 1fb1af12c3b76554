/** `corral disk attach|detach|list`: volumes attached to an instance as disks. */
import { Option, type Command } from 'commander';
import { DISK_BUSES } from '../core/disks.js';
import type { Disk as DiskView } from '../api/schemas-storage.js';
import type { ApiClient } from './client.js';
import { printJson, printLines, table } from './format.js';

const enc = encodeURIComponent;

export function diskTable(list: DiskView[]): string {
  return table(['VOLUME', 'BUS', 'DEVICE', 'SERIAL', 'FORMAT', 'PATH'], list.map((d) => [d.volume, d.bus, d.id, d.serial, d.format, d.path]));
}

export function registerDiskCommands(program: Command, client: () => ApiClient): void {
  const disk = program.command('disk').alias('disks').description('attach volumes to instances as disks');

  disk
    .command('attach')
    .description('attach a volume (a running instance gets it hot-plugged; ide and sata need a stopped instance, vhost-user-blk one already running with shared memory)')
    .argument('<name>', 'instance name')
    .argument('<volume>', 'volume name')
    .addOption(new Option('--bus <bus>', 'disk bus').choices(DISK_BUSES).default('virtio-blk'))
    .option('--json', 'print the API JSON')
    .action(async (name: string, volume: string, o: { bus: string; json?: boolean }) => {
      const res = await client().call<{ disks: DiskView[] }>('POST', `/v1/instances/${enc(name)}/disks`, { volume, bus: o.bus });
      if (o.json) printJson(res);
      else printLines(`instance ${name}: volume ${volume} attached (${o.bus})`);
    });

  disk
    .command('detach')
    .description('detach a volume (the volume is kept)')
    .argument('<name>', 'instance name')
    .argument('<volume>', 'volume name')
    .option('--json', 'print the API JSON')
    .action(async (name: string, volume: string, o: { json?: boolean }) => {
      const res = await client().call<{ disks: DiskView[] }>('DELETE', `/v1/instances/${enc(name)}/disks/${enc(volume)}`);
      if (o.json) printJson(res);
      else printLines(`instance ${name}: volume ${volume} detached`);
    });

  disk
    .command('list')
    .alias('ls')
    .description("an instance's attached volumes")
    .argument('<name>', 'instance name')
    .option('--json', 'print the API JSON')
    .action(async (name: string, o: { json?: boolean }) => {
      const res = await client().call<{ disks: DiskView[] }>('GET', `/v1/instances/${enc(name)}/disks`);
      if (o.json) printJson(res);
      else printLines(diskTable(res.disks ?? []));
    });
}
