/**
 * An in-memory network host: the network service runs for real over it, making no bridge, nft table, tap or dnsmasq
 * process. For simulated hosts (src/daemon/sim-graph.ts), the unit tests of the network service and the fuzzing of
 * the real services, which also tell it to fail one step.
 */
import type { AddressReservation } from '../core/addresses.js';
import type { HostRoutes, NetworkRecord } from '../core/networks.js';
import type { BridgeState } from './bridge.js';
import type { DnsmasqFiles, Lease } from './dnsmasq.js';
import type { NetworkHost } from './host.js';
import type { TapBinding } from './l2-filter.js';
import type { TapInfo } from './tap.js';

export type NetworkStep = 'routes' | 'ensureBridge' | 'loadFirewall' | 'startDhcp' | 'stopDhcp' | 'deleteBridge' | 'createTap' | 'loadL2Filter';

/**
 * A NetworkHost that keeps bridges, firewall, dnsmasq and taps in memory, and can be told to fail one step: the
 * network service runs for real over it, without making bridges, nft tables, taps or dnsmasq processes on the
 * machine the unit tests run on.
 */
export class FakeNetworkHost implements NetworkHost {
  bridges = new Map<string, string>(); // bridge -> network
  firewall: string[] = [];
  dhcp = new Map<string, number>(); // leases file -> pid
  dhcpHosts = new Map<string, AddressReservation[]>(); // leases file -> the --dhcp-host entries it runs with
  l2: TapBinding[] = [];
  taps = new Map<string, { bridge: string; multiQueue: boolean }>();
  leaseText = new Map<string, Lease[]>();
  calls: string[] = [];
  failAt: NetworkStep | null = null;
  failCount = 0;
  hostRoutes: HostRoutes = { routes: [{ dst: 'default', dev: 'eth0' }, { dst: '192.168.1.0/24', dev: 'eth0' }], addresses: [{ ifname: 'eth0', address: '192.168.1.5/24' }] };
  private nextPid: number;

  /** `firstPid`: the pid the first dnsmasq it "starts" gets */
  constructor(firstPid = 100) {
    this.nextPid = firstPid;
  }

  /** What the host holds, as sorted lines (for before/after comparisons). */
  snapshot(): string[] {
    return [
      ...[...this.bridges.keys()].map((b) => `bridge ${b}`),
      ...[...this.dhcp.keys()].map((f) => `dnsmasq ${f}`),
      ...[...this.taps].map(([t, v]) => `tap ${t} on ${v.bridge}`),
      ...this.firewall.map((n) => `firewall ${n}`),
      ...this.l2.map((b) => `l2 ${JSON.stringify(b)}`),
    ].sort();
  }

  private step(s: NetworkStep): void {
    this.calls.push(s);
    if (this.failAt === s && this.failCount-- > 0) throw new Error(`fake ${s} failure`);
  }

  async routes(): Promise<HostRoutes> {
    this.step('routes');
    return this.hostRoutes;
  }

  async ensureBridge(net: NetworkRecord): Promise<{ created: boolean }> {
    const had = this.bridges.has(net.bridge!);
    this.bridges.set(net.bridge!, net.name);
    this.step('ensureBridge'); // fails after making it, like a failing `ip addr` would
    return { created: !had };
  }

  async deleteBridge(bridge: string): Promise<void> {
    this.step('deleteBridge');
    this.bridges.delete(bridge);
  }

  async bridgeState(bridge: string): Promise<BridgeState> {
    const exists = this.bridges.has(bridge);
    return { name: bridge, exists, up: exists, addresses: [], ports: [...this.taps].filter(([, t]) => t.bridge === bridge).map(([n]) => n) };
  }

  async loadFirewall(networks: NetworkRecord[]): Promise<{ forwardEnabled: boolean }> {
    this.step('loadFirewall');
    this.firewall = networks.filter((n) => n.kind === 'bridge').map((n) => n.name).sort();
    return { forwardEnabled: false };
  }

  async startDhcp(_net: NetworkRecord, files: DnsmasqFiles, hosts: AddressReservation[]): Promise<{ pid: number; adopted: boolean }> {
    const had = this.dhcp.get(files.leases);
    // like the real one: adopted only when it runs with the reservations wanted now, else restarted
    if (had !== undefined && JSON.stringify(this.dhcpHosts.get(files.leases)) === JSON.stringify(hosts)) return { pid: had, adopted: true };
    this.dhcp.set(files.leases, this.nextPid++);
    this.dhcpHosts.set(files.leases, hosts);
    this.step('startDhcp'); // fails after starting, like dnsmasq dying right after
    return { pid: this.dhcp.get(files.leases)!, adopted: false };
  }

  async stopDhcp(files: DnsmasqFiles): Promise<void> {
    this.step('stopDhcp');
    this.dhcp.delete(files.leases);
  }

  dhcpPid(files: DnsmasqFiles): number | null {
    return this.dhcp.get(files.leases) ?? null;
  }

  leases(files: DnsmasqFiles): Lease[] {
    return this.leaseText.get(files.leases) ?? [];
  }

  async createTap(ifname: string, bridge: string, multiQueue: boolean): Promise<void> {
    this.step('createTap');
    this.taps.set(ifname, { bridge, multiQueue });
  }

  async deleteTap(ifname: string): Promise<void> {
    this.taps.delete(ifname);
  }

  async listTaps(prefix: string): Promise<TapInfo[]> {
    return [...this.taps].filter(([n]) => n.startsWith(prefix)).map(([ifname, t]) => ({ ifname, master: t.bridge, up: true, multiQueue: t.multiQueue }));
  }

  async loadL2Filter(taps: TapBinding[]): Promise<void> {
    this.step('loadL2Filter');
    this.l2 = taps.map((t) => ({ ...t })).sort((a, b) => a.ifname.localeCompare(b.ifname));
  }
}
