/**
 * Network interfaces of instances: the first NIC at create, `corral nic attach|detach|list`, live too
 * (netdev_add + device_add; device_del + DEVICE_DELETED + netdev_del), and the host side of each NIC: a tap
 * on the network's bridge, made before QEMU starts (QEMU opens it by name: it runs sandboxed and cannot run
 * scripts) and removed when QEMU is gone. SR-IOV NICs are host devices: the passthrough service binds them.
 *
 * A NIC on a bridge network holds a fixed address of the network's range (`address`, reserved when the NIC is
 * planned: nic-addresses.ts): the network's dnsmasq gives it to the NIC's MAC only, and each tap is made with
 * the layer-2 filter that lets its guest send only as that MAC and address. A vhost-user-net NIC names a back end
 * an admin registered (vhost-user.ts), checked again at every start.
 * Lock order: the instance's lock only.
 */
import { existsSync } from 'node:fs';
import type { AddressReservation } from '../core/addresses.js';
import { CorralError, invalidSpec } from '../core/errors.js';
import type { NetworkRecord } from '../core/networks.js';
import type { VhostUserBackend } from '../core/vhost-user.js';
import type { Lease } from '../network/dnsmasq.js';
import type { TapBinding } from '../network/l2-filter.js';
import { DEFAULT_NETWORK, forwardClashes, planNic, type InstanceNic, type NicHost, type NicRequest } from '../core/nics.js';
import { isActive } from '../core/state.js';
import { chardevAdd, chardevId, netdevArgs, netdevId, nicDevice } from '../qemu/argv-nics.js';
import type { Vm, VmControl } from '../vm/driver.js';
import type { InstanceRow, PlacedNic } from '../store/store.js';
import type { EventBus } from './events.js';
import type { NetworkService } from './networks.js';
import type { InstanceHooks } from './instance-hooks.js';
import type { InstanceService } from './instances.js';
import { planNicOf } from './runtime.js';
import { onLateUnplug, unplugDevice } from './qmp-devices.js';
import { leftBehind } from './left-behind.js';
import { NicAddresses } from './nic-addresses.js';
import { listensAt } from './vhost-user.js';

/** What the NIC service needs of the networks: their kind, and taps on a bridge network. */
export interface NetworkDirectory {
  /** 'user' or 'bridge'; NETWORK_NOT_FOUND otherwise */
  kindOf(name: string): 'user' | 'bridge';
  /** the network's record (its address range); NETWORK_NOT_FOUND otherwise */
  record(name: string): NetworkRecord;
  /** make (or keep) tap `ifname` on the network's bridge, up, its guest sending only as `binding` */
  ensureTap(network: string, ifname: string, binding: Omit<TapBinding, 'ifname'>, opts?: { queues?: number }): Promise<void>;
  /** remove tap `ifname` (nothing if it is not there) and its rules */
  deleteTap(ifname: string): Promise<void>;
  /** after a daemon restart: the rules of exactly these taps (those on the host) */
  setTaps(taps: TapBinding[]): Promise<void>;
  /** the DHCP leases of a bridge network */
  leases(network: string): Lease[];
  /** the taps on the host whose names start with `prefix` (to find those left behind) */
  taps?(prefix: string): Promise<Array<{ ifname: string }>>;
}

/** The network service as the NIC service sees it. */
export function networkDirectory(n: NetworkService): NetworkDirectory {
  return {
    kindOf: (name) => n.record(name).kind,
    record: (name) => n.record(name),
    ensureTap: (network, ifname, binding, opts) => n.ensureTap(network, ifname, binding, opts),
    deleteTap: (ifname) => n.deleteTap(ifname),
    setTaps: (taps) => n.setTaps(taps),
    leases: (network) => n.leases(network),
    taps: (prefix) => n.taps(prefix),
  };
}

/** The registry of vhost-user back ends as the NIC service sees it. */
export interface VhostUserDirectory {
  list(): VhostUserBackend[];
}

export interface NicView extends InstanceNic {
  /** the host tap device (bridge networks) */
  tap: string | null;
  /** the guest's address from the network's DHCP leases, when known */
  ip: string | null;
}

export interface NicDeps {
  instances: InstanceService;
  networks: NetworkDirectory;
  events: EventBus;
  log: { info(o: object, m?: string): void; warn(o: object, m?: string): void };
  /** /dev/vhost-net present? (checked at each use; injectable for tests) */
  vhostNet?: () => boolean;
  unplugTimeoutMs?: number;
  /** an SR-IOV NIC's PF, checked (it exists, it does SR-IOV) and in full form; by the passthrough service */
  sriovPf?: (pf: string) => string;
  /** the vhost-user back ends an admin registered (none when not given) */
  vhostUser?: VhostUserDirectory;
}

export class NicService {
  /** NICs an attach has planned and not stored yet: their MAC, address and back end are taken */
  private inFlight: Array<{ instance: string; nic: InstanceNic }> = [];
  private addresses: NicAddresses;

  constructor(private d: NicDeps) {
    this.addresses = new NicAddresses({
      instances: d.instances, networks: d.networks, log: d.log, inFlight: () => this.inFlight.map((f) => f.nic), kindOf: (n) => this.kindOrNull(n),
    });
    d.instances.setNicPlanner((uuid, req) => {
      const network = req.network === undefined || req.network === 'user' ? DEFAULT_NETWORK : req.network;
      const r: NicRequest = { network, model: req.nicModel };
      if (req.forwards !== undefined) r.forwards = req.forwards;
      if (r.model === 'vhost-user-net' || r.model === 'sriov') throw invalidSpec('nicModel', `attach a ${r.model} NIC with corral nic attach`);
      const nic = planNic(uuid, [], r, this.host(), this.takenMacs());
      this.checkForwards(nic);
      return [nic];
    });
    d.instances.addLaunchContributor(() => ({ networkKind: (n) => this.kindOrNull(n) }));
  }

  private host(): NicHost {
    return {
      networkKind: (n) => this.d.networks.kindOf(n),
      vhostNet: (this.d.vhostNet ?? (() => existsSync('/dev/vhost-net')))(),
      isSocket: listensAt,
      vhostUserBackend: (name) => {
        const b = this.backends().find((x) => x.name === name);
        if (!b) throw invalidSpec('backend', `no vhost-user back end "${name}" is registered (corral vhost-user list; an admin adds one with corral vhost-user add NAME SOCKET)`);
        return b;
      },
      reserveAddress: (network) => this.addresses.reserve(network),
    };
  }

  private backends(): VhostUserBackend[] {
    return this.d.vhostUser?.list() ?? [];
  }

  /** The MACs in use on this host, as planNic asks: the index of stored NICs, and those being attached. */
  private takenMacs(): { has(mac: string): boolean } {
    return { has: (mac) => this.inFlight.some((f) => f.nic.mac === mac) || this.d.instances.macInUse(mac) };
  }

  private checkForwards(nic: InstanceNic): void {
    if (!nic.forwards?.length) return;
    const clash = forwardClashes(nic, [...this.d.instances.nicsWithForwards(), ...this.inFlight]);
    if (clash) throw new CorralError('ALREADY_EXISTS', `forwards: ${clash}`, { field: 'forwards' });
  }

  /** Every NIC on the host: stored, and planned by an attach still running. */
  private allNics(): PlacedNic[] {
    return [...this.d.instances.listRows().flatMap((r) => r.spec.nics.map((nic) => ({ instance: r.name, nic }))), ...this.inFlight];
  }

  /** Instances with a NIC on `network` (a network in use cannot be deleted). */
  usersOf(network: string): string[] {
    return this.d.instances.listRows().filter((r) => r.spec.nics.some((n) => n.network === network)).map((r) => r.name);
  }

  /** The fixed addresses of the NICs on a bridge network (its dnsmasq hands them out). */
  reservationsOn(network: string): AddressReservation[] {
    return this.addresses.reservationsOn(network);
  }

  /** The NICs ("instance/nic") on a vhost-user back end: naming it, or (made before the registry) its socket. */
  backendUsers(b: VhostUserBackend): string[] {
    return this.allNics()
      .filter(({ nic }) => nic.model === 'vhost-user-net' && (nic.backend === b.name || (nic.backend === undefined && nic.socket === b.socket)))
      .map(({ instance, nic }) => `${instance}/${nic.id}`);
  }

  /**
   * At daemon start, before networks are restored: every bridge NIC holds a fixed address (NICs made before
   * Corral reserved them get one, keeping their current lease's address when it is free).
   */
  assignAddresses(): void {
    this.addresses.ensureAll();
  }

  /** After reconcile and the sweep of stray taps: the layer-2 filter holds the rules of every bridge NIC whose tap is on the host. */
  async restoreTaps(): Promise<void> {
    const bound: TapBinding[] = [];
    for (const r of this.d.instances.listRows()) {
      for (const t of this.taps(r)) {
        if (t.binding) bound.push({ ...t.binding, ifname: t.ifname });
        else if (isActive(r.state)) this.d.log.warn({ instance: r.name, nic: t.nic.id, tap: t.ifname }, 'NIC has no fixed address (its network\'s range is full): its guest is not filtered until it starts again');
      }
    }
    await this.d.networks.setTaps(bound);
  }

  /**
   * At daemon start, after reconcile: remove Corral's taps (ct<uuid8>n<N>) that no live instance needs, left by a
   * daemon that died between making them and starting QEMU, or between QEMU's end and their removal.
   */
  async sweepTaps(): Promise<string[]> {
    const needed = new Set(this.d.instances.listRows().filter((r) => isActive(r.state) || r.state === 'error').flatMap((r) => this.taps(r).map((t) => t.ifname)));
    const gone: string[] = [];
    for (const t of (await this.d.networks.taps?.('ct')) ?? []) {
      if (!/^ct[0-9a-f]{8}n\d+$/.test(t.ifname) || needed.has(t.ifname)) continue;
      await this.d.networks.deleteTap(t.ifname);
      gone.push(t.ifname);
    }
    return gone;
  }

  list(name: string): NicView[] {
    const row = this.d.instances.rowOf(name);
    const taps = this.taps(row);
    return row.spec.nics.map((n) => {
      const tap = taps.find((t) => t.nic.id === n.id)?.ifname ?? null;
      const lease = tap && n.network ? this.d.networks.leases(n.network).find((l) => l.mac === n.mac) : undefined;
      return { ...n, tap, ip: lease?.ip ?? null };
    });
  }

  /**
   * The taps an instance's NICs need: those on bridge networks (from the launch plan, as QEMU sees them), with
   * what each guest may send as (null for a NIC that holds no address yet).
   */
  private taps(row: InstanceRow): Array<{ nic: InstanceNic; ifname: string; binding: Omit<TapBinding, 'ifname'> | null }> {
    const out: Array<{ nic: InstanceNic; ifname: string; binding: Omit<TapBinding, 'ifname'> | null }> = [];
    for (const nic of row.spec.nics) {
      const p = planNicOf(row.uuid, nic, (n) => this.kindOrNull(n));
      if (p?.backend.type !== 'tap') continue;
      const binding = nic.address === undefined ? null : { mac: nic.mac, ip: nic.address, owner: `${row.name}/${nic.id}` };
      out.push({ nic, ifname: p.backend.ifname, binding });
    }
    return out;
  }

  private kindOrNull(network: string): 'user' | 'bridge' | null {
    try {
      return this.d.networks.kindOf(network);
    } catch {
      return null;
    }
  }

  /** A vhost-user-net NIC's back end must be registered now, with the socket the NIC was given, and listening. */
  private checkBackend(n: InstanceNic): void {
    const b = n.backend !== undefined ? this.backends().find((x) => x.name === n.backend) : this.backends().find((x) => x.socket === n.socket);
    const field = n.backend !== undefined ? 'backend' : 'socket';
    if (!b || b.socket !== n.socket) {
      const what = n.backend !== undefined ? `back end "${n.backend}" (${n.socket})` : `socket ${n.socket}`;
      throw new CorralError('DEVICE_UNAVAILABLE', `${field}: NIC ${n.id}'s vhost-user ${what} is not a registered vhost-user back end (an admin registers it: corral vhost-user add NAME ${n.socket})`, { nic: n.id, field });
    }
    if (!listensAt(b.socket)) throw new CorralError('DEVICE_UNAVAILABLE', `NIC ${n.id}: no vhost-user back end listens on ${b.socket} ("${b.name}")`, { nic: n.id, field });
  }

  hooks(): InstanceHooks {
    return {
      beforeLaunch: async (stale) => {
        const host = this.host();
        for (const n of stale.spec.nics) {
          if (n.model === 'vhost-net' && !host.vhostNet) {
            throw new CorralError('DEVICE_UNAVAILABLE', `NIC ${n.id} is vhost-net, but this host has no /dev/vhost-net (modprobe vhost_net)`, { nic: n.id });
          }
          if (n.model === 'vhost-user-net') this.checkBackend(n);
          if (n.network !== null && n.model !== 'sriov') host.networkKind(n.network); // NETWORK_NOT_FOUND if it went away
        }
        const row = this.addresses.ensure(stale); // a NIC stored without a fixed address gets one now
        for (const { nic, ifname, binding } of this.taps(row)) await this.d.networks.ensureTap(nic.network!, ifname, binding!, { queues: nic.queues });
      },
      launched: async (row, vm) => this.watchLateUnplugs(row, vm),
      adopted: async (row, vm) => this.watchLateUnplugs(row, vm),
      // awaited before the stop returns and before the next start, so a new tap is never removed by an old exit
      exited: async (row) => {
        for (const { ifname } of this.taps(row)) {
          await this.d.networks.deleteTap(ifname).catch((e: Error) => this.d.log.warn({ instance: row.name, tap: ifname, err: e.message }, 'cannot remove tap'));
        }
      },
    };
  }

  attach(name: string, req: NicRequest): Promise<NicView[]> {
    return this.d.instances.withLock(name, async () => {
      const row = this.d.instances.rowOf(name);
      const nic = planNic(row.uuid, row.spec.nics, req, this.host(), this.takenMacs());
      this.checkForwards(nic);
      if (nic.sriov && this.d.sriovPf) nic.sriov.pf = this.d.sriovPf(nic.sriov.pf);
      const live = isActive(row.state);
      if (live) {
        if (nic.model === 'sriov') throw invalidSpec('model', 'an SR-IOV VF is attached while the instance is stopped');
        const planned = { instance: name, nic };
        this.inFlight.push(planned); // its MAC and address stay taken while QEMU plugs it in
        try {
          await this.hotplug(row, this.d.instances.live(name).vm, nic);
        } finally {
          this.inFlight = this.inFlight.filter((f) => f !== planned);
        }
      }
      this.d.instances.updateSpec(name, { nics: [...row.spec.nics, nic] });
      this.d.events.publish('instance.nic.attached', name, { id: nic.id, model: nic.model, network: nic.network, mac: nic.mac, live });
      return this.list(name);
    });
  }

  detach(name: string, which: string): Promise<NicView[]> {
    return this.d.instances.withLock(name, async () => {
      const row = this.d.instances.rowOf(name);
      const key = which.toLowerCase();
      const nic = row.spec.nics.find((n) => n.id === key || n.mac === key);
      if (!nic) throw new CorralError('NIC_NOT_FOUND', `instance "${name}" has no NIC "${which}" (give its id, e.g. net1, or its MAC)`, { name, nic: which });
      const live = isActive(row.state);
      if (live) {
        if (nic.model === 'sriov') throw invalidSpec('model', 'an SR-IOV VF is detached while the instance is stopped');
        const { vm } = this.d.instances.live(name);
        await unplugDevice(vm, nic.id, this.d.unplugTimeoutMs ?? 15_000, `NIC ${nic.id}`);
        await this.removeBackend(row, vm, nic);
      }
      this.d.instances.updateSpec(name, { nics: row.spec.nics.filter((n) => n.id !== nic.id) });
      this.d.events.publish('instance.nic.detached', name, { id: nic.id, mac: nic.mac, live });
      return this.list(name);
    });
  }

  /** What is left of a NIC whose device the guest let go: its netdev (and chardev) in QEMU, its tap. */
  private async removeBackend(row: InstanceRow, vm: VmControl, nic: InstanceNic): Promise<void> {
    await vm.netdevDel(netdevId(nic)).catch(leftBehind(this.d.log, `netdev ${netdevId(nic)} in QEMU`, { instance: row.name }));
    if (nic.model === 'vhost-user-net') await vm.chardevRemove(chardevId(nic)).catch(leftBehind(this.d.log, `chardev ${chardevId(nic)} in QEMU`, { instance: row.name }));
    const tap = this.taps(row).find((t) => t.nic.id === nic.id);
    if (tap) await this.d.networks.deleteTap(tap.ifname);
  }

  /**
   * A guest that did not answer an unplug in time (one still booting) may carry it out later: its detach
   * answered TIMEOUT and the records kept the NIC. When QEMU then says a recorded NIC's device is gone, the
   * detach is finished: its back end goes, the records drop it and `instance.nic.detached` says so.
   */
  private watchLateUnplugs(row: InstanceRow, vm: Vm): void {
    const { name, uuid } = row;
    onLateUnplug(vm, (id) => /^net\d+$/.test(id), (id) => this.finishLateUnplug(name, uuid, vm, id), (id, e) => {
      this.d.log.warn({ instance: name, device: id, err: e.message }, 'cannot finish the detach of a NIC the guest released late');
    });
  }

  private finishLateUnplug(name: string, uuid: string, vm: Vm, id: string): Promise<void> {
    return this.d.instances.withLock(name, async () => {
      const row = this.d.instances.rowOf(name);
      if (row.uuid !== uuid || !isActive(row.state)) return;
      const nic = row.spec.nics.find((n) => n.id === id);
      // a detach that went as asked, or a NIC plugged in again since
      if (!nic || (await vm.peripherals()).includes(id)) return;
      await this.removeBackend(row, vm, nic);
      this.d.instances.updateSpec(name, { nics: row.spec.nics.filter((n) => n.id !== id) });
      this.d.events.publish('instance.nic.detached', name, { id, mac: nic.mac, live: true, finished: 'the guest released it after its detach timed out' });
    });
  }

  private async hotplug(row: InstanceRow, vm: VmControl, nic: InstanceNic): Promise<void> {
    const p = planNicOf(row.uuid, nic, (n) => this.kindOrNull(n));
    if (!p) return;
    if (p.backend.type === 'vhost-user') {
      // vhost-user needs the guest memory shared with the back end, which is decided when QEMU starts.
      const shared = row.spec.nics.some((n) => n.model === 'vhost-user-net');
      if (!shared) throw invalidSpec('model', 'vhost-user-net needs the guest memory shared, which it is not yet: stop the instance, attach, start');
      await vm.chardevAdd(chardevAdd(p) ?? {});
    }
    const tap = p.backend.type === 'tap' ? p.backend.ifname : null;
    if (tap) await this.d.networks.ensureTap(nic.network!, tap, { mac: nic.mac, ip: nic.address ?? '', owner: `${row.name}/${nic.id}` }, { queues: nic.queues });
    try {
      await vm.netdevAdd(netdevArgs(p));
      try {
        await vm.deviceAdd(nicDevice(p));
      } catch (e) {
        await vm.netdevDel(netdevId(p)).catch(leftBehind(this.d.log, `netdev ${netdevId(p)} in QEMU`, { instance: row.name }));
        throw e;
      }
    } catch (e) {
      if (tap) await this.d.networks.deleteTap(tap).catch(leftBehind(this.d.log, `tap ${tap}`, { instance: row.name }));
      if (p.backend.type === 'vhost-user') await vm.chardevRemove(chardevId(p)).catch(leftBehind(this.d.log, `chardev ${chardevId(p)} in QEMU`, { instance: row.name }));
      throw new CorralError('QEMU_FAILED', `hotplug of NIC ${nic.id} failed: ${(e as Error).message}`);
    }
  }
}
