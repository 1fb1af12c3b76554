/**
 * One dnsmasq per bridge network, for DHCP (and DNS on NAT networks). It runs detached from the daemon (its
 * own session, like QEMU) so it outlives a daemon restart, and is recognised again by the pid in its pid file
 * whose /proc/PID/cmdline is a dnsmasq naming this network's lease file: an adopted dnsmasq is never started
 * twice. Its files live in the network's folder: leases, dnsmasq.pid, dnsmasq.log, dnsmasq.stderr.
 *
 * Options (no configuration file is read: --conf-file=/dev/null):
 *  - DHCP on the bridge only (--bind-interfaces --interface=BR --except-interface=lo, the gateway as listen
 *    address), authoritative, pool from the record, lease time 1h, leases in the network's folder.
 *  - one --dhcp-host=MAC,IP per NIC on the network: its fixed address (core/addresses.ts). They are on the
 *    command line, not in a hosts file re-read on SIGHUP, so nothing dnsmasq reads after dropping root matters;
 *    when they change, dnsmasq is restarted (a running dnsmasq is adopted only when its command line is the one
 *    wanted now), and before it starts again, leases of other MACs on a reserved address are dropped from the
 *    lease file (dnsmasq would not give an address leased to another MAC until that lease ran out).
 *  - NAT networks: the gateway is the guests' router and DNS server; dnsmasq forwards queries to the host's
 *    resolvers (/etc/resolv.conf) and does not serve the host's /etc/hosts (--no-hosts).
 *  - Isolated networks (nat off): no router option (guests get no default route) and no DNS (--port=0): a
 *    network with no way out should not have one through the host's resolver either.
 * dnsmasq drops root for its own user (`corral-dnsmasq`, given as `user`) once its sockets and files are open.
 */
import { spawn } from 'node:child_process';
import { closeSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import type { AddressReservation } from '../core/addresses.js';
import { CorralError } from '../core/errors.js';
import { LEASE_TIME, prefixMask } from '../core/networks.js';
import { spawnError } from '../host/exec.js';
import { commandLine, ENV, stderrLine } from './exec.js';

export const DNSMASQ = 'dnsmasq';

export interface DnsmasqFiles {
  leases: string;
  pid: string;
  log: string;
  stderr: string;
}

export function dnsmasqFiles(dir: string): DnsmasqFiles {
  return { leases: join(dir, 'leases'), pid: join(dir, 'dnsmasq.pid'), log: join(dir, 'dnsmasq.log'), stderr: join(dir, 'dnsmasq.stderr') };
}

export interface DnsmasqConfig {
  bridge: string;
  gateway: string;
  prefix: number;
  dhcp: { start: string; end: string };
  /** give guests the gateway as router */
  nat: boolean;
  /** serve DNS on the gateway */
  dns: boolean;
  files: DnsmasqFiles;
  /** the fixed address of each NIC on the network */
  hosts: AddressReservation[];
  /** the unprivileged user (and group of that name) dnsmasq drops to once its sockets are bound */
  user?: string;
}

/** dnsmasq's argv (without the binary). Pure. */
export function dnsmasqArgv(c: DnsmasqConfig): string[] {
  return [
    '--conf-file=/dev/null',
    '--keep-in-foreground',
    '--bind-interfaces',
    `--interface=${c.bridge}`,
    '--except-interface=lo',
    `--listen-address=${c.gateway}`,
    `--dhcp-range=${c.dhcp.start},${c.dhcp.end},${prefixMask(c.prefix)},${LEASE_TIME}`,
    '--dhcp-authoritative',
    `--dhcp-leasefile=${c.files.leases}`,
    `--pid-file=${c.files.pid}`,
    `--log-facility=${c.files.log}`,
    '--no-hosts',
    ...(c.dns ? [] : ['--port=0']),
    c.nat ? `--dhcp-option=option:router,${c.gateway}` : '--dhcp-option=option:router',
    ...(c.dns ? [`--dhcp-option=option:dns-server,${c.gateway}`] : []),
    ...(c.user ? [`--user=${c.user}`, `--group=${c.user}`] : []),
    ...[...c.hosts].sort((a, b) => a.mac.localeCompare(b.mac)).map((h) => `--dhcp-host=${h.mac},${h.ip}`),
  ];
}

function readCmdline(pid: number, proc: string): string[] | null {
  try {
    const parts = readFileSync(join(proc, String(pid), 'cmdline')).toString('utf8').split('\0');
    if (parts[parts.length - 1] === '') parts.pop();
    return parts.length > 0 ? parts : null;
  } catch {
    return null;
  }
}

function alive(pid: number, proc: string): boolean {
  try {
    const stat = readFileSync(join(proc, String(pid), 'stat'), 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0];
    return state !== undefined && state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

/** Is pid a live dnsmasq serving this lease file? */
export function isDnsmasqOf(pid: number, leases: string, proc = '/proc'): boolean {
  const argv = readCmdline(pid, proc);
  if (!argv || basename(argv[0] ?? '') !== DNSMASQ) return false;
  return argv.includes(`--dhcp-leasefile=${leases}`) && alive(pid, proc);
}

function pidFromFile(file: string): number | null {
  try {
    const n = Number(readFileSync(file, 'utf8').trim());
    return Number.isInteger(n) && n > 0 ? n : null;
  } catch {
    return null;
  }
}

/**
 * The pid of the dnsmasq serving these files, or null: the pid file's pid when its cmdline names the lease
 * file, else (pid file lost) a scan of /proc for such a dnsmasq.
 */
export function findDnsmasq(files: DnsmasqFiles, proc = '/proc'): number | null {
  const pid = pidFromFile(files.pid);
  if (pid !== null && isDnsmasqOf(pid, files.leases, proc)) return pid;
  let entries: string[];
  try {
    entries = readdirSync(proc);
  } catch {
    return null;
  }
  for (const e of entries) {
    if (!/^[0-9]+$/.test(e)) continue;
    if (isDnsmasqOf(Number(e), files.leases, proc)) return Number(e);
  }
  return null;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * Start the network's dnsmasq, or adopt the one already running (a daemon restart) when its command line is
 * the one wanted now: {pid, adopted}. One running with another command line (other NICs' addresses, or an
 * older Corral's options) is stopped first, and the lease file cleared of leases that stand in a NIC's way.
 * Waits until dnsmasq has written its pid file (its sockets are bound by then); an early exit is
 * NETWORK_FAILED carrying dnsmasq's own message.
 */
export async function startDnsmasq(c: DnsmasqConfig, opts: { timeoutMs?: number; binary?: string; proc?: string } = {}): Promise<{ pid: number; adopted: boolean }> {
  const proc = opts.proc ?? '/proc';
  const argv = dnsmasqArgv(c);
  const running = findDnsmasq(c.files, proc);
  if (running !== null) {
    if (JSON.stringify(readCmdline(running, proc)?.slice(1)) === JSON.stringify(argv)) return { pid: running, adopted: true };
    await stopDnsmasq(c.files, { proc });
  }
  pruneLeases(c.files.leases, c.hosts);
  const bin = opts.binary ?? DNSMASQ;
  const cmd = commandLine(bin, argv);
  rmSync(c.files.pid, { force: true });
  const errFd = openSync(c.files.stderr, 'w', 0o600);
  let child;
  try {
    child = spawn(bin, argv, { stdio: ['ignore', 'ignore', errFd], detached: true, env: ENV() });
  } finally {
    closeSync(errFd);
  }
  child.unref();
  let failure: CorralError | null = null;
  child.once('error', (err: NodeJS.ErrnoException) => {
    failure = spawnError(bin, err, { code: 'NETWORK_FAILED', command: cmd });
  });
  const stderr = (): string => {
    try {
      return readFileSync(c.files.stderr, 'utf8');
    } catch {
      return '';
    }
  };
  const t0 = Date.now();
  for (;;) {
    if (failure) throw failure;
    if (child.exitCode !== null || child.signalCode !== null) {
      const line = stderrLine(stderr(), child.signalCode ? `killed by ${child.signalCode}` : `exit status ${child.exitCode}`);
      throw new CorralError('NETWORK_FAILED', `${cmd} failed: ${line}`, { command: cmd, stderr: line });
    }
    if (child.pid !== undefined && pidFromFile(c.files.pid) === child.pid) return { pid: child.pid, adopted: false };
    if (Date.now() - t0 > (opts.timeoutMs ?? 10_000)) {
      child.kill('SIGKILL');
      throw new CorralError('NETWORK_FAILED', `${cmd} did not write its pid file within ${opts.timeoutMs ?? 10_000} ms: ${stderrLine(stderr(), 'no message')}`, { command: cmd, stderr: stderrLine(stderr(), '') });
    }
    await sleep(25);
  }
}

/** Stop the network's dnsmasq (SIGTERM, then SIGKILL after timeoutMs); none running is fine. */
export async function stopDnsmasq(files: DnsmasqFiles, opts: { timeoutMs?: number; proc?: string } = {}): Promise<{ stopped: number | null }> {
  const proc = opts.proc ?? '/proc';
  const pid = findDnsmasq(files, proc);
  if (pid !== null) {
    const signal = (s: NodeJS.Signals): void => {
      try {
        process.kill(pid, s);
      } catch {
        /* gone */
      }
    };
    signal('SIGTERM');
    const t0 = Date.now();
    while (alive(pid, proc)) {
      if (Date.now() - t0 > (opts.timeoutMs ?? 3000)) {
        signal('SIGKILL');
        break;
      }
      await sleep(25);
    }
  }
  rmSync(files.pid, { force: true });
  return { stopped: pid };
}

export interface Lease {
  mac: string;
  ip: string;
  /** the name the guest sent, or null */
  hostname: string | null;
  /** when the lease runs out (ISO time), or null for an infinite lease */
  expires: string | null;
}

const MAC_RE = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i;

/** dnsmasq's lease file: one "EXPIRY MAC IP HOSTNAME CLIENTID" line per IPv4 lease (DHCPv6 lines are skipped). Pure. */
export function parseLeases(text: string): Lease[] {
  const out: Lease[] = [];
  for (const line of text.split('\n')) {
    const [expiry, mac, ip, host] = line.trim().split(/\s+/);
    if (expiry === undefined || mac === undefined || ip === undefined || !/^[0-9]+$/.test(expiry) || !MAC_RE.test(mac)) continue;
    if (!/^[0-9]{1,3}(\.[0-9]{1,3}){3}$/.test(ip)) continue;
    const secs = Number(expiry);
    out.push({ mac: mac.toLowerCase(), ip, hostname: host === undefined || host === '*' ? null : host, expires: secs === 0 ? null : new Date(secs * 1000).toISOString() });
  }
  return out;
}

/**
 * The lease file without the leases that another MAC holds on a reserved address (kept: every other line, as
 * it is). Pure.
 */
export function pruneLeaseText(text: string, hosts: AddressReservation[]): string {
  const owner = new Map(hosts.map((h) => [h.ip, h.mac.toLowerCase()]));
  const keep = text.split('\n').filter((line) => {
    const [lease] = parseLeases(line);
    return lease === undefined || !owner.has(lease.ip) || owner.get(lease.ip) === lease.mac;
  });
  return keep.join('\n');
}

/** Rewrite the lease file in place (its owner and mode stay) when leases stand in a NIC's way; dnsmasq must not run. */
function pruneLeases(file: string, hosts: AddressReservation[]): void {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return; // none yet
  }
  const pruned = pruneLeaseText(text, hosts);
  if (pruned !== text) writeFileSync(file, pruned);
}

export function readLeases(files: DnsmasqFiles): Lease[] {
  try {
    return parseLeases(readFileSync(files.leases, 'utf8'));
  } catch {
    return [];
  }
}
