/** Network commands: create, list, show, delete. */
import { Option, type Command } from 'commander';
import type { ApiClient } from './client.js';
import type { Lease, Network, NetworkDetails } from '../api/schemas-network.js';
import { fields, hostTable, keyValues, orDash, printJson, printLines, table, warnUnreachable, type Unreachable } from './format.js';

/** A network as the API sends it: the record, and from show also the host status and the leases. */
export type NetworkJson = Network & Partial<Pick<NetworkDetails, 'status' | 'leases'>>;

const enc = encodeURIComponent;
const yesNo = (v: unknown): string => (v === true ? 'yes' : v === false ? 'no' : orDash(v as string | null));

/** The networks, one a row; a HOST column when they come from a cluster controller's union (rows carry `host`). */
export function networkTable(list: Array<NetworkJson & { host?: string }>): string {
  return hostTable(
    ['NAME', 'KIND', 'CIDR', 'GATEWAY', 'NAT', 'BRIDGE'],
    list, (n) => [n.name, n.kind, orDash(n.cidr), orDash(n.gateway), yesNo(n.nat), orDash(n.bridge)],
  );
}

export function leaseTable(list: Lease[]): string {
  return table(['MAC', 'IP', 'HOSTNAME', 'EXPIRES'], list.map((l) => [l.mac, l.ip, orDash(l.hostname), orDash(l.expires, (e) => e)]));
}

export function networkDetails(n: NetworkJson): string {
  const { leases, ...rest } = n;
  const text = keyValues(fields(rest as unknown as Record<string, unknown>, { nat: yesNo, dns: yesNo, builtin: yesNo, 'status.bridge.exists': yesNo, 'status.bridge.up': yesNo, 'status.dnsmasq.running': yesNo }));
  if (!leases) return text;
  return leases.length > 0 ? `${text}\nleases:\n${leaseTable(leases).replace(/^/gm, '  ')}` : `${text}\nleases: -`;
}

function printNetwork(n: NetworkJson, json: boolean | undefined): void {
  if (json) printJson(n);
  else printLines(networkDetails(n));
}

export function registerNetworkCommands(program: Command, client: () => ApiClient): void {
  const network = program.command('network').alias('networks').description('manage networks (default: QEMU user networking; bridge: a host bridge with DHCP)');

  network
    .command('create')
    .description('create a network: a bridge network (default) needs --cidr; --no-nat makes it isolated')
    .argument('<name>', 'network name')
    .addOption(new Option('--kind <kind>', 'network kind').choices(['user', 'bridge']).default('bridge'))
    .option('--cidr <cidr>', 'IPv4 subnet of a bridge network, e.g. 10.10.0.0/24 (the gateway is its first address)')
    .option('--no-nat', 'no NAT and no default route for guests: an isolated network')
    .option('--json', 'print the API JSON')
    .action(async (name: string, o: { kind: string; cidr?: string; nat: boolean; json?: boolean }) => {
      const body: Record<string, unknown> = { name, kind: o.kind };
      if (o.cidr !== undefined) body.cidr = o.cidr;
      if (o.nat === false) body.nat = false;
      printNetwork(await client().call<NetworkJson>('POST', '/v1/networks', body), o.json);
    });

  network
    .command('list')
    .alias('ls')
    .description('list networks')
    .option('--json', 'print the API JSON')
    .action(async (o: { json?: boolean }) => {
      const res = await client().call<{ networks: NetworkJson[]; unreachable?: Unreachable }>('GET', '/v1/networks');
      if (o.json) printJson(res);
      else {
        warnUnreachable(res, 'networks');
        printLines(networkTable(res.networks ?? []));
      }
    });

  network
    .command('show')
    .description('show a network: its bridge, dnsmasq and DHCP leases')
    .argument('<name>', 'network name')
    .option('--json', 'print the API JSON')
    .action(async (name: string, o: { json?: boolean }) => {
      printNetwork(await client().call<NetworkJson>('GET', `/v1/networks/${enc(name)}`), o.json);
    });

  network
    .command('delete')
    .alias('rm')
    .description('delete a network (refused while instances use it)')
    .argument('<name>', 'network name')
    .option('--json', 'print the API JSON')
    .action(async (name: string, o: { json?: boolean }) => {
      const res = await client().call<{ deleted?: string }>('DELETE', `/v1/networks/${enc(name)}`);
      if (o.json) printJson(res);
      else printLines(`network ${res?.deleted ?? name}: deleted`);
    });
}
