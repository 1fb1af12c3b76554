/**
 * A NetworkHost that keeps bridges, firewall, dnsmasq and taps in memory: the network service runs for real over
 * it, without making bridges, nft tables or dnsmasq processes on the machine the unit tests run on.
 */
import type { AddressReservation } from '../../../src/core/addresses.js';
import type { HostRoutes, NetworkRecord } from '../../../src/core/networks.js';
import type { BridgeState } from '../../../src/network/bridge.js';
import type { DnsmasqFiles, Lease } from '../../../src/network/dnsmasq.js';
import type { NetworkHost } from '../../../src/network/host.js';
import type { TapBinding } from '../../../src/network/l2-filter.js';
import type { TapInfo } from '../../../src/network/tap.js';

export class MemoryNetworkHost implements NetworkHost {
  readonly bridges = new Set<string>();
  readonly dhcp = new Map<string, number>();
  readonly taps = new Map<string, { bridge: string; multiQueue: boolean }>();
  firewall: string[] = [];
  l2: TapBinding[] = [];
  private nextPid = 4_900_000;

  /** What the host holds, as sorted lines (for before/after comparisons). */
  snapshot(): string[] {
    return [
      ...[...this.bridges].map((b) => `bridge ${b}`),
      ...[...this.dhcp.keys()].map((f) => `dnsmasq ${f}`),
      ...[...this.taps].map(([t, v]) => `tap ${t} on ${v.bridge}`),
      ...this.firewall.map((n) => `firewall ${n}`),
      ...this.l2.map((b) => `l2 ${JSON.stringify(b)}`),
    ].sort();
  }

  async routes(): Promise<HostRoutes> {
    return { routes: [{ dst: 'default', dev: 'eth0' }, { dst: '192.168.1.0/24', dev: 'eth0' }], addresses: [{ ifname: 'eth0', address: '192.168.1.5/24' }] };
  }

  async ensureBridge(net: NetworkRecord): Promise<{ created: boolean }> {
    const had = this.bridges.has(net.bridge!);
    this.bridges.add(net.bridge!);
    return { created: !had };
  }

  async deleteBridge(bridge: string): Promise<void> {
    this.bridges.delete(bridge);
  }

  async bridgeState(bridge: string): Promise<BridgeState> {
    const exists = this.bridges.has(bridge);
    return { name: bridge, exists, up: exists, addresses: [], ports: [...this.taps].filter(([, t]) => t.bridge === bridge).map(([n]) => n) };
  }

  async loadFirewall(networks: NetworkRecord[]): Promise<{ forwardEnabled: boolean }> {
    this.firewall = networks.filter((n) => n.kind === 'bridge').map((n) => n.name).sort();
    return { forwardEnabled: false };
  }

  async startDhcp(_net: NetworkRecord, files: DnsmasqFiles, _hosts: AddressReservation[]): Promise<{ pid: number; adopted: boolean }> {
    const had = this.dhcp.get(files.leases);
    if (had !== undefined) return { pid: had, adopted: true };
    this.dhcp.set(files.leases, this.nextPid++);
    return { pid: this.dhcp.get(files.leases)!, adopted: false };
  }

  async stopDhcp(files: DnsmasqFiles): Promise<void> {
    this.dhcp.delete(files.leases);
  }

  dhcpPid(files: DnsmasqFiles): number | null {
    return this.dhcp.get(files.leases) ?? null;
  }

  leases(): Lease[] {
    return [];
  }

  async createTap(ifname: string, bridge: string, multiQueue: boolean): Promise<void> {
    this.taps.set(ifname, { bridge, multiQueue });
  }

  async deleteTap(ifname: string): Promise<void> {
    this.taps.delete(ifname);
  }

  async listTaps(prefix: string): Promise<TapInfo[]> {
    return [...this.taps].filter(([n]) => n.startsWith(prefix)).map(([ifname, t]) => ({ ifname, master: t.bridge, up: true, multiQueue: t.multiQueue }));
  }

  async loadL2Filter(taps: TapBinding[]): Promise<void> {
    this.l2 = taps.map((t) => ({ ...t })).sort((a, b) => a.ifname.localeCompare(b.ifname));
  }
}
