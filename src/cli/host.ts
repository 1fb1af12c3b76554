/** `corral host show`: facts about the host as the daemon sees them. Unknown fields are listed too. */
import type { Command } from 'commander';
import type { ApiClient } from './client.js';
import { fields, keyValues, printJson, printLines, size } from './format.js';

export function hostDetails(host: Record<string, unknown>): string {
  return keyValues(
    fields(host, {
      'memory.total': size,
      'memory.available': size,
      acceleratorForced: (v) => (v === true ? 'yes' : v === false ? 'no' : String(v ?? '-')),
    }),
  );
}

export function registerHostCommands(program: Command, client: () => ApiClient): void {
  const host = program.command('host').description('the host this daemon runs on');
  host
    .command('show', { isDefault: true })
    .description('show the host: accelerator, QEMU, CPUs, memory')
    .option('--json', 'print the API JSON')
    .action(async (o: { json?: boolean }) => {
      const res = await client().call<Record<string, unknown>>('GET', '/v1/host');
      if (o.json) printJson(res);
      else printLines(hostDetails(res));
    });
}
