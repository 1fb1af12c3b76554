/**
 * NIC counters as the guest reports them (the guest agent's guest-network-get-interfaces: each interface's
 * `statistics`, read by the agent from the guest's /proc/net/dev), for the NICs the host has no counter of: QEMU
 * keeps none for user-mode networking (query-stats has no network target; `info usernet` lists connections only).
 * Pure: the answer comes in as the agent gave it, read defensively since a guest says what it likes.
 *
 * The figures are the guest's own, so already from its side (rx: what the guest received), the side the tap
 * figures are turned to. A NIC is matched by its MAC address; when several guest interfaces carry it (a VLAN
 * interface or a bridge in the guest takes its parent's MAC), the one with the most bytes is taken: the device
 * itself carries the traffic of every interface stacked on it.
 */
import { interfaceEntries } from './guest-agent.js';

/** One guest interface's counters, as the guest counts them. */
export interface GuestNicCounters {
  /** the interface's name in the guest (eth0) */
  name: string;
  /** lower case, as Corral stores MACs */
  mac: string;
  rxBytes: number;
  rxPackets: number;
  txBytes: number;
  txPackets: number;
}

const count = (v: unknown): number | null => (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 ? v : null);

/** guest-network-get-interfaces's answer: the interfaces with a MAC and whole counters (at most 64). */
export function parseGuestNicCounters(raw: unknown): GuestNicCounters[] {
  const out: GuestNicCounters[] = [];
  for (const { name, r } of interfaceEntries(raw)) {
    const mac = typeof r['hardware-address'] === 'string' ? r['hardware-address'].toLowerCase() : '';
    const st = r.statistics;
    if (!/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/.test(mac) || st === null || typeof st !== 'object') continue;
    const s = st as Record<string, unknown>;
    const [rxBytes, rxPackets, txBytes, txPackets] = [s['rx-bytes'], s['rx-packets'], s['tx-bytes'], s['tx-packets']].map(count);
    if (rxBytes == null || rxPackets == null || txBytes == null || txPackets == null) continue;
    out.push({ name, mac, rxBytes, rxPackets, txBytes, txPackets });
  }
  return out;
}

/** The guest interface that is the NIC of this MAC (see above), or undefined when the guest has none. */
export function guestNicByMac(ifaces: readonly GuestNicCounters[], mac: string): GuestNicCounters | undefined {
  const want = mac.toLowerCase();
  let best: GuestNicCounters | undefined;
  for (const i of ifaces) {
    if (i.mac !== want) continue;
    if (!best || i.rxBytes + i.txBytes > best.rxBytes + best.txBytes) best = i;
  }
  return best;
}
