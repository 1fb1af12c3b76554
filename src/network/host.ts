/**
 * What the network service needs from the host, as one interface: the real one (LinuxNetworkHost) runs ip,
 * nft and dnsmasq; tests give the service a fake to check that every failure is undone.
 */
import type { AddressReservation } from '../core/addresses.js';
import { CorralError } from '../core/errors.js';
import { bridgeMac, prefixOf, type HostRoutes, type NetworkRecord } from '../core/networks.js';
import { bridgeState, createBridge, deleteBridge, type BridgeState } from './bridge.js';
import { findDnsmasq, readLeases, startDnsmasq, stopDnsmasq, type DnsmasqFiles, type Lease } from './dnsmasq.js';
import { enableIpForward, loadFirewall } from './firewall.js';
import { loadL2Filter, type TapBinding } from './l2-filter.js';
import { hostRoutes } from './links.js';
import { createTap, deleteTap, listTaps, type TapInfo, type TapOwner } from './tap.js';

export interface NetworkHost {
  /** the host's IPv4 routes and addresses */
  routes(): Promise<HostRoutes>;
  /** make the network's bridge exist with its gateway address, up; created says it was not there before */
  ensureBridge(net: NetworkRecord): Promise<{ created: boolean }>;
  deleteBridge(bridge: string): Promise<void>;
  bridgeState(bridge: string): Promise<BridgeState>;
  /** load the ruleset for exactly these networks; forwardEnabled says IPv4 forwarding was switched on now */
  loadFirewall(networks: NetworkRecord[]): Promise<{ forwardEnabled: boolean }>;
  /** start the network's dnsmasq giving these NICs their fixed addresses, or adopt the running one that does */
  startDhcp(net: NetworkRecord, files: DnsmasqFiles, hosts: AddressReservation[]): Promise<{ pid: number; adopted: boolean }>;
  stopDhcp(files: DnsmasqFiles): Promise<void>;
  dhcpPid(files: DnsmasqFiles): number | null;
  leases(files: DnsmasqFiles): Lease[];
  createTap(ifname: string, bridge: string, multiQueue: boolean): Promise<void>;
  deleteTap(ifname: string): Promise<void>;
  listTaps(prefix: string): Promise<TapInfo[]>;
  /** load the layer-2 filter for exactly these taps */
  loadL2Filter(taps: TapBinding[]): Promise<void>;
}

function bridgeOf(net: NetworkRecord): { bridge: string; gateway: string; cidr: string; dhcp: { start: string; end: string } } {
  if (net.bridge === null || net.gateway === null || net.cidr === null || net.dhcp === null) throw new CorralError('INTERNAL', `network "${net.name}" is not a bridge network`);
  return { bridge: net.bridge, gateway: net.gateway, cidr: net.cidr, dhcp: net.dhcp };
}

export class LinuxNetworkHost implements NetworkHost {
  /**
   * `owners.tap`: the user QEMU runs as, who taps are made for; `owners.dnsmasq`: the user dnsmasq drops to once
   * its sockets are bound (src/host/run-as.ts). Without them taps are root's and dnsmasq picks its own default.
   */
  constructor(private procRoot = '/proc', private owners: { tap?: TapOwner; dnsmasq?: string } = {}) {}

  routes(): Promise<HostRoutes> {
    return hostRoutes();
  }

  ensureBridge(net: NetworkRecord): Promise<{ created: boolean }> {
    const b = bridgeOf(net);
    return createBridge({ name: b.bridge, mac: bridgeMac(net.name), gateway: b.gateway, prefix: prefixOf(b.cidr) });
  }

  deleteBridge(bridge: string): Promise<void> {
    return deleteBridge(bridge);
  }

  bridgeState(bridge: string): Promise<BridgeState> {
    return bridgeState(bridge);
  }

  async loadFirewall(networks: NetworkRecord[]): Promise<{ forwardEnabled: boolean }> {
    await loadFirewall(networks);
    if (!networks.some((n) => n.kind === 'bridge' && n.nat)) return { forwardEnabled: false };
    return { forwardEnabled: enableIpForward(this.procRoot).changed };
  }

  startDhcp(net: NetworkRecord, files: DnsmasqFiles, hosts: AddressReservation[]): Promise<{ pid: number; adopted: boolean }> {
    const b = bridgeOf(net);
    return startDnsmasq({ bridge: b.bridge, gateway: b.gateway, prefix: prefixOf(b.cidr), dhcp: b.dhcp, nat: net.nat, dns: net.dns, files, hosts, user: this.owners.dnsmasq }, { proc: this.procRoot });
  }

  async stopDhcp(files: DnsmasqFiles): Promise<void> {
    await stopDnsmasq(files, { proc: this.procRoot });
  }

  dhcpPid(files: DnsmasqFiles): number | null {
    return findDnsmasq(files, this.procRoot);
  }

  leases(files: DnsmasqFiles): Lease[] {
    return readLeases(files);
  }

  async createTap(ifname: string, bridge: string, multiQueue: boolean): Promise<void> {
    await createTap(ifname, bridge, { multiQueue, owner: this.owners.tap });
  }

  deleteTap(ifname: string): Promise<void> {
    return deleteTap(ifname);
  }

  listTaps(prefix: string): Promise<TapInfo[]> {
    return listTaps(prefix);
  }

  loadL2Filter(taps: TapBinding[]): Promise<void> {
    return loadL2Filter(taps);
  }
}
