/**
 * Host PCI devices for instances: `corral passthrough attach|detach|list` (whole devices, cold-plug only) and
 * the host side of every start: each passthrough device's IOMMU group goes to vfio-pci, and each SR-IOV NIC
 * takes a free VF of its PF, gets its MAC (and VLAN) set on the PF and goes to vfio-pci too; all of it is
 * given back when QEMU is gone (or the start fails).
 *
 * What a start bound is recorded in `<data>/instances/<uuid>/bindings.json` (not the run dir: a start wipes
 * that, and the record must outlive a daemon restart while QEMU runs on). Each device is written there before
 * it is bound (with the drivers it is about to leave), so a daemon that dies midway still knows what to give
 * back. Binding is serialised across instances, so two starts never take the same VF.
 * Lock order: the instance's lock, then this service's bind lock.
 */
import { chmodSync, chownSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { CorralError, invalidSpec, isCorralError } from '../core/errors.js';
import { findHostdev, planHostdevAttach, type InstanceHostdev } from '../core/hostdevs.js';
import { instancePaths } from '../core/paths.js';
import { isActive } from '../core/state.js';
import { writeJsonAtomic } from '../host/fs-atomic.js';
import type { RunAs } from '../host/run-as.js';
import { iommuGroupMembers, listPciDevices, parsePciAddress, readPciDevice, type PciDevice } from '../host/pci.js';
import { pickFreeVf, realExec, setVfCount, setVfMac, sriovState, type Exec, type SriovState } from '../host/sriov.js';
import { bindVfio, planVfioBind, realFs, releaseVfio, type FsOps, type VfioBinding } from '../host/vfio.js';
import type { LaunchPlan } from '../qemu/argv.js';
import type { InstanceRow } from '../store/store.js';
import type { EventBus } from './events.js';
import type { InstanceHooks } from './instance-hooks.js';
import type { InstanceService } from './instances.js';
import { KeyedLock } from './locks.js';

/** One device a start gave to an instance. */
export interface BoundDevice {
  kind: 'passthrough' | 'sriov-vf';
  /** hostdevN, or the id of the SR-IOV NIC */
  id: string;
  /** the device QEMU gets (the VF, for sriov-vf) */
  address: string;
  /** sriov-vf: the PF, the VF's index on it, and the MAC and VLAN set on it */
  pf?: string;
  vf?: number;
  mac?: string;
  vlan?: number | null;
  /** what binding moved, with the drivers to give it back to */
  binding: VfioBinding;
  /** false while the binding is under way (binding then holds what it is about to move) */
  complete: boolean;
}

export interface BindingsRecord {
  uuid: string;
  name: string;
  devices: BoundDevice[];
}

/** A passthrough device or SR-IOV NIC of an instance, as `corral passthrough list` shows it. */
export interface HostdevView {
  id: string;
  kind: 'passthrough' | 'sriov-vf';
  /** the host device (sriov-vf: the VF taken at start; null while stopped) */
  address: string | null;
  /** sriov-vf: the physical function */
  pf: string | null;
  vlan: number | null;
  className: string | null;
  driver: string | null;
  iommuGroup: number | null;
  /** bound to vfio-pci for this instance now */
  bound: boolean;
}

export type PassthroughInstances = Pick<InstanceService, 'addHooks' | 'addLaunchContributor' | 'withLock' | 'rowOf' | 'updateSpec' | 'listRows'>;

export interface PassthroughDeps {
  instances: PassthroughInstances;
  dataDir: string;
  events: Pick<EventBus, 'publish'>;
  log: { info?(o: object, m?: string): void; warn(o: object, m?: string): void };
  /** sysfs root (default $CORRAL_SYSFS_ROOT or /sys) and /dev root (default $CORRAL_DEV_ROOT or /dev) */
  sys?: string;
  dev?: string;
  /** sysfs writes (default: the real file system) and `ip` (default: run it) */
  ops?: FsOps;
  exec?: Exec;
  /** QEMU's unprivileged user: each bound group's /dev/vfio/<group> is given to it while the instance holds it */
  runAs?: RunAs;
}

const RECORD = 'bindings.json';
/** How a VF shows in a stopped instance's device list: which VF it gets is decided at start. */
export const VF_AT_START = '(a free VF, taken at start)';

export class PassthroughService {
  readonly sys: string;
  readonly dev: string;
  private ops: FsOps;
  private exec: Exec;
  private records = new Map<string, BindingsRecord>();
  private bindLock = new KeyedLock();

  constructor(private d: PassthroughDeps) {
    this.sys = d.sys ?? process.env.CORRAL_SYSFS_ROOT ?? '/sys';
    this.dev = d.dev ?? process.env.CORRAL_DEV_ROOT ?? '/dev';
    this.ops = d.ops ?? realFs;
    this.exec = d.exec ?? realExec;
    this.loadRecords();
    d.instances.addLaunchContributor((row) => ({ hostdevs: this.launchHostdevs(row) }));
  }

  // ---- the record ----

  private recordPath(uuid: string): string {
    return join(instancePaths(this.d.dataDir, uuid).dir, RECORD);
  }

  private readRecord(uuid: string): BindingsRecord | null {
    try {
      const r = JSON.parse(readFileSync(this.recordPath(uuid), 'utf8')) as BindingsRecord;
      return r && r.uuid === uuid && Array.isArray(r.devices) ? r : null;
    } catch {
      return null;
    }
  }

  /** Every record on disk: what instances hold after a daemon restart (before adoption even runs). */
  private loadRecords(): void {
    const dir = join(this.d.dataDir, 'instances');
    if (!existsSync(dir)) return;
    for (const uuid of readdirSync(dir)) {
      const r = this.readRecord(uuid);
      if (r) this.records.set(uuid, r);
    }
  }

  private save(rec: BindingsRecord): void {
    const path = this.recordPath(rec.uuid);
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    writeJsonAtomic(path, rec, 0o600);
    this.records.set(rec.uuid, rec);
  }

  private drop(uuid: string): void {
    rmSync(this.recordPath(uuid), { force: true });
    this.records.delete(uuid);
  }

  /** Every address given to an instance now (bound devices, their IOMMU group mates moved with them, VFs). */
  inUse(exceptUuid?: string): Set<string> {
    return new Set(this.holders(exceptUuid).keys());
  }

  /** address -> the instance holding it, from the records. */
  private holders(exceptUuid?: string): Map<string, string> {
    const out = new Map<string, string>();
    for (const r of this.records.values()) {
      if (r.uuid === exceptUuid) continue;
      for (const dv of r.devices) {
        out.set(dv.address, r.name);
        for (const m of dv.binding.members) out.set(m.address, r.name);
      }
    }
    return out;
  }

  /** What attach refuses: devices bound for other instances, and devices in other instances' specs. */
  private claims(row: InstanceRow): Map<string, string> {
    const out = this.holders(row.uuid);
    for (const r of this.d.instances.listRows()) {
      if (r.name === row.name) continue;
      for (const h of r.spec.hostdevs ?? []) if (!out.has(h.address)) out.set(h.address, r.name);
    }
    return out;
  }

  // ---- checks ----

  /**
   * A device an instance may be given: it exists (PCI_DEVICE_NOT_FOUND), is not a bridge (INVALID_SPEC), no
   * device of its IOMMU group (nor a VF of it, for a PF) is held by another instance (DEVICE_IN_USE naming it),
   * and the group is viable (IOMMU_GROUP_NOT_VIABLE naming the device on a host driver); `together` are the
   * devices the same instance is given, which may share the group.
   */
  private checkDevice(instance: string, address: string, claims: ReadonlyMap<string, string>, together: ReadonlySet<string>): PciDevice {
    const dev = readPciDevice(this.sys, address);
    if (dev.classCode?.startsWith('06')) {
      throw new CorralError('INVALID_SPEC', `address: ${dev.address} is a ${dev.className}; pass through the devices behind it, not the bridge`, { field: 'address', address: dev.address });
    }
    const group = dev.iommuGroup === null ? [dev.address] : [...new Set([dev.address, ...iommuGroupMembers(this.sys, dev.iommuGroup)])];
    for (const a of group) {
      const who = claims.get(a);
      if (who !== undefined) {
        const how = a === dev.address ? '' : ` (it shares IOMMU group ${dev.iommuGroup} with ${dev.address})`;
        throw new CorralError('DEVICE_IN_USE', `${a}${how} is given to instance "${who}"`, { address: dev.address, device: a, instance: who, group: dev.iommuGroup });
      }
    }
    if (dev.sriov && 'vfs' in dev.sriov) {
      const vf = dev.sriov.vfs.find((v) => claims.has(v));
      if (vf) {
        throw new CorralError('DEVICE_IN_USE', `${dev.address} is an SR-IOV PF whose VF ${vf} is given to instance "${claims.get(vf)}"`, {
          address: dev.address, device: vf, instance: claims.get(vf),
        });
      }
    }
    try {
      planVfioBind(this.sys, dev.address, { together });
    } catch (e) {
      const other = isCorralError(e) && e.code === 'IOMMU_GROUP_NOT_VIABLE' ? e.details.device : undefined;
      if (!isCorralError(e) || typeof other !== 'string') throw e;
      throw new CorralError(e.code, `${e.message}; to give instance "${instance}" both, attach them together: corral passthrough attach ${instance} ${dev.address} ${other}`, e.details);
    }
    return dev;
  }

  /** A PF for an SR-IOV NIC: its full address if it exists and does SR-IOV (for the NIC service's attach). */
  checkPf(pf: string): string {
    return sriovState(this.sys, parsePciAddress(pf, 'pf')).pf;
  }

  /** A PF's VFs, those given to instances shown as not free. */
  sriov(pf: string): SriovState {
    return sriovState(this.sys, pf, this.inUse());
  }

  /** The host's PCI devices (ids, class, driver, IOMMU group, NUMA node, SR-IOV). */
  pciDevices(): PciDevice[] {
    return listPciDevices(this.sys);
  }

  /**
   * Set a PF's VF count, under the bind lock: a start taking a VF of it and this change do not interleave, and a
   * VF given to an instance blocks the change (DEVICE_IN_USE).
   */
  setVfCount(pf: string, vfs: number): Promise<SriovState> {
    return this.bindLock.run('bind', async () => setVfCount(this.sys, pf, vfs, { inUse: this.inUse(), ops: this.ops }));
  }

  // ---- attach / detach / list ----

  list(name: string): HostdevView[] {
    const row = this.d.instances.rowOf(name);
    const rec = this.records.get(row.uuid);
    const info = (address: string | null): Pick<HostdevView, 'className' | 'driver' | 'iommuGroup'> => {
      if (address === null) return { className: null, driver: null, iommuGroup: null };
      try {
        const dev = readPciDevice(this.sys, address);
        return { className: dev.className, driver: dev.driver, iommuGroup: dev.iommuGroup };
      } catch {
        return { className: null, driver: null, iommuGroup: null };
      }
    };
    const out: HostdevView[] = (row.spec.hostdevs ?? []).map((h) => ({
      id: h.id, kind: 'passthrough', address: h.address, pf: null, vlan: null, ...info(h.address),
      bound: rec?.devices.some((dv) => dv.id === h.id && dv.complete) ?? false,
    }));
    for (const n of row.spec.nics) {
      if (n.model !== 'sriov' || !n.sriov) continue;
      const dv = rec?.devices.find((x) => x.id === n.id);
      const address = dv?.address ?? null;
      out.push({ id: n.id, kind: 'sriov-vf', address, pf: n.sriov.pf, vlan: n.sriov.vlan, ...info(address), bound: dv?.complete ?? false });
    }
    return out;
  }

  private refuseLive(row: InstanceRow, what: string): void {
    if (isActive(row.state)) {
      throw new CorralError('INVALID_STATE', `instance "${row.name}" is ${row.state}: PCI devices are ${what} while it is stopped (VFIO hotplug is not supported); stop it first`, {
        state: row.state,
      });
    }
  }

  /**
   * Give one or more host devices to a stopped instance (several at once: the devices of one IOMMU group that
   * are all on host drivers, such as a GPU and its HDMI audio). All or nothing: any refusal changes nothing.
   */
  attach(name: string, address: unknown): Promise<HostdevView[]> {
    return this.d.instances.withLock(name, async () => {
      const row = this.d.instances.rowOf(name);
      const asked = Array.isArray(address) ? (address as unknown[]) : [address];
      if (asked.length === 0) throw invalidSpec('address', 'give at least one PCI address');
      const addrs = asked.map((a) => parsePciAddress(typeof a === 'string' ? a : String(a)));
      this.refuseLive(row, 'attached');
      let hostdevs = row.spec.hostdevs ?? [];
      for (const a of addrs) hostdevs = planHostdevAttach(name, hostdevs, a);
      const together = new Set(hostdevs.map((h) => h.address));
      const claims = this.claims(row);
      const devs = addrs.map((a) => this.checkDevice(name, a, claims, together));
      this.d.instances.updateSpec(name, { hostdevs });
      for (const dev of devs) {
        const id = hostdevs.find((h) => h.address === dev.address)?.id;
        this.d.events.publish('instance.hostdev.attached', name, { id, address: dev.address, className: dev.className, iommuGroup: dev.iommuGroup });
      }
      return this.list(name);
    });
  }

  detach(name: string, which: string): Promise<HostdevView[]> {
    return this.d.instances.withLock(name, async () => {
      const row = this.d.instances.rowOf(name);
      let addr: string | null = null;
      try {
        addr = parsePciAddress(which);
      } catch {
        /* an id */
      }
      const h = findHostdev(name, row.spec.hostdevs ?? [], which, addr);
      this.refuseLive(row, 'detached');
      this.d.instances.updateSpec(name, { hostdevs: (row.spec.hostdevs ?? []).filter((x) => x.id !== h.id) });
      this.d.events.publish('instance.hostdev.detached', name, { id: h.id, address: h.address });
      return this.list(name);
    });
  }

  // ---- start and stop ----

  hooks(): InstanceHooks {
    return {
      beforeLaunch: (row) => this.bindLock.run('bind', () => this.bindAll(row)),
      exited: (row) => this.releaseAll(row.uuid, row.name),
      adopted: async (row) => {
        const rec = this.readRecord(row.uuid);
        if (rec) this.records.set(row.uuid, rec);
      },
      deleted: (row) => this.releaseAll(row.uuid, row.name),
    };
  }

  /** The launch plan's host devices: what this start bound, or (stopped) what the next start will bind. */
  private launchHostdevs(row: InstanceRow): NonNullable<LaunchPlan['hostdevs']> {
    const rec = this.records.get(row.uuid);
    if (rec) {
      return rec.devices.filter((dv) => dv.complete).map((dv) => (dv.kind === 'sriov-vf'
        ? { id: dv.id, address: dv.address, kind: dv.kind, mac: dv.mac!, pf: dv.pf! }
        : { id: dv.id, address: dv.address, kind: dv.kind }));
    }
    const out: NonNullable<LaunchPlan['hostdevs']> = (row.spec.hostdevs ?? []).map((h: InstanceHostdev) => ({ id: h.id, address: h.address, kind: 'passthrough' as const }));
    for (const n of row.spec.nics) {
      if (n.model === 'sriov' && n.sriov) out.push({ id: n.id, address: VF_AT_START, kind: 'sriov-vf', mac: n.mac, pf: n.sriov.pf });
    }
    return out;
  }

  /**
   * Bind every device of the instance for this start and record it. A failure gives back what this start
   * bound (and the error says what failed); nothing stays on vfio-pci.
   */
  private async bindAll(row: InstanceRow): Promise<void> {
    const stale = this.records.get(row.uuid) ?? this.readRecord(row.uuid);
    if (stale) this.releaseAll(row.uuid, row.name); // a previous run's devices that were never given back
    const vfNics = row.spec.nics.filter((n) => n.model === 'sriov');
    const hostdevs = row.spec.hostdevs ?? [];
    if (hostdevs.length === 0 && vfNics.length === 0) return;
    const holders = this.holders(row.uuid);
    const inUse = new Set(holders.keys());
    const rec: BindingsRecord = { uuid: row.uuid, name: row.name, devices: [] };
    const together = new Set(hostdevs.map((h) => parsePciAddress(h.address)));
    const bind = (entry: Omit<BoundDevice, 'binding' | 'complete'>): void => {
      // Write what is about to move first: if the daemon dies midway, the record still names it.
      const plan = planVfioBind(this.sys, entry.address, { inUse, together });
      const intent: VfioBinding = {
        address: plan.address, group: plan.group,
        members: plan.members.filter((m) => m.action === 'bind').map((m) => ({ address: m.address, originalDriver: m.driver })),
      };
      const dv: BoundDevice = { ...entry, binding: intent, complete: false };
      rec.devices.push(dv);
      this.save(rec);
      try {
        dv.binding = bindVfio(this.sys, entry.address, { ops: this.ops, dev: this.dev, inUse, together });
      } catch (e) {
        rec.devices.pop(); // bindVfio gave its group back itself
        this.save(rec);
        throw e;
      }
      dv.complete = true;
      this.save(rec);
    };
    try {
      for (const h of hostdevs) {
        this.checkDevice(row.name, h.address, holders, together);
        bind({ kind: 'passthrough', id: h.id, address: parsePciAddress(h.address) });
      }
      for (const n of vfNics) {
        if (!n.sriov) throw invalidSpec('nics', `NIC ${n.id} is sriov but names no PF`);
        const pf = parsePciAddress(n.sriov.pf, 'pf');
        const taken = new Set([...inUse, ...rec.devices.flatMap((dv) => [dv.address, ...dv.binding.members.map((m) => m.address)])]);
        const vf = pickFreeVf(this.sys, pf, taken);
        const vlan = n.sriov.vlan ?? null;
        await setVfMac(this.sys, pf, vf.index, n.mac, { exec: this.exec, ...(vlan !== null ? { vlan } : {}) });
        bind({ kind: 'sriov-vf', id: n.id, address: vf.address, pf, vf: vf.index, mac: n.mac, vlan });
      }
    } catch (e) {
      const failures = this.release(rec);
      this.drop(row.uuid);
      if (failures.length > 0 && isCorralError(e)) {
        throw new CorralError(e.code, `${e.message}; giving back what was bound failed for ${failures.map((f) => `${f.address} (${f.error})`).join(', ')}`, { ...e.details, releaseFailures: failures });
      }
      throw e;
    }
    this.groupsTo(rec, this.d.runAs);
    this.d.events.publish('instance.hostdevs.bound', row.name, { devices: rec.devices.map((dv) => ({ id: dv.id, kind: dv.kind, address: dv.address })) });
  }

  /** Give back every device of a record (the last bound first); returns what could not be given back. */
  private release(rec: BindingsRecord): Array<{ address: string; error: string }> {
    const failures: Array<{ address: string; error: string }> = [];
    this.groupsTo(rec, null); // a group that stays on vfio-pci keeps its node: root's again
    for (const dv of [...rec.devices].reverse()) {
      failures.push(...releaseVfio(this.sys, dv.binding, { ops: this.ops }));
      if (dv.kind === 'sriov-vf' && dv.pf !== undefined && dv.vf !== undefined) {
        // Clear what the guest's VF was given, so the next user of the VF does not inherit its MAC or VLAN.
        const vf = dv.vf;
        setVfMac(this.sys, dv.pf, vf, '00:00:00:00:00:00', { exec: this.exec, ...(dv.vlan ? { vlan: 0 } : {}) })
          .catch((e: Error) => this.d.log.warn({ instance: rec.name, pf: dv.pf, vf, err: e.message }, 'cannot clear the VF MAC/VLAN'));
      }
    }
    return failures;
  }

  /**
   * QEMU opens each bound group's /dev/vfio/<group> (root's 0600 when vfio makes it) as its unprivileged user:
   * give it to `who` for the run, or back to root (null). /dev is root's: no symlink of another's making there.
   */
  private groupsTo(rec: BindingsRecord, who: RunAs | null | undefined): void {
    if (who === undefined) return;
    for (const group of new Set(rec.devices.map((dv) => dv.binding.group))) {
      const node = join(this.dev, 'vfio', String(group));
      try {
        chownSync(node, who?.uid ?? 0, who?.gid ?? 0);
        chmodSync(node, 0o600);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT' && who === null) continue; // gone with its last device
        if (who !== null) throw new CorralError('INTERNAL', `cannot give ${node} to ${who.user}: ${(e as Error).message}`, { group });
        this.d.log.warn({ instance: rec.name, node, err: (e as Error).message }, 'cannot take a VFIO group node back');
      }
    }
  }

  /** After QEMU is gone (or a start failed): give back what the instance's record holds, and forget it. */
  private releaseAll(uuid: string, name: string): void {
    const rec = this.records.get(uuid) ?? this.readRecord(uuid);
    if (!rec) return;
    const failures = this.release(rec);
    this.drop(uuid);
    if (failures.length > 0) this.d.log.warn({ instance: name, failures }, 'some PCI devices could not be given back to their drivers');
    this.d.events.publish('instance.hostdevs.released', name, { devices: rec.devices.map((dv) => ({ id: dv.id, kind: dv.kind, address: dv.address })), failures });
  }
}
