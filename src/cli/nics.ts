/** `corral nic attach|detach|list`: an instance's network interfaces. */
import { Option, type Command } from 'commander';
import { NIC_MODELS } from '../core/nics.js';
import type { Nic as NicView, NicStats } from '../api/schemas-network.js';
import type { ApiClient } from './client.js';
import { orDash, printJson, printLines, size, table } from './format.js';
import { wholeNumber } from './instances.js';
import { vhostUserOf } from './show.js';

const enc = encodeURIComponent;

function where(n: NicView): string {
  if (n.model === 'vhost-user-net') return vhostUserOf(n);
  if (n.sriov) return `VF of ${n.sriov.pf}${n.sriov.vlan ? ` vlan ${n.sriov.vlan}` : ''}`;
  const fwd = (n.forwards ?? []).map((f) => `${f.proto}:${f.hostAddr ? `${f.hostAddr}:` : ''}${f.hostPort}->${f.guestPort}`).join(' ');
  return [n.network ?? '', n.tap ? `tap ${n.tap}` : '', fwd].filter(Boolean).join(', ');
}

export function nicTable(list: NicView[]): string {
  return table(['ID', 'MODEL', 'MAC', 'QUEUES', 'IP', 'ON'], list.map((n) => [n.id, n.model, n.mac, String(n.queues), n.address ?? n.ip ?? '-', where(n)]));
}

/** `corral stats`' NIC part: each NIC's counters as the guest sees them, and who counted them. */
export function nicStatsTable(s: NicStats): string {
  if (s.nics.length === 0) return 'NICs: none';
  const src = (v: string | null): string => (v === 'guest-agent' ? 'guest agent (reported by the guest)' : v ?? 'no figures (no tap; the guest agent did not answer)');
  return `NICs (as the guest sees them)\n${table(['NIC', 'NETWORK', 'RX', 'RX PACKETS', 'TX', 'TX PACKETS', 'SOURCE'], s.nics.map((n) => [
    n.nic, n.network ?? '-', size(n.rxBytes), orDash(n.rxPackets), size(n.txBytes), orDash(n.txPackets), src(n.source),
  ]))}`;
}

export function registerNicCommands(program: Command, client: () => ApiClient): void {
  const nic = program.command('nic').alias('nics').description('network interfaces of instances');

  nic
    .command('attach')
    .description('attach a NIC (a running instance gets it hot-plugged)')
    .argument('<name>', 'instance name')
    .option('--network <net>', 'network (default: the user-mode network "default")')
    .addOption(new Option('--model <model>', 'NIC model').choices(NIC_MODELS))
    .option('--queues <n>', 'queue pairs (multi-queue virtio)', wholeNumber)
    .option('--backend <name>', 'vhost-user-net: a registered vhost-user back end (corral vhost-user list)')
    .option('--sriov <pf>', 'take a virtual function of this physical function (PCI address); implies --model sriov')
    .option('--vlan <id>', 'sriov: VLAN id', wholeNumber)
    .option('--mac <mac>', 'MAC address (default: stable, derived from the instance)')
    .option('--forward <spec>', 'user network: forward [tcp|udp:][ADDR:]HOSTPORT:GUESTPORT; repeatable', (v: string, prev: string[] = []) => [...prev, v])
    .option('--json', 'print the API JSON')
    .action(async (name: string, o: { network?: string; model?: string; queues?: number; backend?: string; sriov?: string; vlan?: number; mac?: string; forward?: string[]; json?: boolean }) => {
      const body: Record<string, unknown> = {};
      if (o.network !== undefined) body.network = o.network;
      if (o.model !== undefined) body.model = o.model;
      if (o.sriov !== undefined) Object.assign(body, { model: o.model ?? 'sriov', pf: o.sriov });
      if (o.queues !== undefined) body.queues = o.queues;
      if (o.backend !== undefined) body.backend = o.backend;
      if (o.vlan !== undefined) body.vlan = o.vlan;
      if (o.mac !== undefined) body.mac = o.mac;
      if (o.forward !== undefined) body.forwards = o.forward;
      const res = await client().call<{ nics: NicView[] }>('POST', `/v1/instances/${enc(name)}/nics`, body);
      const added = res.nics[res.nics.length - 1];
      if (o.json) printJson(res);
      else printLines(`instance ${name}: NIC ${added?.id ?? '?'} attached (${added?.model ?? ''}, ${added?.mac ?? ''}${added ? `, ${where(added)}` : ''})`);
    });

  nic
    .command('detach')
    .description('detach a NIC by id (net1) or MAC')
    .argument('<name>', 'instance name')
    .argument('<nic>', 'NIC id or MAC')
    .option('--json', 'print the API JSON')
    .action(async (name: string, id: string, o: { json?: boolean }) => {
      const res = await client().call<{ nics: NicView[] }>('DELETE', `/v1/instances/${enc(name)}/nics/${enc(id)}`);
      if (o.json) printJson(res);
      else printLines(`instance ${name}: NIC ${id} detached`);
    });

  nic
    .command('list')
    .alias('ls')
    .description("an instance's NICs")
    .argument('<name>', 'instance name')
    .option('--json', 'print the API JSON')
    .action(async (name: string, o: { json?: boolean }) => {
      const res = await client().call<{ nics: NicView[] }>('GET', `/v1/instances/${enc(name)}/nics`);
      if (o.json) printJson(res);
      else printLines(nicTable(res.nics ?? []));
    });
}
