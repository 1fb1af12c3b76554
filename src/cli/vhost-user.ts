/** `corral vhost-user add|list|show|remove`: the vhost-user back ends vhost-user-net NICs may use. */
import type { Command } from 'commander';
import type { VhostUserBackend } from '../api/schemas-network.js';
import type { ApiClient } from './client.js';
import { printJson, printLines, table } from './format.js';

const enc = encodeURIComponent;

export function vhostUserTable(list: VhostUserBackend[]): string {
  return table(['NAME', 'SOCKET', 'LISTENING', 'USED BY'], list.map((b) => [b.name, b.socket, b.listening ? 'yes' : 'no', b.usedBy.length > 0 ? b.usedBy.join(' ') : '-']));
}

export function registerVhostUserCommands(program: Command, client: () => ApiClient): void {
  const vu = program.command('vhost-user').description('vhost-user back ends (DPDK/OVS sockets) that vhost-user-net NICs may use; registered by an admin');

  vu
    .command('add')
    .description('register a back end\'s unix socket under a name (it need not exist yet)')
    .argument('<name>', 'back end name')
    .argument('<socket>', 'absolute path of the back end\'s unix socket')
    .option('--json', 'print the API JSON')
    .action(async (name: string, socket: string, o: { json?: boolean }) => {
      const b = await client().call<VhostUserBackend>('POST', '/v1/vhost-user', { name, socket });
      if (o.json) printJson(b);
      else printLines(`vhost-user back end ${b.name}: ${b.socket}${b.listening ? '' : ' (nothing listens there yet)'}`);
    });

  vu
    .command('list')
    .alias('ls')
    .description('list the registered back ends')
    .option('--json', 'print the API JSON')
    .action(async (o: { json?: boolean }) => {
      const res = await client().call<{ backends: VhostUserBackend[] }>('GET', '/v1/vhost-user');
      if (o.json) printJson(res);
      else printLines(vhostUserTable(res.backends ?? []));
    });

  vu
    .command('show')
    .description('show a back end: its socket, whether something listens, the NICs on it')
    .argument('<name>', 'back end name')
    .option('--json', 'print the API JSON')
    .action(async (name: string, o: { json?: boolean }) => {
      const b = await client().call<VhostUserBackend>('GET', `/v1/vhost-user/${enc(name)}`);
      if (o.json) printJson(b);
      else printLines(vhostUserTable([b]));
    });

  vu
    .command('remove')
    .alias('rm')
    .description('remove a back end (refused while a NIC uses it)')
    .argument('<name>', 'back end name')
    .option('--json', 'print the API JSON')
    .action(async (name: string, o: { json?: boolean }) => {
      const res = await client().call<{ deleted?: string }>('DELETE', `/v1/vhost-user/${enc(name)}`);
      if (o.json) printJson(res);
      else printLines(`vhost-user back end ${res?.deleted ?? name}: removed`);
    });
}
