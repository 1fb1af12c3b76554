/**
 * Network use cases: bridge and user networks as records, realised on the host (bridge, nftables, dnsmasq)
 * and restored at daemon start. Every network operation runs under one lock: they are short, and serialising
 * them keeps the overlap check, the firewall (always regenerated from all records) and the records in step.
 *
 * A create either finishes or leaves nothing: no record, no bridge, no dnsmasq, and the firewall loaded
 * again from the other networks. A delete is refused while instances use the network (NETWORK_IN_USE); its
 * steps are each idempotent, so a delete that failed half-way can simply be repeated.
 *
 * For the NIC service: record(), bridgeOf(), ensureTap(), deleteTap(), setTaps(), taps(), leases() and leaseFor().
 * It tells this service each NIC's fixed address (setReservations: dnsmasq gives them out) and, with each tap,
 * the MAC and address the guest may send as (the layer-2 filter, `bridge corral_l2`, regenerated from the taps
 * this daemon made, and after a restart from the records: setTaps).
 */
import { inRange, isReservation, type AddressReservation } from '../core/addresses.js';
import { CorralError, invalidSpec } from '../core/errors.js';
import { checkConflicts, DEFAULT_NETWORK, validateIfname, validateNetwork, type NetworkRecord, type NetworkRequest } from '../core/networks.js';
import { printable } from '../core/spec.js';
import type { BridgeState } from '../network/bridge.js';
import type { Lease } from '../network/dnsmasq.js';
import type { NetworkHost } from '../network/host.js';
import type { TapBinding } from '../network/l2-filter.js';
import type { NetworkStore } from '../network/store.js';
import type { TapInfo } from '../network/tap.js';
import type { EventBus } from './events.js';
import { KeyedLock } from './locks.js';

const KEY = 'networks';
/** QEMU's limit on queues of a multi-queue tap */
export const MAX_QUEUES = 256;

export interface NetworkDeps {
  store: NetworkStore;
  host: NetworkHost;
  events: Pick<EventBus, 'publish'>;
  log: { info(o: object, m?: string): void; warn(o: object, m?: string): void };
  /** the instances whose NICs use a network; wired by the composition root */
  inUse?: (network: string) => string[];
  /** the fixed address of every NIC on a network; wired by the composition root */
  reservations?: (network: string) => AddressReservation[];
  now?: () => Date;
}

/** A network as shown by get(): the record, the host side as it is now, and the DHCP leases. */
export interface NetworkDetails extends NetworkRecord {
  /** null for user networks (nothing on the host) */
  status: { bridge: BridgeState; dnsmasq: { pid: number | null; running: boolean } } | null;
  leases: Lease[];
}

export interface RestoreFailure {
  network: string;
  error: string;
}

function message(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

export class NetworkService {
  private lock = new KeyedLock();
  private inUse: (network: string) => string[];
  private reservations: (network: string) => AddressReservation[];
  /** the taps this daemon made, and what each one's guest may send as */
  private bound = new Map<string, TapBinding>();

  constructor(private d: NetworkDeps) {
    this.inUse = d.inUse ?? (() => []);
    this.reservations = d.reservations ?? (() => []);
  }

  /** Replace the reservations callback (the NIC service, built after this one, knows each NIC's address). */
  setReservations(fn: (network: string) => AddressReservation[]): void {
    this.reservations = fn;
  }

  /** The reservations dnsmasq gets: well-formed and in the network's range (a hand-edited spec goes no further). */
  private hostsOf(net: NetworkRecord): AddressReservation[] {
    return this.reservations(net.name).filter((h) => isReservation(h) && inRange(net, h.ip));
  }

  private startDhcp(net: NetworkRecord): Promise<{ pid: number; adopted: boolean }> {
    return this.d.host.startDhcp(net, this.d.store.filesOf(net.name), this.hostsOf(net));
  }

  /** Replace the in-use callback (the NIC service, built after this one, says which instances use a network). */
  setInUse(fn: (network: string) => string[]): void {
    this.inUse = fn;
  }

  private run<T>(fn: () => Promise<T>): Promise<T> {
    return this.lock.run(KEY, fn);
  }

  /** default first, then the stored networks by name. */
  list(): NetworkRecord[] {
    return this.d.store.list();
  }

  /** A network's record (NETWORK_NOT_FOUND when there is none). */
  record(name: string): NetworkRecord {
    return this.d.store.record(name);
  }

  /** The bridge a network's taps join, or null for a user network. */
  bridgeOf(network: string): string | null {
    return this.record(network).bridge;
  }

  async get(name: string): Promise<NetworkDetails> {
    const r = this.record(name);
    if (r.kind !== 'bridge' || r.bridge === null) return { ...r, status: null, leases: [] };
    const files = this.d.store.filesOf(name);
    const pid = this.d.host.dhcpPid(files);
    return { ...r, status: { bridge: await this.d.host.bridgeState(r.bridge), dnsmasq: { pid, running: pid !== null } }, leases: this.d.host.leases(files) };
  }

  /** The DHCP leases of a bridge network ([] for a user network). */
  leases(network: string): Lease[] {
    return this.record(network).kind === 'bridge' ? this.d.host.leases(this.d.store.filesOf(network)) : [];
  }

  /** The DHCP lease a NIC's MAC holds on a bridge network, or null (none yet, or a user network). */
  leaseFor(network: string, mac: string): Lease | null {
    const m = mac.toLowerCase();
    return this.leases(network).find((l) => l.mac === m) ?? null;
  }

  private bridgeNetworks(): NetworkRecord[] {
    return this.d.store.records().filter((r) => r.kind === 'bridge');
  }

  private async loadFirewall(networks: NetworkRecord[]): Promise<void> {
    const { forwardEnabled } = await this.d.host.loadFirewall(networks);
    if (forwardEnabled) {
      this.d.log.info({}, 'IPv4 forwarding (net.ipv4.ip_forward) switched on for NAT networks; Corral leaves it on');
      this.d.events.publish('host.ip_forward.enabled', null, { reason: 'a NAT network exists' });
    }
  }

  create(req: NetworkRequest): Promise<NetworkRecord> {
    return this.run(async () => {
      const rec = validateNetwork(req, (this.d.now?.() ?? new Date()).toISOString());
      if (this.d.store.exists(rec.name)) throw new CorralError('ALREADY_EXISTS', `network "${rec.name}" already exists`, { name: rec.name, field: 'name' });
      const others = this.bridgeNetworks();
      if (rec.kind === 'bridge') checkConflicts(rec, others, await this.d.host.routes());
      const staging = this.d.store.stage(rec);
      if (rec.kind === 'user') {
        try {
          this.d.store.place(staging, rec.name);
        } catch (e) {
          this.d.store.discard(staging);
          throw e;
        }
      } else {
        await this.realiseNew(rec, staging, others);
      }
      this.d.events.publish('network.created', null, { network: rec.name, kind: rec.kind, cidr: rec.cidr, nat: rec.nat });
      return rec;
    });
  }

  /** Bridge, firewall, record in place, dnsmasq; on any failure each done step is undone, in reverse. */
  private async realiseNew(rec: NetworkRecord, staging: string, others: NetworkRecord[]): Promise<void> {
    const files = this.d.store.filesOf(rec.name);
    const done = { bridge: false, firewall: false, placed: false };
    try {
      done.bridge = true; // a bridge left half-made by ensureBridge is deleted too
      await this.d.host.ensureBridge(rec);
      done.firewall = true;
      await this.loadFirewall([...others, rec]);
      this.d.store.place(staging, rec.name);
      done.placed = true;
      await this.startDhcp(rec);
    } catch (e) {
      const undo = async (what: string, fn: () => Promise<void> | void): Promise<void> => {
        try {
          await fn();
        } catch (err) {
          this.d.log.warn({ network: rec.name, step: what, err: message(err) }, 'undoing a failed network create');
        }
      };
      if (done.placed) {
        await undo('dnsmasq', () => this.d.host.stopDhcp(files));
        await undo('record', () => this.d.store.remove(rec.name));
      } else {
        await undo('staging', () => this.d.store.discard(staging));
      }
      if (done.firewall) await undo('firewall', () => this.d.host.loadFirewall(others).then(() => undefined));
      if (done.bridge && rec.bridge) await undo('bridge', () => this.d.host.deleteBridge(rec.bridge!));
      throw e;
    }
  }

  delete(name: string): Promise<void> {
    return this.run(async () => {
      if (name === DEFAULT_NETWORK) {
        throw new CorralError('INVALID_SPEC', 'name: network "default" is built in (QEMU user-mode networking): it cannot be deleted', { field: 'name', name });
      }
      const rec = this.record(name);
      const users = this.inUse(name);
      if (users.length > 0) {
        throw new CorralError('NETWORK_IN_USE', `network "${name}" cannot be deleted: instances ${users.join(', ')} use it`, { name, instances: users });
      }
      if (rec.kind === 'bridge' && rec.bridge !== null) {
        await this.d.host.stopDhcp(this.d.store.filesOf(name));
        await this.d.host.deleteBridge(rec.bridge);
        await this.loadFirewall(this.bridgeNetworks().filter((n) => n.name !== name));
      }
      this.d.store.remove(name);
      this.d.events.publish('network.deleted', null, { network: name });
    });
  }

  /**
   * At daemon start: make every bridge network real again (after a host reboot nothing of it is left; after a
   * daemon restart everything is, and its dnsmasq is adopted, not started twice). A network that cannot be
   * restored is reported and the others go on. With no bridge network, nothing on the host is touched.
   */
  restore(): Promise<RestoreFailure[]> {
    return this.run(async () => {
      const nets = this.bridgeNetworks();
      const failed = new Map<string, string>();
      if (nets.length === 0) return [];
      for (const n of nets) {
        try {
          const { created } = await this.d.host.ensureBridge(n);
          if (created) this.d.log.info({ network: n.name, bridge: n.bridge }, 'bridge re-created');
        } catch (e) {
          failed.set(n.name, message(e));
        }
      }
      try {
        await this.loadFirewall(nets);
      } catch (e) {
        for (const n of nets) if (!failed.has(n.name)) failed.set(n.name, message(e));
      }
      for (const n of nets) {
        if (failed.has(n.name)) continue;
        try {
          const { pid, adopted } = await this.startDhcp(n);
          this.d.log.info({ network: n.name, pid }, adopted ? 'dnsmasq adopted' : 'dnsmasq started');
        } catch (e) {
          failed.set(n.name, message(e));
        }
      }
      const out = [...failed].map(([network, error]) => ({ network, error }));
      for (const f of out) this.d.log.warn(f, 'network could not be restored');
      return out;
    });
  }

  /**
   * Make tap `ifname` a port of the network's bridge (created when missing; an existing one is reused), its
   * guest allowed to send only as `binding` (its MAC and fixed address, which must be in the network's range):
   * the layer-2 filter is loaded with the tap's rules before the tap is made. Bridge networks only
   * (INVALID_SPEC on field network otherwise). queues > 1 makes a multi-queue tap. A missing bridge (deleted
   * behind Corral's back) is made again first, and dnsmasq is started when it died or restarted when the
   * network's reservations changed.
   */
  async ensureTap(network: string, ifname: string, binding: Omit<TapBinding, 'ifname'>, opts: { queues?: number } = {}): Promise<void> {
    validateIfname('ifname', ifname);
    const queues = opts.queues ?? 1;
    if (!Number.isInteger(queues) || queues < 1 || queues > MAX_QUEUES) throw invalidSpec('queues', `must be an integer from 1 to ${MAX_QUEUES}`);
    await this.run(async () => {
      const r = this.record(network);
      if (r.kind !== 'bridge' || r.bridge === null) {
        throw invalidSpec('network', `network "${printable(network)}" is a ${r.kind} network: taps join bridge networks only`);
      }
      const tap: TapBinding = { ...binding, ifname };
      if (!isReservation(tap) || !inRange(r, tap.ip)) {
        throw invalidSpec('address', `${binding.owner}: address ${printable(tap.ip)} (MAC ${printable(tap.mac)}) is not one of network "${network}"'s range ${r.dhcp?.start}-${r.dhcp?.end}`);
      }
      const state = await this.d.host.bridgeState(r.bridge);
      if (!state.exists || !state.up) {
        await this.d.host.ensureBridge(r);
        await this.loadFirewall(this.bridgeNetworks());
      }
      await this.startDhcp(r); // adopts the running one; restarts a dead one or one with other reservations
      await this.bindTaps([...[...this.bound.values()].filter((t) => t.ifname !== ifname), tap]);
      await this.d.host.createTap(ifname, r.bridge, queues > 1);
    });
  }

  /** Delete a tap (a missing one is fine), then its rules. */
  async deleteTap(ifname: string): Promise<void> {
    validateIfname('ifname', ifname);
    await this.run(async () => {
      await this.d.host.deleteTap(ifname);
      if (this.bound.has(ifname)) await this.bindTaps([...this.bound.values()].filter((t) => t.ifname !== ifname));
    });
  }

  /**
   * After a daemon restart: the layer-2 filter for exactly these taps (every bridge NIC of the records), those
   * that exist on the host; a tap left without its NIC loses its rules.
   */
  setTaps(taps: TapBinding[]): Promise<void> {
    return this.run(async () => {
      const present = new Set((await this.d.host.listTaps('')).map((t) => t.ifname));
      await this.bindTaps(taps.filter((t) => present.has(t.ifname)));
    });
  }

  /** The taps whose rules are loaded now. */
  boundTaps(): TapBinding[] {
    return [...this.bound.values()];
  }

  /** Load the layer-2 filter for exactly these taps; the ones bound change only once it is loaded. */
  private async bindTaps(taps: TapBinding[]): Promise<void> {
    await this.d.host.loadL2Filter(taps);
    this.bound = new Map(taps.map((t) => [t.ifname, t]));
  }

  /** Taps on the host whose names start with prefix (to find ones left behind). */
  taps(prefix: string): Promise<TapInfo[]> {
    return this.d.host.listTaps(prefix);
  }
}
