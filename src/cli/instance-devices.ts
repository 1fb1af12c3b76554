/** `corral devices NAME`: each device of an instance, its approach and its data path in one line. */
import type { Command } from 'commander';
import type { DevicePath } from '../api/schemas-instances.js';
import type { ApiClient } from './client.js';
import { printJson, printLines, table } from './format.js';

export function registerInstanceDeviceCommands(program: Command, client: () => ApiClient): void {
  program
    .command('devices')
    .description("an instance's disks, NICs and other devices: approach (emulated, paravirtual, vhost-kernel, vhost-user, passthrough, sriov-vf), QEMU device, data path")
    .argument('<name>', 'instance name')
    .option('--json', 'print the API JSON')
    .action(async (name: string, o: { json?: boolean }) => {
      const r = await client().call<{ devices: DevicePath[] }>('GET', `/v1/instances/${encodeURIComponent(name)}/devices`);
      if (o.json) printJson(r);
      else printLines(table(['KIND', 'ID', 'APPROACH', 'QEMU DEVICE', 'DATA PATH'], r.devices.map((d) => [d.kind, d.id, d.approach, d.qemuDevice, d.dataPath])));
    });
}
