/**
 * `corral show NAME`: the whole configuration of an instance, stopped or not (topology, limits, pinning, disks
 * with their buses, NICs with MACs, networks and forwards, host devices, firmware), what runs now (pid,
 * accelerator, uptime, resident memory, addresses, memory visible to the guest, the guest's OS and addresses from its
 * guest agent), and why its last QEMU ended.
 */
import type { Instance as InstanceJson, InstanceSpec } from '../api/schemas-instances.js';
import { formatCpuList } from '../core/cpulist.js';
import { guestAddresses } from '../core/guest-agent.js';
import { duration, keyValues, orDash, size } from './format.js';

/** The instance as the API shows it. Fields are read defensively: the CLI prints what it gets. */
export type Instance = InstanceJson & { [extra: string]: unknown };

/** A NIC as `GET /v1/instances/NAME/nics` shows it (ip from DHCP leases on bridge networks). */
export interface ShownNic {
  id: string;
  ip?: string | null;
}

/** What the memory route says of a running guest (only what show prints). */
export interface ShownMemory {
  guest?: { visible?: number | null };
}


function cpus(i: Instance, s: Partial<InstanceSpec>): string {
  const t = s.topology;
  const parts = [`${i.cpus}${s.maxCpus && s.maxCpus !== i.cpus ? ` of ${s.maxCpus} max` : ''}`];
  if (t) parts.push(`${t.sockets} socket(s) x ${t.cores} core(s) x ${t.threads} thread(s)`);
  parts.push(`model ${s.cpuModel ?? 'auto'}`);
  if (s.pin) parts.push(`pinned to ${formatCpuList(s.pin)}`);
  if (s.cpuWeight) parts.push(`weight ${s.cpuWeight}`);
  if (s.cpuLimit) parts.push(`limit ${s.cpuLimit} CPUs`);
  return parts.join(', ');
}

function memory(i: Instance, s: Partial<InstanceSpec>, mem: ShownMemory | null): string {
  const parts = [size(i.memory)];
  if (s.maxMemory) parts.push(s.maxMemory > i.memory ? `up to ${size(s.maxMemory)} (hotplug)` : 'all of max-memory');
  if (s.memoryLimit) parts.push(`limit ${size(s.memoryLimit)}`);
  parts.push(`balloon ${s.balloon === false ? 'off' : 'on'}`);
  if (s.prealloc) parts.push('preallocated');
  if (s.hugepages) parts.push(`hugepages ${s.hugepages}`);
  const visible = mem?.guest?.visible;
  if (typeof visible === 'number') parts.push(`the guest sees ${size(visible)} now`);
  return parts.join(', ');
}

/** Where a vhost-user-net NIC's packets go: its registered back end (or, made before the registry, its socket). */
export function vhostUserOf(n: Pick<NonNullable<InstanceSpec['nics']>[number], 'backend' | 'socket'>): string {
  return n.backend ? `vhost-user ${n.backend} (${n.socket ?? '?'})` : `socket ${n.socket ?? '?'}`;
}

function nicLines(s: Partial<InstanceSpec>, nics: ShownNic[] | null): string[] {
  return (s.nics ?? []).map((n) => {
    const ip = nics?.find((x) => x.id === n.id)?.ip;
    const parts = [`${n.id} ${n.model}`, n.network ? `on ${n.network}` : n.model === 'vhost-user-net' ? vhostUserOf(n) : n.sriov ? `VF of ${n.sriov.pf}${n.sriov.vlan !== null ? ` vlan ${n.sriov.vlan}` : ''}` : '', `mac ${n.mac}`];
    if (n.queues > 1) parts.push(`${n.queues} queues`);
    if (n.address) parts.push(`address ${n.address}${ip && ip !== n.address ? ` (leased ${ip})` : ''}`);
    else if (ip) parts.push(`ip ${ip}`);
    for (const f of n.forwards ?? []) parts.push(`forward ${f.proto}:${f.hostAddr ? `${f.hostAddr}:` : ''}${f.hostPort}->${f.guestPort}`);
    return parts.filter(Boolean).join(', ');
  });
}

/** The guest agent's lines: whether the instance has its channel and whether it answers; what it says of the guest. */
function agentLines(i: Instance, s: Partial<InstanceSpec>, running: boolean): Array<[string, string]> {
  if (s.agent === false) return [['agent', 'none (created with --no-agent)']];
  const g = i.guest;
  if (!g) return [['agent', running ? 'not answering (is qemu-guest-agent running in the guest?)' : 'channel present (answers while the guest runs)']];
  const os = g.os;
  const name = os.prettyName ?? ([os.name, os.version].filter(Boolean).join(' ') || os.id || 'unknown');
  const out: Array<[string, string]> = [['agent', 'answering'], ['guest os', `${name}${os.kernelRelease ? `, kernel ${os.kernelRelease}` : ''}${os.machine ? ` (${os.machine})` : ''}`]];
  const ips = guestAddresses(g.interfaces).map((a) => `${a.address}/${a.prefix} (${a.interface})`);
  out.push(['guest ips', ips.length ? ips.join(', ') : 'none']);
  return out;
}

/** `yes, hostname web1, 1 SSH key, user-data #cloud-config (Corral's)`, or `no`. */
function cloudInitLine(s: Partial<InstanceSpec>): string {
  const ci = s.cloudInit;
  if (!ci) return 'no';
  const n = ci.sshKeys.length;
  const user = ci.userData === null ? "#cloud-config (Corral's)" : `${ci.userData.split('\n', 1)[0]?.slice(0, 40)} (given)`;
  return `yes (NoCloud seed), hostname ${ci.hostname}, ${n} SSH key${n === 1 ? '' : 's'}, user-data ${user}${ci.networkConfig !== null ? ', network-config given' : ''}`;
}

/** The text of `corral show`. */
export function instanceDetails(i: Instance, nics: ShownNic[] | null = null, mem: ShownMemory | null = null): string {
  const s = (i.spec ?? {}) as Partial<InstanceSpec>;
  const running = i.pid !== null && i.pid !== undefined;
  const pairs: Array<[string, string]> = [
    ['name', i.name],
    ['uuid', i.uuid],
    ['state', `${i.state}${running ? ` (pid ${i.pid}, ${orDash(i.accel)}, up ${duration(i.uptime)}, resident ${size(i.rss)})` : ''}`],
    ['image', i.image],
    ['accel', running ? `${orDash(i.accel)} (asked: ${s.accel ?? 'auto'})` : (s.accel ?? 'auto')],
    ['cpus', cpus(i, s)],
    ['memory', memory(i, s, mem)],
    ['firmware', i.firmware],
    ['root disk', `${i.disk.path} on ${s.rootBus ?? 'virtio-blk'}, ${s.disk ? `${size(s.disk)}` : "the image's size"}, ${size(i.disk.allocated)} allocated`],
  ];
  const disks = (s.disks ?? []).map((d) => `volume ${d.volume} on ${d.bus}`);
  pairs.push(['disks', disks.length ? disks.join('; ') : '-']);
  const nicText = nicLines(s, nics);
  pairs.push(['nics', nicText.length ? nicText.join('\n           ') : 'none']);
  pairs.push(...agentLines(i, s, running));
  pairs.push(['display', s.display === 'vnc' ? `vnc (VGA; the web console's graphical console, /v1/instances/${i.name}/vnc)` : 'none']);
  pairs.push(['cloud-init', cloudInitLine(s)]);
  const hostdevs = (s.hostdevs ?? []).map((h) => `${h.id} ${h.address}`);
  if (hostdevs.length) pairs.push(['passthrough', hostdevs.join(', ')]);
  pairs.push(['created', i.createdAt]);
  if (i.startedAt) pairs.push(['started', i.startedAt]);
  if (i.lastError) pairs.push(['last error', i.lastError]);
  const x = i.lastExit;
  if (x) {
    const how = x.signal ? `signal ${x.signal}` : x.code !== null ? `exit code ${x.code}` : 'exit status unknown';
    pairs.push(['last exit', `${x.at}: ${x.reason} (${how})`]);
    if (x.stderr && !x.reason.includes(x.stderr)) pairs.push(['qemu said', x.stderr]);
  }
  return keyValues(pairs);
}

