/**
 * Networks, the pure part: what a create request may ask for, IPv4 subnet arithmetic (gateway, DHCP pool),
 * overlap checks against other networks and the host's own routes and addresses (handed in as data), and the
 * names of host interfaces. No I/O: src/network realises a record on the host.
 *
 * Two kinds: `user` is QEMU's user-mode networking (slirp, NAT and DNS inside each QEMU, nothing on the host);
 * `bridge` is a Linux bridge `crl-...` with the gateway address, one dnsmasq for DHCP, and nftables rules for
 * isolation and NAT. The `default` network is a built-in user network: it always exists and cannot be
 * created, changed or deleted.
 */
import { createHash } from 'node:crypto';
import { CorralError, invalidSpec } from './errors.js';
import { printable, validateName } from './names.js';

export type NetworkKind = 'user' | 'bridge';

export const DEFAULT_NETWORK = 'default';
/** Prefix of every host interface Corral names itself (bridges); the firewall treats `crl-*` as Corral's. */
export const BRIDGE_PREFIX = 'crl-';
/** Linux IFNAMSIZ - 1 */
export const IFNAME_MAX = 15;
export const MIN_PREFIX = 8;
export const MAX_PREFIX = 29;
/** How long a DHCP lease lasts (dnsmasq's lease time syntax). */
export const LEASE_TIME = '1h';

/** What a create request carries, before validation. */
export interface NetworkRequest {
  name?: unknown;
  kind?: unknown;
  cidr?: unknown;
  nat?: unknown;
}

/** What network.json holds (the `default` network is the same shape, never written). */
export interface NetworkRecord {
  name: string;
  kind: NetworkKind;
  /** bridge networks: the IPv4 subnet, e.g. 10.10.0.0/24; null for user networks */
  cidr: string | null;
  /** the host's address on the bridge (first host address); guests' router when nat is on */
  gateway: string | null;
  /** the addresses dnsmasq hands out, first and last */
  dhcp: { start: string; end: string } | null;
  /** masquerade the subnet out of the host's other interfaces; user networks always NAT (inside QEMU) */
  nat: boolean;
  /** dnsmasq answers DNS on the gateway (forwarding to the host's resolvers): on exactly when nat is */
  dns: boolean;
  /** the Linux bridge's name; null for user networks */
  bridge: string | null;
  /** true for the built-in `default` network */
  builtin: boolean;
  createdAt: string | null;
}

/** The built-in user network. */
export const DEFAULT_NETWORK_RECORD: NetworkRecord = Object.freeze({
  name: DEFAULT_NETWORK, kind: 'user', cidr: null, gateway: null, dhcp: null, nat: true, dns: true, bridge: null, builtin: true, createdAt: null,
}) as NetworkRecord;

// --- IPv4 arithmetic (addresses as unsigned 32-bit numbers) ---

const OCTET = /^(0|[1-9][0-9]{0,2})$/;

/** A dotted quad as a number, or null. Leading zeros are refused (some parsers read them as octal). */
export function parseIpv4(s: string): number | null {
  const parts = s.split('.');
  if (parts.length !== 4) return null;
  let n = 0;
  for (const p of parts) {
    if (!OCTET.test(p)) return null;
    const v = Number(p);
    if (v > 255) return null;
    n = n * 256 + v;
  }
  return n;
}

export function formatIpv4(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

export function prefixMaskNumber(prefix: number): number {
  return prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
}

/** The netmask of a prefix length in dotted form, e.g. 24 -> 255.255.255.0. */
export function prefixMask(prefix: number): string {
  return formatIpv4(prefixMaskNumber(prefix));
}

export interface Cidr {
  /** the network address */
  network: number;
  prefix: number;
}

export function cidrString(c: Cidr): string {
  return `${formatIpv4(c.network)}/${c.prefix}`;
}

/** "a.b.c.d/p" or "a.b.c.d" (a /32) as the network it lies in, or null; host bits are masked off. */
export function parseCidrLoose(s: string): Cidr | null {
  const [addr, len, extra] = s.split('/');
  if (extra !== undefined || addr === undefined) return null;
  const a = parseIpv4(addr);
  if (a === null) return null;
  const prefix = len === undefined ? 32 : /^(0|[1-9][0-9]?)$/.test(len) ? Number(len) : NaN;
  if (!(prefix >= 0 && prefix <= 32)) return null;
  return { network: (a & prefixMaskNumber(prefix)) >>> 0, prefix };
}

function lastAddress(c: Cidr): number {
  return (c.network + 2 ** (32 - c.prefix) - 1) >>> 0;
}

export function cidrsOverlap(a: Cidr, b: Cidr): boolean {
  return a.network <= lastAddress(b) && b.network <= lastAddress(a);
}

/** Ranges that can never be a guest subnet. */
const RESERVED: Array<[string, string]> = [
  ['0.0.0.0/8', '"this network"'],
  ['127.0.0.0/8', 'loopback'],
  ['169.254.0.0/16', 'link-local'],
  ['224.0.0.0/4', 'multicast'],
  ['240.0.0.0/4', 'reserved (and broadcast)'],
];

/** Validate a bridge network's subnet: IPv4, prefix /8../29, a network address, not a reserved range. */
export function parseCidr(field: string, value: unknown): Cidr {
  if (typeof value !== 'string' || value.length === 0) throw invalidSpec(field, 'an IPv4 subnet such as 10.10.0.0/24 is required');
  const m = /^([0-9.]+)\/([0-9]{1,2})$/.exec(value);
  const addr = m ? parseIpv4(m[1]!) : null;
  if (!m || addr === null || !/^(0|[1-9][0-9]?)$/.test(m[2]!)) {
    throw invalidSpec(field, `"${printable(value)}" is not an IPv4 subnet: write it as ADDRESS/PREFIX, e.g. 10.10.0.0/24 (IPv6 is not supported)`);
  }
  const prefix = Number(m[2]);
  if (prefix < MIN_PREFIX || prefix > MAX_PREFIX) throw invalidSpec(field, `prefix /${prefix} is out of range: use /${MIN_PREFIX} to /${MAX_PREFIX}`);
  const network = (addr & prefixMaskNumber(prefix)) >>> 0;
  if (network !== addr) {
    throw invalidSpec(field, `${value} is not a network address (host bits are set): use ${formatIpv4(network)}/${prefix}`);
  }
  const c = { network, prefix };
  for (const [r, what] of RESERVED) {
    if (cidrsOverlap(c, parseCidrLoose(r)!)) throw invalidSpec(field, `${value} overlaps ${r}, which is ${what}: use a private range such as 10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16`);
  }
  return c;
}

/** Gateway (first host address) and DHCP pool: gateway+9 .. last host, or from the second address when that does not fit. */
export function subnetPlan(c: Cidr): { gateway: string; dhcp: { start: string; end: string }; mask: string; broadcast: string } {
  const gateway = c.network + 1;
  const lastHost = lastAddress(c) - 1;
  const start = gateway + 9 <= lastHost ? gateway + 9 : gateway + 1;
  return {
    gateway: formatIpv4(gateway),
    dhcp: { start: formatIpv4(start), end: formatIpv4(lastHost) },
    mask: prefixMask(c.prefix),
    broadcast: formatIpv4(lastAddress(c)),
  };
}

// --- host interface names ---

const IFNAME_RE = /^[a-z0-9][a-z0-9-]*$/;

/** A host interface name Corral may create or delete: 1..15 characters of a-z, 0-9 and '-' (not first). */
export function validateIfname(field: string, value: unknown): string {
  if (typeof value !== 'string' || value.length === 0) throw invalidSpec(field, 'an interface name is required');
  if (value.length > IFNAME_MAX) throw invalidSpec(field, `interface name "${printable(value)}" is ${value.length} characters long; Linux allows at most ${IFNAME_MAX}`);
  if (!IFNAME_RE.test(value)) throw invalidSpec(field, `"${printable(value)}" is not an interface name Corral uses: a-z, 0-9 and '-', not starting with '-'`);
  return value;
}

function sha256Hex(s: string): string {
  return createHash('sha256').update(s).digest('hex');
}

/** The bridge of a network: `crl-NAME` when that fits in 15 characters, else `crl-` + 11 hex digits of sha256(NAME). */
export function bridgeName(network: string): string {
  const plain = `${BRIDGE_PREFIX}${network}`;
  return plain.length <= IFNAME_MAX ? plain : `${BRIDGE_PREFIX}${sha256Hex(network).slice(0, IFNAME_MAX - BRIDGE_PREFIX.length)}`;
}

/**
 * A fixed, locally administered MAC for a bridge. Set explicitly, the kernel keeps it instead of taking the
 * lowest MAC of its ports, so the gateway's MAC does not change under the guests as taps come and go.
 */
export function bridgeMac(network: string): string {
  const h = sha256Hex(`corral-bridge\0${network}`);
  return ['02', h.slice(0, 2), h.slice(2, 4), h.slice(4, 6), h.slice(6, 8), h.slice(8, 10)].join(':');
}

// --- validation and conflicts ---

/** A create request as a record (not yet checked against other networks or the host). */
export function validateNetwork(req: NetworkRequest, createdAt: string): NetworkRecord {
  if (req === null || typeof req !== 'object') throw new CorralError('INVALID_SPEC', 'request body must be an object', { field: '' });
  const name = validateName('name', req.name);
  if (name === DEFAULT_NETWORK) {
    throw new CorralError('ALREADY_EXISTS', 'network "default" is built in (QEMU user-mode networking): it cannot be created, changed or deleted', { name, field: 'name' });
  }
  const kind = req.kind ?? 'bridge';
  if (kind !== 'user' && kind !== 'bridge') throw invalidSpec('kind', `"${printable(String(kind))}" is not a network kind: use "user" or "bridge"`);
  if (kind === 'user') {
    if (req.cidr !== undefined && req.cidr !== null) throw invalidSpec('cidr', 'a user network has no cidr: QEMU user-mode networking picks its own subnet inside each VM');
    if (req.nat !== undefined && req.nat !== null) throw invalidSpec('nat', 'a user network always NATs inside QEMU: nat applies to bridge networks only');
    return { name, kind, cidr: null, gateway: null, dhcp: null, nat: true, dns: true, bridge: null, builtin: false, createdAt };
  }
  if (req.cidr === undefined || req.cidr === null) throw invalidSpec('cidr', 'a bridge network needs an IPv4 subnet, e.g. 10.10.0.0/24');
  const c = parseCidr('cidr', req.cidr);
  const nat = req.nat ?? true;
  if (typeof nat !== 'boolean') throw invalidSpec('nat', 'must be true or false');
  const plan = subnetPlan(c);
  return { name, kind, cidr: cidrString(c), gateway: plan.gateway, dhcp: plan.dhcp, nat, dns: nat, bridge: bridgeName(name), builtin: false, createdAt };
}

/** The host's own IPv4 routes (main table) and addresses, as `ip -j` reports them. */
export interface HostRoutes {
  /** route destinations: "10.0.0.0/8", "192.0.2.7" (a host route) or "default" */
  routes: Array<{ dst: string; dev: string | null }>;
  /** interface addresses, "ADDRESS/PREFIX" */
  addresses: Array<{ ifname: string; address: string }>;
}

function conflict(message: string, details: Record<string, unknown>): CorralError {
  return new CorralError('NETWORK_CONFLICT', message, { field: 'cidr', ...details });
}

/**
 * Refuse a bridge network whose subnet overlaps another network's or anything the host already routes or has
 * an address in (NETWORK_CONFLICT naming it). Routes and addresses on the bridges of known networks (and of
 * this one, left from an earlier try) are the networks' own and are skipped.
 */
export function checkConflicts(net: NetworkRecord, others: NetworkRecord[], host: HostRoutes): void {
  if (net.kind !== 'bridge' || net.cidr === null) return;
  const mine = parseCidrLoose(net.cidr)!;
  const ours = new Set<string>();
  if (net.bridge) ours.add(net.bridge);
  for (const o of others) {
    if (o.name === net.name || o.kind !== 'bridge') continue;
    if (o.bridge) ours.add(o.bridge);
    if (o.bridge === net.bridge) {
      throw new CorralError('NETWORK_CONFLICT', `network "${net.name}" would use bridge ${net.bridge}, which network "${o.name}" has: choose another name`, { field: 'name', network: o.name });
    }
    const theirs = o.cidr === null ? null : parseCidrLoose(o.cidr);
    if (theirs && cidrsOverlap(mine, theirs)) {
      throw conflict(`cidr ${net.cidr} overlaps network "${o.name}" (${o.cidr})`, { network: o.name, overlaps: o.cidr });
    }
  }
  for (const r of host.routes) {
    if (r.dst === 'default' || (r.dev !== null && ours.has(r.dev))) continue;
    const c = parseCidrLoose(r.dst);
    if (!c || c.prefix === 0) continue;
    if (cidrsOverlap(mine, c)) {
      throw conflict(`cidr ${net.cidr} overlaps the host's route to ${r.dst}${r.dev ? ` (dev ${r.dev})` : ''}`, { route: r.dst, dev: r.dev });
    }
  }
  for (const a of host.addresses) {
    if (ours.has(a.ifname)) continue;
    const c = parseCidrLoose(a.address);
    if (!c || c.prefix === 0) continue;
    if (cidrsOverlap(mine, c)) {
      throw conflict(`cidr ${net.cidr} overlaps the host's address ${a.address} on ${a.ifname}`, { address: a.address, dev: a.ifname });
    }
  }
}

/** A stored network.json that is whole. */
export function isNetworkRecord(v: unknown): v is NetworkRecord {
  if (typeof v !== 'object' || v === null) return false;
  const r = v as Record<string, unknown>;
  const str = (x: unknown): boolean => x === null || typeof x === 'string';
  if (typeof r.name !== 'string' || (r.kind !== 'user' && r.kind !== 'bridge') || typeof r.nat !== 'boolean' || typeof r.dns !== 'boolean') return false;
  if (!str(r.cidr) || !str(r.gateway) || !str(r.bridge) || !str(r.createdAt)) return false;
  if (r.kind === 'bridge') {
    const d = r.dhcp as Record<string, unknown> | null;
    if (typeof r.cidr !== 'string' || typeof r.gateway !== 'string' || typeof r.bridge !== 'string') return false;
    if (d === null || typeof d !== 'object' || typeof d.start !== 'string' || typeof d.end !== 'string') return false;
  }
  return true;
}

/** Prefix length of a stored cidr. */
export function prefixOf(cidr: string): number {
  return parseCidrLoose(cidr)?.prefix ?? 32;
}
