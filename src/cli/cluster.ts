/**
 * Cluster commands: `corral controller` and `corral agent` (run in this process), `corral cluster init` (once, on
 * a controller host, straight to PostgreSQL), `corral cluster join-token`, `corral cluster settings|set KEY VALUE`,
 * and `corral host list|show|remove|maintenance|label` against a controller (CORRAL_URL, CORRAL_TOKEN, CORRAL_TLS_CA).
 */
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import type { ApiClient } from './client.js';
import { CliError } from './client-error.js';
import { fields, keyValues, printJson, printLines, size, table } from './format.js';
import { releaseCliGuards } from './errors.js';
import { reportFormatters, withReportsShown } from './cpu-report.js';
import { formatLabels, parseLabelArgs, parseLabelChangeArgs } from '../core/labels.js';
import { parseSize } from '../core/units.js';
import { parseClusterSetting, SETTING_NAMES, type ClusterSettings } from '../core/migration-transport.js';

interface HostView {
  name: string; uuid: string; state: string; address: string; labels: Record<string, string>; maintenance: boolean; agentVersion: string | null;
  lastHeartbeat: string | null; heartbeatAgeMs: number | null;
  capacity: { cpus?: number; memory?: number } | null; allocation: { cpus?: number; memory?: number; instances?: number } | null;
}

function age(ms: number | null): string {
  if (ms === null) return 'never';
  return ms < 1000 ? 'now' : ms < 120_000 ? `${Math.round(ms / 1000)}s ago` : `${Math.round(ms / 60_000)}m ago`;
}

export function hostRows(hosts: HostView[]): string {
  return table(['NAME', 'STATE', 'CPUS', 'MEMORY', 'INSTANCES', 'HEARTBEAT', 'VERSION', 'ADDRESS', 'LABELS'], hosts.map((h) => [
    h.name, h.state,
    `${h.allocation?.cpus ?? '-'}/${h.capacity?.cpus ?? '-'}`,
    `${size(h.allocation?.memory ?? null)}/${size(h.capacity?.memory ?? null)}`,
    String(h.allocation?.instances ?? '-'), age(h.heartbeatAgeMs), h.agentVersion ?? '-', h.address || '-', formatLabels(h.labels),
  ]));
}

/** `corral host list|show NAME|remove NAME|maintenance NAME on|off|label NAME KEY=VALUE KEY-`, under the existing `host` command. */
export function registerClusterHostCommands(host: Command, client: () => ApiClient): void {
  host
    .command('list')
    .description('the hosts of the cluster (against a controller): state, pool use, last heartbeat')
    .option('--json', 'print the API JSON')
    .action(async (o: { json?: boolean }) => {
      const res = await client().call<{ hosts: HostView[] }>('GET', '/v1/hosts');
      if (o.json) printJson(res.hosts);
      else printLines(res.hosts.length === 0 ? 'no hosts: join one with corral agent --join URL --token TOKEN' : hostRows(res.hosts));
    });
  host
    .command('remove <name>')
    .description('remove a host from the cluster: its certificate is revoked, its agent is refused from then on')
    .option('--json', 'print the API JSON')
    .action(async (name: string, o: { json?: boolean }) => {
      const res = await client().call<{ removed: string; revokedSerial: string }>('DELETE', `/v1/hosts/${encodeURIComponent(name)}`);
      if (o.json) printJson(res);
      else printLines(`host ${res.removed} removed; its certificate (serial ${res.revokedSerial}) is revoked`);
    });
  host
    .command('label <name> <changes...>')
    .description('set labels of a host (KEY=VALUE, overwriting) or remove them (KEY-); creates ask for them with --host-label')
    .option('--json', 'print the API JSON')
    .action(async (name: string, args: string[], o: { json?: boolean }) => {
      const labels = parseLabelChangeArgs('labels', args);
      const res = await client().call<HostView>('PATCH', `/v1/hosts/${encodeURIComponent(name)}`, { labels });
      if (o.json) printJson(res);
      else printLines(`host ${res.name}: labels ${formatLabels(res.labels)}`);
    });
  host
    .command('maintenance <name> <on|off>')
    .description('take a host out of placement (on) or put it back (off)')
    .option('--json', 'print the API JSON')
    .action(async (name: string, onOff: string, o: { json?: boolean }) => {
      if (onOff !== 'on' && onOff !== 'off') throw new CliError(`maintenance is "on" or "off", not "${onOff}"`, 'USAGE');
      const res = await client().call<HostView>('POST', `/v1/hosts/${encodeURIComponent(name)}/maintenance`, { on: onOff === 'on' });
      if (o.json) printJson(res);
      else printLines(`host ${res.name}: ${res.state}`);
    });
}

interface HostEvent { id?: number; time: string; type: string; instance: string | null; data: Record<string, unknown> }

/** What an event of a host says, in one line: its fields (not the host, shown above), then why, what follows, its output. */
export function eventWhat(data: Record<string, unknown>): string {
  const { host: _host, reason, then, output, ...rest } = data;
  const parts = Object.entries(rest).filter(([, v]) => v !== null && v !== undefined)
    .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`);
  let what = parts.join(' ');
  if (typeof reason === 'string') what = what ? `${what}: ${reason}` : reason;
  if (typeof then === 'string') what += `; ${then}`;
  if (typeof output === 'string' && output !== '') what += ` (output: ${output.replace(/\s+/g, ' ')})`;
  return what || '-';
}

/** `corral host show NAME` against a controller: the host, then its recent events (`events` in JSON). */
export async function showClusterHost(client: ApiClient, name: string, json: boolean): Promise<void> {
  const path = `/v1/hosts/${encodeURIComponent(name)}`;
  const res = await client.call<Record<string, unknown>>('GET', path);
  const { events } = await client.call<{ events: HostEvent[] }>('GET', `${path}/events`);
  if (json) {
    printJson({ ...res, events });
    return;
  }
  const recent = events.length === 0 ? 'events: none recorded'
    : `events (the last ${events.length}):\n${table(['TIME', 'TYPE', 'INSTANCE', 'WHAT'], events.map((e) => [e.time, e.type, e.instance ?? '-', eventWhat(e.data)]))}`;
  const shown = fields(withReportsShown(res), { labels: (v) => formatLabels(v as Record<string, string>), 'capacity.memory': size, 'allocation.memory': size, ...reportFormatters });
  printLines(`${keyValues(shown)}\n\n${recent}`);
}

function version(): string {
  try {
    return (JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version?: string }).version ?? '0.0.0';
  } catch {
    return '0.0.0';
  }
}

export function registerClusterCommands(program: Command, client: () => ApiClient): void {
  program
    .command('controller')
    .description('run a cluster controller in this process: the API of many hosts, over PostgreSQL')
    .requiredOption('--database <url>', 'PostgreSQL, e.g. postgres://corral@db:5432/corral')
    .requiredOption('--listen <host:port>', 'the HTTPS API for people and agents')
    .option('--fence-command <path>', 'run for a host lost while holding HA instances (env CORRAL_FENCE_HOST, CORRAL_FENCE_ADDRESS); exit 0 says it is off, so they restart elsewhere at once (default $CORRAL_FENCE_COMMAND)')
    .option('--auto-rebalance', 'live-migrate a guest off a host whose memory pressure ballooning cannot relieve, once per host per CORRAL_AUTO_REBALANCE_COOLDOWN_S (300) (default: $CORRAL_AUTO_REBALANCE=1)')
    .action(async (o: { database: string; listen: string; fenceCommand?: string; autoRebalance?: boolean }) => {
      releaseCliGuards();
      const { runController } = await import('../daemon/controller.js');
      await runController({ database: o.database, listen: o.listen, ...(o.fenceCommand !== undefined ? { fenceCommand: o.fenceCommand } : {}), ...(o.autoRebalance ? { autoRebalance: true } : {}) });
      setTimeout(() => process.exit(), 1000).unref();
    });

  const cluster = program.command('cluster').description('a cluster of hosts: set up, join tokens');
  cluster
    .command('init')
    .description('make a cluster in PostgreSQL (once, on a controller host): its CA and a first join token')
    .requiredOption('--database <url>', 'PostgreSQL, e.g. postgres://corral@db:5432/corral')
    .option('--ttl <duration>', 'how long the join token may be used (default 1h, at most 7d)')
    .option('--json', 'print JSON')
    .action(async (o: { database: string; ttl?: string; json?: boolean }) => {
      const { initCluster } = await import('../cluster/init.js');
      const { joinTtlSeconds } = await import('../cluster/controller-api.js');
      const res = await initCluster(o.database, joinTtlSeconds(o.ttl));
      if (o.json) printJson({ caSha256: res.caSha256, joinToken: res.joinToken, expiresAt: res.expiresAt });
      else {
        printLines([
          `cluster made; CA SHA-256 ${res.caSha256}`,
          'start controllers with: corral controller --database URL --listen HOST:PORT',
          `join a host (once, until ${res.expiresAt}) with: corral agent --join https://CONTROLLER:PORT --token ${res.joinToken}`,
        ].join('\n'));
      }
    });
  cluster
    .command('settings')
    .description('the cluster\'s settings (against a controller): migration-tls')
    .option('--json', 'print the API JSON')
    .action(async (o: { json?: boolean }) => {
      const res = await client().call<ClusterSettings>('GET', '/v1/cluster/settings');
      if (o.json) printJson(res);
      else printLines(settingLines(res));
    });
  cluster
    .command('set <key> <value>')
    .description('change a cluster setting (against a controller): migration-tls on|off (off: the network between the hosts is trusted, live migrations go in plain TCP)')
    .option('--json', 'print the API JSON')
    .action(async (key: string, value: string, o: { json?: boolean }) => {
      let change: Partial<ClusterSettings>;
      try {
        change = parseClusterSetting(key, value);
      } catch (e) {
        throw new CliError((e as Error).message, 'USAGE');
      }
      const res = await client().call<ClusterSettings>('PATCH', '/v1/cluster/settings', change);
      if (o.json) printJson(res);
      else printLines(settingLines(res));
    });
  cluster
    .command('join-token')
    .description('make a join token (against a controller): one host joins with it, once')
    .option('--ttl <duration>', 'how long it may be used (default 1h, at most 7d)')
    .option('--json', 'print the API JSON')
    .action(async (o: { ttl?: string; json?: boolean }) => {
      const res = await client().call<{ token: string; expiresAt: string }>('POST', '/v1/cluster/join-tokens', o.ttl ? { ttl: o.ttl } : {});
      if (o.json) printJson(res);
      else printLines(`${res.token}\n(valid once, until ${res.expiresAt}: corral agent --join https://CONTROLLER:PORT --token TOKEN)`);
    });
}

/** `migration-tls  on`, a line per setting, by its command-line name. */
export function settingLines(s: ClusterSettings): string {
  return table(['SETTING', 'VALUE'], Object.entries(SETTING_NAMES).map(([name, field]) => [name, s[field] ? 'on' : 'off']));
}

/** `corral agent`: the daemon, as a host of a cluster. */
export function registerAgentCommand(program: Command, addDaemonOptions: (c: Command) => Command): void {
  addDaemonOptions(program
    .command('agent')
    .description('run this host as a cluster agent: the daemon, reporting to the cluster\'s controllers')
    .option('--join <url>', 'join the cluster through this controller (https://HOST:PORT) first, with --token')
    .option('--token <token>', 'the join token (corral cluster init or corral cluster join-token)')
    .option('--name <name>', 'this host\'s name in the cluster (default: the host name)')
    .option('--label <key=value>', 'with --join: a label the host joins with (later: corral host label); repeatable', (v: string, prev: string[] = []) => [...prev, v])
    .option('--simulate <hosts>', 'stand in for this many hosts (a fake hypervisor: no QEMU runs), to measure controllers; with --join and --controller-token', Number)
    .option('--controller-token <token>', 'with --simulate: the controller\'s token, to ask it for join tokens (default $CORRAL_TOKEN)')
    .option('--controller-ca <file>', 'with --simulate: the cluster CA the controller is checked against (default $CORRAL_TLS_CA)')
    .option('--name-prefix <prefix>', 'with --simulate: hosts are PREFIX-001, PREFIX-002, ... (default sim)')
    .option('--base-port <port>', 'with --simulate: host i serves its API on 127.0.0.1:(PORT+i) (default 17000)', Number)
    .option('--cpus <n>', 'with --simulate: each host\'s CPUs (default 32)', Number)
    .option('--memory <size>', 'with --simulate: each host\'s memory (default 128G)'))
    .action(async (o: Record<string, unknown>) => {
      if (o.simulate !== undefined) return simulate(o);
      for (const k of ['controllerToken', 'controllerCa', 'namePrefix', 'basePort', 'cpus', 'memory']) {
        if (o[k] !== undefined) throw new CliError(`--${k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)} goes with --simulate`, 'USAGE');
      }
      if ((o.join === undefined) !== (o.token === undefined)) throw new CliError('--join and --token go together', 'USAGE');
      if (o.label !== undefined && o.join === undefined) throw new CliError('--label goes with --join (a host joins with its labels); change a host\'s labels with corral host label', 'USAGE');
      const labels = o.label === undefined ? undefined : parseLabelArgs('label', o.label as string[]);
      releaseCliGuards();
      const { runDaemon } = await import('../daemon/main.js');
      await runDaemon({
        ...daemonOptionsFrom(o),
        agent: { ...(o.join ? { join: { url: String(o.join), token: String(o.token), ...(labels ? { labels } : {}) } } : {}), ...(o.name ? { name: String(o.name) } : {}), version: version() },
      });
      setTimeout(() => process.exit(), 1000).unref();
    });
}

/** `corral agent --simulate N --join URL --controller-token TOKEN`: src/daemon/simulate.ts. */
async function simulate(o: Record<string, unknown>): Promise<void> {
  if (o.join === undefined) throw new CliError('--simulate needs --join https://CONTROLLER:PORT', 'USAGE');
  if (o.token !== undefined || o.name !== undefined || o.listen !== undefined || o.label !== undefined) throw new CliError('--simulate makes its own join tokens, names and listeners, with no labels: no --token, --name, --listen or --label', 'USAGE');
  const token = o.controllerToken === undefined ? process.env.CORRAL_TOKEN : String(o.controllerToken);
  if (!token) throw new CliError('--simulate needs the controller\'s token (--controller-token or $CORRAL_TOKEN) to make join tokens', 'USAGE');
  const caFile = o.controllerCa === undefined ? process.env.CORRAL_TLS_CA : String(o.controllerCa);
  if (!caFile) throw new CliError('--simulate needs the cluster CA (--controller-ca FILE or $CORRAL_TLS_CA: the controller data dir\'s cluster-ca.crt)', 'USAGE');
  let ca: string;
  try {
    ca = readFileSync(caFile, 'utf8');
  } catch (e) {
    throw new CliError(`--controller-ca: cannot read ${caFile}: ${(e as Error).message}`, 'USAGE');
  }
  const memory = o.memory === undefined ? undefined : parseSize('memory', String(o.memory));
  releaseCliGuards();
  const { runSimulator } = await import('../daemon/simulate.js');
  await runSimulator({
    hosts: o.simulate as number, join: String(o.join), controllerToken: token, controllerCa: ca, version: version(),
    ...(o.namePrefix !== undefined ? { namePrefix: String(o.namePrefix) } : {}),
    ...(o.basePort !== undefined ? { basePort: o.basePort as number } : {}),
    ...(o.cpus !== undefined ? { cpus: o.cpus as number } : {}),
    ...(memory !== undefined ? { memory } : {}),
  });
  setTimeout(() => process.exit(), 1000).unref();
}

/** The daemon's options from commander's parse (shared by `corral daemon` and `corral agent`). */
export function daemonOptionsFrom(o: Record<string, unknown>) {
  const s = (k: string): string | undefined => (o[k] === undefined ? undefined : String(o[k]));
  return {
    listen: s('listen'), tlsCert: s('tlsCert'), tlsKey: s('tlsKey'), accel: o.accel as 'kvm' | 'tcg' | undefined, sharedPool: s('sharedPool'), metricsPublic: o.metricsPublic === true,
    pool: { cpuRatio: o.cpuRatio as number | undefined, memoryRatio: o.memoryRatio as number | undefined, reservedMemory: s('reservedMemory') },
  };
}
