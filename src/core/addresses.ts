/**
 * Fixed guest addresses on bridge networks, the pure part. Every NIC on a bridge network holds one address of
 * its network's DHCP range, reserved when the NIC is made and stored with it (`address` in the spec): dnsmasq
 * hands it out to the NIC's MAC only, and the layer-2 filter lets the NIC send from that address only. So "the
 * address its lease gave it" is known before the guest ever asks, survives restarts, and two NICs never share one.
 */
import { CorralError } from './errors.js';
import { formatIpv4, parseIpv4, type NetworkRecord } from './networks.js';

/** A NIC's binding on its bridge: what the DHCP server gives it and what the filter lets it send as. */
export interface AddressReservation {
  mac: string;
  ip: string;
}

const MAC_RE = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;

/** The first and last address a bridge network hands out (its DHCP range), as numbers. */
function rangeOf(net: NetworkRecord): { first: number; last: number } {
  const first = net.dhcp ? parseIpv4(net.dhcp.start) : null;
  const last = net.dhcp ? parseIpv4(net.dhcp.end) : null;
  if (net.kind !== 'bridge' || first === null || last === null || first > last) {
    throw new CorralError('INTERNAL', `network "${net.name}" has no address range to reserve from`, { network: net.name });
  }
  return { first, last };
}

/** Is `ip` an address of the network's range, written as Corral writes addresses? */
export function inRange(net: NetworkRecord, ip: string): boolean {
  const n = parseIpv4(ip);
  if (n === null || formatIpv4(n) !== ip) return false;
  const { first, last } = rangeOf(net);
  return n >= first && n <= last;
}

/**
 * The lowest address of the network's range that no NIC holds (`reserved`), preferring one that no other
 * machine holds a live DHCP lease on (`leasedToOthers`: dnsmasq will not give an address leased to another MAC
 * until that lease runs out). None left: INSUFFICIENT_RESOURCES naming the network and its range.
 */
export function pickAddress(net: NetworkRecord, reserved: ReadonlySet<string>, leasedToOthers: ReadonlySet<string> = new Set()): string {
  const { first, last } = rangeOf(net);
  let fallback: string | null = null;
  for (let n = first; n <= last; n++) {
    const ip = formatIpv4(n);
    if (reserved.has(ip)) continue;
    if (!leasedToOthers.has(ip)) return ip;
    fallback ??= ip;
  }
  if (fallback !== null) return fallback;
  throw new CorralError(
    'INSUFFICIENT_RESOURCES',
    `network "${net.name}" has no free address: all ${last - first + 1} of its range ${formatIpv4(first)}-${formatIpv4(last)} are reserved by NICs (detach one, or use another network)`,
    { network: net.name, field: 'network' },
  );
}

/** A reservation as it may go into dnsmasq's argv and the nft ruleset: a unicast MAC and a dotted quad, nothing else. */
export function isReservation(r: AddressReservation): boolean {
  const n = parseIpv4(r.ip);
  return MAC_RE.test(r.mac) && (parseInt(r.mac.slice(0, 2), 16) & 1) === 0 && n !== null && formatIpv4(n) === r.ip;
}
