/** Instance commands: create, start/stop/restart/pause/resume/kill, delete, list, show. */
import { DISK_BUSES, isVhostUser } from '../core/disks.js';
import { parseLabelArgs } from '../core/labels.js';
import { NIC_MODELS } from '../core/nics.js';
import { readFile } from 'node:fs/promises';
import { DISPLAYS } from '../core/spec-schema.js';
import { InvalidArgumentError, Option, type Command } from 'commander';
import { ApiClient, CliError } from './client.js';
import { duration, orDash, printJson, printLines, size, table } from './format.js';
import { instanceDetails, type Instance, type ShownMemory, type ShownNic } from './show.js';

export type { Instance };

/** A strict decimal number parser for commander options (1.5, 0.25; rejects "1.5x"). */
export function decimalNumber(value: string): number {
  if (!/^\s*\d+(\.\d+)?\s*$/.test(value)) throw new InvalidArgumentError('expected a number such as 1.5.');
  return Number(value);
}

/** A strict whole number parser for commander options (rejects "two", "1.5", "3x"). */
export function wholeNumber(value: string): number {
  if (!/^\s*\d+\s*$/.test(value)) throw new InvalidArgumentError('expected a whole number.');
  const n = Number(value);
  if (!Number.isSafeInteger(n)) throw new InvalidArgumentError('number too large.');
  return n;
}

const enc = encodeURIComponent;

interface CloudInitOptions { sshKey?: string[]; userData?: string; networkConfig?: string; hostname?: string }

/** A file's text, `-` for stdin (read once: a second `-` gets nothing). */
async function readText(file: string, what: string): Promise<string> {
  try {
    if (file !== '-') return await readFile(file, 'utf8');
    const chunks: Buffer[] = [];
    for await (const c of process.stdin) chunks.push(c as Buffer);
    return Buffer.concat(chunks).toString('utf8');
  } catch (e) {
    throw new CliError(`${what} ${file}: ${(e as Error).message}`);
  }
}

/**
 * The create request's cloud-init fields from --ssh-key (each line of each file that is not blank or a # comment
 * is a key: an authorized_keys file works too), --user-data, --network-config, --hostname. The daemon checks them.
 */
export async function cloudInitFields(o: CloudInitOptions): Promise<Record<string, unknown>> {
  const body: Record<string, unknown> = {};
  if (o.sshKey !== undefined) {
    const keys: string[] = [];
    for (const f of o.sshKey) {
      const lines = (await readText(f, '--ssh-key')).split('\n').map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#'));
      if (lines.length === 0) throw new CliError(`--ssh-key ${f}: no key in it`);
      keys.push(...lines);
    }
    body.sshKeys = keys;
  }
  if (o.userData !== undefined) body.userData = await readText(o.userData, '--user-data');
  if (o.networkConfig !== undefined) body.networkConfig = await readText(o.networkConfig, '--network-config');
  if (o.hostname !== undefined) body.hostname = o.hostname;
  return body;
}

/** `web1: running (pid 1234)`. */
export function statusLine(i: Instance): string {
  const extra: string[] = [];
  if (i.pid !== null && i.pid !== undefined) extra.push(`pid ${i.pid}`);
  if ((i.state === 'error' || i.state === 'crashed') && i.lastError) extra.push(`last error: ${i.lastError}`);
  return `${i.name}: ${i.state}${extra.length ? ` (${extra.join(', ')})` : ''}`;
}

/** The instances, one a row; a HOST column when they come from a cluster controller (rows carry `host`). */
export function instanceTable(list: Array<Instance & { host?: string }>): string {
  const cluster = list.some((i) => typeof i.host === 'string');
  const row = (i: Instance & { host?: string }): string[] => [i.name, i.state, orDash(i.cpus), size(i.memory), orDash(i.accel), orDash(i.pid), duration(i.uptime), size(i.rss), orDash(i.image)];
  if (cluster) return table(['NAME', 'HOST', 'STATE', 'CPUS', 'MEMORY', 'ACCEL', 'PID', 'UPTIME', 'RSS', 'IMAGE'], list.map((i) => { const r = row(i); r.splice(1, 0, i.host ?? '-'); return r; }));
  return table(['NAME', 'STATE', 'CPUS', 'MEMORY', 'ACCEL', 'PID', 'UPTIME', 'RSS', 'IMAGE'], list.map(row));
}

interface JsonOpt { json?: boolean }

/** How a stop went, when it was not the plain ACPI power-off. */
export function stopNote(r: { killed?: boolean; stoppedBy?: string | null }, timeout: number): string {
  if (r.killed === true || r.stoppedBy === 'kill') return ` (killed: the guest did not power off within ${timeout}s)`;
  if (r.stoppedBy === 'agent') return ' (through the guest agent: the guest ignored the ACPI power button)';
  return '';
}

export function registerInstanceCommands(program: Command, client: () => ApiClient): void {
  program
    .command('create')
    .description('create an instance from an image')
    .argument('<name>', 'instance name (a-z, 0-9 and -)')
    .requiredOption('--image <image>', 'image to boot (see: corral image list)')
    .option('--cpus <n>', 'virtual CPUs', wholeNumber)
    .option('--memory <size>', 'memory, e.g. 512M or 2G')
    .option('--disk <size>', 'root disk size, e.g. 10G')
    .addOption(new Option('--firmware <kind>', 'firmware').choices(['bios', 'uefi']))
    .option('--network <net>', 'network of the first NIC: a network name, "default" (user-mode NAT, the default) or "none"')
    .addOption(new Option('--nic-model <model>', 'model of the first NIC').choices(NIC_MODELS.filter((m) => m !== 'vhost-user-net' && m !== 'sriov')))
    .option('--forward <spec>', 'user network: forward [tcp|udp:][ADDR:]HOSTPORT:GUESTPORT to the guest; repeatable', (v: string, prev: string[] = []) => [...prev, v])
    .addOption(new Option('--root-bus <bus>', 'bus of the root disk').choices(DISK_BUSES.filter((b) => !isVhostUser(b))))
    .addOption(new Option('--accel <kind>', 'accelerator').choices(['auto', 'kvm', 'tcg']))
    .addOption(new Option('--display <kind>', 'vnc: a VGA screen, the web console\'s graphical console (VNC on a unix socket, never a TCP port); none (default): no display').choices([...DISPLAYS]))
    .option('--sockets <n>', 'CPU sockets', wholeNumber)
    .option('--cores <n>', 'cores per socket', wholeNumber)
    .option('--threads <n>', 'threads per core', wholeNumber)
    .option('--max-cpus <n>', 'vCPUs the instance can grow to by hotplug (corral resize --cpus)', wholeNumber)
    .option('--cpu-model <model>', 'QEMU CPU model: auto (host under KVM, max under TCG), host, max, or a named model')
    .option('--pin <cpus>', 'host CPUs for the vCPU threads, e.g. 2-3 (one per vCPU pins one-to-one)')
    .option('--cpu-weight <n>', 'cgroup CPU weight 1..10000 (100 = default)', wholeNumber)
    .option('--cpu-limit <cpus>', 'cgroup CPU cap in CPUs, e.g. 1.5', decimalNumber)
    .option('--max-memory <size>', 'memory the instance can grow to by hotplug, e.g. 4G')
    .option('--memory-limit <size>', 'cgroup memory limit of the whole QEMU process, e.g. 1G')
    .option('--prealloc', 'allocate all guest memory at start')
    .addOption(new Option('--hugepages <size>', 'back guest memory with hugepages').choices(['2M', '1G']))
    .option('--no-balloon', 'no virtio-balloon device')
    .option('--no-agent', 'no channel for a guest agent (qemu-guest-agent): no exec, no guest addresses in show, no agent shutdown')
    .option('--volume <name[:bus]>', 'attach a volume as a disk (bus: virtio-blk (default), virtio-scsi, ide, sata or vhost-user-blk); repeatable',
      (v: string, prev: string[] = []) => [...prev, v])
    .option('--ssh-key <file>', 'cloud-init: authorize the OpenSSH public keys in FILE (- for stdin) for the image\'s default user; repeatable',
      (v: string, prev: string[] = []) => [...prev, v])
    .option('--user-data <file>', 'cloud-init: user-data from FILE (#cloud-config, a #! script, ...)')
    .option('--network-config <file>', 'cloud-init: network-config (version 1 or 2) from FILE')
    .option('--hostname <name>', 'cloud-init: the guest\'s hostname (default: the instance name)')
    .option('--start', 'start it once created')
    .option('--host <host>', 'cluster (against a controller): create it on this host')
    .option('--group <name>', 'cluster: a group of instances (with --anti-affinity, on different hosts)')
    .option('--anti-affinity', 'cluster: keep the members of --group on different hosts')
    .option('--host-label <key=value>', 'cluster: only on a host that carries this label (corral host label); repeatable', (v: string, prev: string[] = []) => [...prev, v])
    .addOption(new Option('--pool <pool>', 'storage pool of the root disk: local (default) or shared (the hosts\' --shared-pool)').choices(['local', 'shared']))
    .option('--ha', 'high availability (with --pool shared): started on another host when its host is lost')
    .option('--json', 'print the API JSON')
    .action(async (name: string, o: { image: string; start?: boolean; json?: boolean; balloon?: boolean; agent?: boolean; volume?: string[]; forward?: string[]; hostLabel?: string[] } & CloudInitOptions & Record<string, unknown>) => {
      const body: Record<string, unknown> = { name, image: o.image };
      const keys = ['cpus', 'memory', 'disk', 'firmware', 'network', 'nicModel', 'rootBus', 'accel', 'sockets', 'cores', 'threads', 'maxCpus', 'cpuModel', 'pin',
        'cpuWeight', 'cpuLimit', 'maxMemory', 'memoryLimit', 'prealloc', 'hugepages', 'host', 'group', 'antiAffinity', 'pool', 'ha', 'display'] as const;
      for (const k of keys) if (o[k] !== undefined) body[k] = o[k];
      if (o.balloon === false) body.balloon = false;
      if (o.agent === false) body.agent = false;
      if (o.forward !== undefined) body.forwards = o.forward;
      Object.assign(body, await cloudInitFields(o));
      if (o.hostLabel !== undefined) body.hostLabels = parseLabelArgs('hostLabels', o.hostLabel);
      const volumes = o.volume ?? [];
      if (o.start && volumes.length === 0) body.start = true;
      let inst = await client().call<Instance>('POST', '/v1/instances', body);
      if (volumes.length > 0) {
        // Attach each volume to the stopped instance, then start it; a failure leaves no instance behind.
        const base = `/v1/instances/${encodeURIComponent(name)}`;
        try {
          for (const v of volumes) {
            const i = v.indexOf(':');
            await client().call('POST', `${base}/disks`, i < 0 ? { volume: v } : { volume: v.slice(0, i), bus: v.slice(i + 1) });
          }
        } catch (e) {
          await client().call('DELETE', base).catch(() => undefined);
          throw e;
        }
        inst = o.start ? await client().call<Instance>('POST', `${base}/start`, {}) : await client().call<Instance>('GET', base);
      }
      if (o.json) printJson(inst);
      else printLines(`created ${statusLine(inst)}`);
    });

  const actions: Array<[string, string]> = [
    ['start', 'start a stopped instance'],
    ['stop', 'power off (ACPI; after half of --timeout the guest agent\'s shutdown; kill at --timeout)'],
    ['restart', 'stop, then start again'],
    ['pause', 'pause the virtual CPUs'],
    ['resume', 'resume a paused instance'],
    ['kill', 'kill the QEMU process at once'],
  ];
  for (const [action, description] of actions) {
    const cmd = program.command(action).description(description).argument('<name>', 'instance name').option('--json', 'print the API JSON');
    const timed = action === 'stop' || action === 'restart';
    if (timed) cmd.option('--timeout <seconds>', 'seconds to wait for the guest to power off', wholeNumber, 30);
    cmd.action(async (name: string, o: JsonOpt & { timeout?: number }) => {
      const body = timed && o.timeout !== undefined ? { timeout: o.timeout } : {};
      // stop and restart say how the guest went down: ACPI, the guest agent (ACPI ignored), or killed at the timeout
      const inst = await client().call<Instance & { killed?: boolean; stoppedBy?: string | null }>('POST', `/v1/instances/${enc(name)}/${action}`, body);
      if (o.json) printJson(inst);
      else printLines(`${statusLine(inst)}${stopNote(inst, o.timeout ?? 30)}`);
    });
  }

  program
    .command('delete')
    .description('delete an instance and its disk')
    .argument('<name>', 'instance name')
    .option('--force', 'kill it first if it is running')
    .option('--json', 'print the API JSON')
    .action(async (name: string, o: JsonOpt & { force?: boolean }) => {
      const res = await client().call<{ deleted: string }>('DELETE', `/v1/instances/${enc(name)}${o.force ? '?force=true' : ''}`).catch((e: unknown) => {
        // refused because it runs: say how to do it anyway
        if (!o.force && e instanceof CliError && e.code === 'INVALID_STATE') throw new CliError(`${e.message} (use --force to kill and delete it)`, e.code, e.details);
        throw e;
      });
      if (o.json) printJson(res);
      else printLines(`${res?.deleted ?? name}: deleted`);
    });

  program
    .command('list')
    .alias('ls')
    .description('list instances')
    .option('--json', 'print the API JSON')
    .action(async (o: JsonOpt) => {
      const res = await client().call<{ instances: Instance[] }>('GET', '/v1/instances');
      if (o.json) printJson(res);
      else printLines(instanceTable(res.instances ?? []));
    });

  program
    .command('show')
    .description('show every field of an instance')
    .argument('<name>', 'instance name')
    .option('--json', 'print the API JSON')
    .action(async (name: string, o: JsonOpt) => {
      const inst = await client().call<Instance>('GET', `/v1/instances/${enc(name)}`);
      if (o.json) return printJson(inst);
      // what runs now: addresses from DHCP leases, the memory the guest sees; best effort
      const nics = await client().call<{ nics: ShownNic[] }>('GET', `/v1/instances/${enc(name)}/nics`).then((r) => r.nics, () => null);
      const mem = inst.pid === null ? null : await client().call<ShownMemory>('GET', `/v1/instances/${enc(name)}/memory`).catch(() => null);
      printLines(instanceDetails(inst, nics, mem));
    });
}
