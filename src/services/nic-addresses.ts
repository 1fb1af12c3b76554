/**
 * The fixed addresses of NICs on bridge networks (core/addresses.ts holds the arithmetic): reserving one for a
 * new NIC, the reservations of a network (what its dnsmasq hands out), and giving one to NICs stored without
 * (made before Corral reserved addresses; at daemon start and again at each start of the instance). Such a NIC
 * keeps the address its current lease gave it when that is still free.
 *
 * The NICs that count are every stored instance's and the ones an attach has planned but not stored yet (in
 * flight): two attaches running at once never take one address.
 */
import { inRange, pickAddress, type AddressReservation } from '../core/addresses.js';
import type { InstanceNic } from '../core/nics.js';
import type { NetworkRecord } from '../core/networks.js';
import type { InstanceRow } from '../store/store.js';
import type { Lease } from '../network/dnsmasq.js';
import type { InstanceService } from './instances.js';

export interface NicAddressDeps {
  instances: Pick<InstanceService, 'listRows' | 'updateSpec'>;
  /** a network's record (NETWORK_NOT_FOUND otherwise) and its DHCP leases */
  networks: { record(name: string): NetworkRecord; leases(network: string): Lease[] };
  log: { info(o: object, m?: string): void; warn(o: object, m?: string): void };
  /** NICs planned by an attach that is still running (not stored yet) */
  inFlight: () => InstanceNic[];
  /** the kind of a network, or null when it is gone */
  kindOf: (network: string) => 'user' | 'bridge' | null;
}

/** Is this NIC on a bridge network (so it holds a fixed address and has a tap)? */
export function onBridge(n: InstanceNic, kindOf: (network: string) => 'user' | 'bridge' | null): boolean {
  return n.network !== null && n.model !== 'sriov' && n.model !== 'vhost-user-net' && kindOf(n.network) === 'bridge';
}

export class NicAddresses {
  constructor(private d: NicAddressDeps) {}

  /** Every NIC that holds or may hold an address: stored ones (but those of `except`, an instance uuid) and in flight. */
  private nics(except?: string): InstanceNic[] {
    return [...this.d.instances.listRows().filter((r) => r.uuid !== except).flatMap((r) => r.spec.nics), ...this.d.inFlight()];
  }

  private held(network: string, nics: InstanceNic[]): Set<string> {
    return new Set(nics.filter((n) => n.network === network && n.address !== undefined).map((n) => n.address!));
  }

  /** A free address of the network's range, avoiding ones other machines hold live leases on. */
  private pick(net: NetworkRecord, held: ReadonlySet<string>, macs: ReadonlySet<string>): string {
    const now = Date.now();
    const leased = this.d.networks.leases(net.name).filter((l) => !macs.has(l.mac) && (l.expires === null || Date.parse(l.expires) > now));
    return pickAddress(net, held, new Set(leased.map((l) => l.ip)));
  }

  /** An address for a new NIC on `network` (INSUFFICIENT_RESOURCES naming the network when none is free). */
  reserve(network: string): string {
    const nics = this.nics();
    return this.pick(this.d.networks.record(network), this.held(network, nics), new Set(nics.map((n) => n.mac)));
  }

  /** What the network's dnsmasq hands out: each NIC's MAC and address. */
  reservationsOn(network: string): AddressReservation[] {
    return this.nics().filter((n) => n.network === network && n.address !== undefined).map((n) => ({ mac: n.mac, ip: n.address! }));
  }

  /**
   * The row with an address on each of its bridge NICs that lacks one, holds one outside its network's range,
   * or one another NIC holds too; stored when anything changed. A NIC without one first gets the address of its
   * current lease, when that is in the range and free (a guest that runs through a daemon upgrade keeps it).
   */
  ensure(row: InstanceRow): InstanceRow {
    const others = this.nics(row.uuid);
    const macs = new Set([...others, ...row.spec.nics].map((n) => n.mac));
    const done: InstanceNic[] = [];
    let changed = false;
    for (const [i, n] of row.spec.nics.entries()) {
      if (!onBridge(n, this.d.kindOf)) {
        done.push(n);
        continue;
      }
      const net = this.d.networks.record(n.network!);
      if (n.address !== undefined && inRange(net, n.address) && !this.held(net.name, [...others, ...done]).has(n.address)) {
        done.push(n);
        continue;
      }
      // a new one is none that any other NIC holds, this instance's later NICs included
      const held = this.held(net.name, [...others, ...done, ...row.spec.nics.slice(i + 1)]);
      const lease = this.d.networks.leases(net.name).find((l) => l.mac === n.mac);
      const address = lease && inRange(net, lease.ip) && !held.has(lease.ip) ? lease.ip : this.pick(net, held, macs);
      this.d.log.info({ instance: row.name, nic: n.id, network: net.name, address, was: n.address ?? null }, 'NIC given a fixed address on its bridge network');
      done.push({ ...n, address });
      changed = true;
    }
    return changed ? this.d.instances.updateSpec(row.name, { nics: done }) : row;
  }

  /** At daemon start: every instance's bridge NICs hold an address (one that cannot get one fails at its start). */
  ensureAll(): void {
    for (const row of this.d.instances.listRows()) {
      try {
        this.ensure(row);
      } catch (e) {
        this.d.log.warn({ instance: row.name, err: (e as Error).message }, 'cannot give a NIC a fixed address');
      }
    }
  }
}
