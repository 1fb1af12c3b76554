/**
 * Volumes attached to instances as disks (virtio-blk, virtio-scsi, ide, sata, vhost-user-blk). A stopped
 * instance's disks are only recorded (the next start puts them on the QEMU command line); a running one's are
 * hot-plugged over QMP (blockdev-add + device_add, device_del + DEVICE_DELETED + blockdev-del) where the bus
 * allows it. vhost-user-blk hotplug starts the disk's qemu-storage-daemon, then chardev-add + device_add (and
 * device_del + chardev-remove, then stops it), and only into a guest whose memory is already shared.
 * The instance spec holds the disk list; the volume's attachedTo names the instance. Lock order: the
 * instance's lock, then the volume lock.
 *
 * A volume with clones is never written under them: attaching one is refused, and so is a start with one attached.
 * A start that QEMU (or a storage daemon) fails on an image lock is VOLUME_IN_USE naming who holds the volume.
 * A resize of an attached volume runs under its instance's lock: qemu-img while the instance is stopped, QMP
 * block_resize while it runs (virtio-blk and virtio-scsi), so the guest sees the new size.
 */
import { HOTPLUG_RAM_BACKEND_ID, RAM_BACKEND_ID, objectPath } from '../core/device-ids.js';
import { CorralError, invalidSpec, isCorralError } from '../core/errors.js';
import { HOTPLUG_BUSES, LIVE_RESIZE_BUSES, isVhostUser, planAttach, planDetach, volumeIds, type DiskBus, type InstanceDisk } from '../core/disks.js';
import { isActive } from '../core/state.js';
import type { Vm, VmControl } from '../vm/driver.js';
import { onLateUnplug, unplugDevice } from './qmp-devices.js';
import { chardevOf, controllerFor, diskBlockdev, diskDevice, diskSlots, iothreadOf, iothreadsFor, nodeOf, vhostUserChardevAdd, type BlockIo } from '../qemu/argv-disks.js';
import type { InstanceRow } from '../store/store.js';
import type { EventBus } from './events.js';
import type { InstanceHooks } from './instance-hooks.js';
import type { InstanceService } from './instances.js';
import { volumeDisk, type ResolvedDisk } from './runtime.js';
import type { OnlineResize, VolumeService } from './volumes.js';
import type { Volume, VolumeRecord } from '../storage/volumes.js';
import { lockHolderError } from './volume-holders.js';
import type { StorageDaemonService } from './storage-daemons.js';
import { leftBehind } from './left-behind.js';
import { crashPoint } from '../host/crash-points.js';
import type { RunAs } from '../host/run-as.js';
import { applyVolumeAccess, giveVolumes, volumeAccess } from './volume-access.js';

/** The volume was attached or detached between reading its owner and holding the locks (resizeVolume retries). */
class OwnerChanged extends Error {}

/** What the guest reads as a vhost-user-blk disk's serial: qemu-storage-daemon answers GET_ID with this. */
export const VHOST_USER_SERIAL = 'vhost_user_blk';

export interface DiskView extends InstanceDisk {
  id: string;
  path: string;
  format: 'qcow2' | 'raw';
  serial: string;
}

export interface DiskDeps {
  instances: InstanceService;
  volumes: VolumeService;
  events: EventBus;
  log: { warn(o: object, m?: string): void };
  /** how QEMU opens image files (the daemon's probe); hot-plugged disks are opened the same way */
  blockIo?: BlockIo;
  /** how long a live detach waits for the guest to let go of the device */
  unplugTimeoutMs?: number;
  /** the storage daemons behind vhost-user-blk disks (hotplug starts and unplug stops one) */
  storageDaemons?: StorageDaemonService;
  /** QEMU's unprivileged user, given the volumes its VMs open (volume-access.ts); none: files stay as they are */
  runAs?: RunAs;
}

export class DiskService {
  constructor(private d: DiskDeps) {
    d.instances.addLaunchContributor((row) => ({ volumes: this.resolve(row) }));
  }

  /** The instance's disks with their volume files (a volume gone from the pool is skipped with a warning). */
  resolve(row: InstanceRow): ResolvedDisk[] {
    const out: ResolvedDisk[] = [];
    for (const disk of row.spec.disks) {
      try {
        const v = this.d.volumes.store.record(disk.volume);
        out.push({ volume: disk.volume, bus: disk.bus, path: v.path, format: v.format });
      } catch (e) {
        this.d.log.warn({ instance: row.name, volume: disk.volume, err: (e as Error).message }, 'attached volume not found');
      }
    }
    return out;
  }

  list(name: string): DiskView[] {
    const row = this.d.instances.rowOf(name);
    const runDir = this.d.instances.paths(row).runDir;
    return this.resolve(row).map((r) => {
      const p = volumeDisk(r, runDir);
      return { volume: r.volume, bus: r.bus, id: p.id, path: r.path, format: r.format, serial: p.serial ?? (isVhostUser(r.bus) ? VHOST_USER_SERIAL : r.volume) };
    });
  }

  hooks(): InstanceHooks {
    return {
      // Clones read their source: a start that would write to a volume with clones is refused (such a pair
      // can only predate the attach and clone checks, or be made by hand).
      beforeLaunch: (row) => {
        for (const disk of row.spec.disks) this.d.volumes.store.assertNoClones(disk.volume, `written by instance "${row.name}"`);
        this.give(row.spec.disks.map((x) => x.volume));
      },
      exited: (row) => this.settleAccess(row.name),
      launched: async (row, vm) => this.watchLateUnplugs(row, vm),
      adopted: (row, vm) => {
        this.watchLateUnplugs(row, vm);
        return this.matchRecords(row, vm).catch((e: Error) => {
          this.d.log.warn({ instance: row.name, err: e.message }, 'cannot bring the adopted VM\'s disks in line with its records');
        });
      },
      startFailed: (row, e) => this.lockHolder(row, e),
      // Deleting an instance detaches its volumes; it never deletes them.
      deleted: (row) => {
        for (const disk of row.spec.disks) {
          try {
            const v = this.d.volumes.store.record(disk.volume);
            if (v.attachedTo === row.name) this.d.volumes.store.setAttached(disk.volume, null);
          } catch (e) {
            this.d.log.warn({ instance: row.name, volume: disk.volume, err: (e as Error).message }, 'cannot detach a volume of a deleted instance');
          }
        }
      },
    };
  }

  attach(name: string, volume: unknown, bus?: unknown): Promise<DiskView[]> {
    return this.d.instances.withLock(name, () => this.d.volumes.exclusive(async () => {
      const row = this.d.instances.rowOf(name);
      const vol = this.d.volumes.store.record(typeof volume === 'string' ? volume : String(volume));
      const disks = planAttach(name, row.spec.disks, volume, bus, vol.attachedTo, row.spec.rootBus);
      this.d.volumes.store.assertNoClones(vol.name, 'attached');
      const added = disks[disks.length - 1]!;
      const live = isActive(row.state);
      const before = row.spec.disks;
      if (live && !HOTPLUG_BUSES.includes(added.bus)) throw invalidSpec('bus', `${added.bus} has no hotplug; stop the instance first`);
      // recorded first: a crash before the hot-plug leaves a disk the records name, which adoption plugs in
      this.d.volumes.store.setAttached(vol.name, name);
      this.d.instances.updateSpec(name, { disks });
      if (live) {
        crashPoint('attach.recorded');
        const { vm } = this.d.instances.live(name);
        const r: ResolvedDisk = { volume: vol.name, bus: added.bus, path: vol.path, format: vol.format };
        this.give([vol.name]);
        try {
          if (isVhostUser(added.bus)) await this.hotplugVhostUser(row, vm, r);
          else await this.hotplug(vm, r, row.spec.cpus, this.d.instances.paths(row).runDir);
        } catch (e) {
          this.d.instances.updateSpec(name, { disks: before });
          this.d.volumes.store.setAttached(vol.name, null);
          this.settleAccess();
          throw e;
        }
      }
      this.d.events.publish('instance.disk.attached', name, { volume: vol.name, bus: added.bus, live });
      return this.list(name);
    }));
  }

  detach(name: string, volume: unknown): Promise<DiskView[]> {
    return this.d.instances.withLock(name, () => this.d.volumes.exclusive(async () => {
      const row = this.d.instances.rowOf(name);
      const { disk, rest } = planDetach(name, row.spec.disks, volume);
      const live = isActive(row.state);
      if (live && !HOTPLUG_BUSES.includes(disk.bus)) throw invalidSpec('bus', `${disk.bus} has no hotplug; stop the instance first`);
      // recorded first: a crash before the unplug leaves a disk QEMU has and the records do not, which adoption unplugs
      const owned = this.setOwner(disk.volume, name, null);
      this.d.instances.updateSpec(name, { disks: rest });
      if (live) {
        crashPoint('detach.recorded');
        try {
          await this.unplug(this.d.instances.live(name).vm, disk.volume, disk.bus);
        } catch (e) {
          this.d.instances.updateSpec(name, { disks: row.spec.disks }); // the guest kept it: it stays attached
          if (owned) this.setOwner(disk.volume, null, name);
          throw e;
        }
        if (isVhostUser(disk.bus)) await this.storage().stop(row, volumeIds(disk.volume).id);
        this.settleAccess();
      }
      this.d.events.publish('instance.disk.detached', name, { volume: disk.volume, live });
      return this.list(name);
    }));
  }

  /**
   * `corral volume resize`. A volume attached to an instance is resized under the instance's lock, then the volume
   * lock: with qemu-img while the instance is stopped, live while it runs (see resizeLive). Attached or detached
   * meanwhile (between reading its owner and holding the locks): tried again.
   */
  async resizeVolume(name: string, size: string | number, shrink = false): Promise<Volume> {
    for (let attempt = 1; ; attempt++) {
      const owner = this.d.volumes.store.record(name).attachedTo;
      const online: OnlineResize = async (r, bytes) => {
        if (r.attachedTo !== owner) throw new OwnerChanged(`volume "${name}" was attached or detached meanwhile`);
        return owner !== null && this.resizeLive(owner, r, bytes);
      };
      try {
        return owner === null
          ? await this.d.volumes.resize(name, size, shrink, online)
          : await this.d.instances.withLock(owner, () => this.d.volumes.resize(name, size, shrink, online));
      } catch (e) {
        if (!(e instanceof OwnerChanged)) throw e;
        if (attempt >= 3) throw new CorralError('VOLUME_IN_USE', `volume "${name}" is being attached and detached: try the resize again`, { name });
      }
    }
  }

  /**
   * Resize a volume in the running QEMU of its instance: QMP block_resize on the volume's format node, and the guest
   * is told of the new size (virtio-blk, virtio-scsi; the other buses cannot tell it: refused, see
   * LIVE_RESIZE_BUSES). False when the instance is not running (qemu-img then resizes the file; its image lock
   * refuses one a QEMU still holds). Shrinking the disk of a running guest is refused.
   */
  private async resizeLive(owner: string, r: VolumeRecord, bytes: number): Promise<boolean> {
    const row = this.d.instances.rowOf(owner);
    const disk = row.spec.disks.find((x) => x.volume === r.name);
    if (!isActive(row.state) || !disk) return false;
    if (bytes === r.virtualSize) return true;
    if (bytes < r.virtualSize) {
      throw new CorralError('VOLUME_IN_USE', `volume "${r.name}" cannot be shrunk while instance "${owner}" is ${row.state}: a disk never shrinks under a running guest; stop the instance first`, {
        name: r.name, instance: owner,
      });
    }
    if (!LIVE_RESIZE_BUSES.includes(disk.bus)) {
      const why = isVhostUser(disk.bus) ? 'whose storage daemon cannot tell a running guest of a new size' : 'which cannot tell a running guest of a new size';
      throw invalidSpec('bus', `volume "${r.name}" is on ${disk.bus}, ${why}; stop instance "${owner}" first`);
    }
    try {
      await this.d.instances.live(owner).vm.blockResize(volumeIds(r.name).node, bytes);
    } catch (e) {
      if (isCorralError(e) && e.code !== 'QEMU_FAILED') throw e;
      throw new CorralError('QEMU_FAILED', `live resize of volume "${r.name}" in instance "${owner}" failed: ${(e as Error).message}`, { name: r.name, instance: owner });
    }
    return true;
  }

  /**
   * After an adoption, finish the hot-plug or unplug a daemon died in the middle of (the records change first,
   * then QEMU): a recorded disk QEMU lacks is plugged in, a disk QEMU has that no record names is unplugged (a
   * vhost-user one, known by its storage daemon, with its storage daemon stopped).
   */
  private async matchRecords(row: InstanceRow, vm: Vm): Promise<void> {
    const present = new Set(await vm.peripherals());
    const runDir = this.d.instances.paths(row).runDir;
    for (const r of this.resolve(row)) {
      if (present.has(volumeIds(r.volume).id) || !HOTPLUG_BUSES.includes(r.bus)) continue;
      this.give([r.volume]);
      if (isVhostUser(r.bus)) await this.hotplugVhostUser(row, vm, r);
      else await this.hotplug(vm, r, row.spec.cpus, runDir);
      this.d.events.publish('instance.disk.attached', row.name, { volume: r.volume, bus: r.bus, live: true, finished: 'after a daemon restart' });
    }
    const named = new Set(row.spec.disks.map((d) => volumeIds(d.volume).id));
    const served = this.d.storageDaemons?.pids(row) ?? {};
    for (const id of present) {
      if (!id.startsWith('vol-') || named.has(id)) continue;
      const vhostUser = id in served;
      await this.unplug(vm, id.slice('vol-'.length), vhostUser ? 'vhost-user-blk' : 'virtio-blk');
      if (vhostUser) await this.storage().stop(row, id);
      this.d.events.publish('instance.disk.detached', row.name, { volume: id.slice('vol-'.length), live: true, finished: 'after a daemon restart' });
    }
    this.settleAccess();
  }

  /**
   * A guest that did not answer an unplug in time (one still booting) may carry it out later: its detach
   * answered TIMEOUT and the records kept the disk. When QEMU then says a recorded disk's device is gone, the
   * detach is finished: its back end goes, the volume is let go and `instance.disk.detached` says so.
   */
  private watchLateUnplugs(row: InstanceRow, vm: Vm): void {
    const { name, uuid } = row;
    onLateUnplug(vm, (id) => id.startsWith('vol-'), (id) => this.finishLateUnplug(name, uuid, vm, id), (id, e) => {
      this.d.log.warn({ instance: name, device: id, err: e.message }, 'cannot finish the detach of a disk the guest released late');
    });
  }

  private finishLateUnplug(name: string, uuid: string, vm: Vm, id: string): Promise<void> {
    return this.d.instances.withLock(name, () => this.d.volumes.exclusive(async () => {
      const row = this.d.instances.listRows().find((r) => r.uuid === uuid);
      if (!row || !isActive(row.state)) return;
      const disk = row.spec.disks.find((x) => volumeIds(x.volume).id === id);
      // a detach that went as asked, or a disk plugged in again since
      if (!disk || (await vm.peripherals()).includes(id)) return;
      await this.unplug(vm, disk.volume, disk.bus); // the device is gone: only its back end is left
      if (isVhostUser(disk.bus)) await this.storage().stop(row, id);
      this.setOwner(disk.volume, name, null);
      this.d.instances.updateSpec(name, { disks: row.spec.disks.filter((x) => x !== disk) });
      this.settleAccess();
      this.d.events.publish('instance.disk.detached', name, { volume: disk.volume, live: true, finished: 'the guest released it after its detach timed out' });
    }));
  }

  /** Move a volume's attachedTo from `from` to `to`, if it is `from`'s (a volume gone from the pool is fine). */
  private setOwner(volume: string, from: string | null, to: string | null): boolean {
    try {
      if (this.d.volumes.store.record(volume).attachedTo !== from) return false;
      this.d.volumes.store.setAttached(volume, to);
      return true;
    } catch (e) {
      if (isCorralError(e) && e.code === 'VOLUME_NOT_FOUND') return false;
      throw e;
    }
  }

  /**
   * At daemon start: a volume's attachedTo follows the instance specs (a crash between the two records of an
   * attach or detach leaves them apart): set where a spec lists the volume, cleared where none does.
   */
  alignAttachments(): string[] {
    const owner = new Map<string, string>();
    for (const r of this.d.instances.listRows()) for (const d of r.spec.disks) owner.set(d.volume, r.name);
    const fixed: string[] = [];
    for (const v of this.d.volumes.store.records()) {
      const want = owner.get(v.name) ?? null;
      if (v.attachedTo === want) continue;
      this.d.volumes.store.setAttached(v.name, want);
      fixed.push(v.name);
    }
    return fixed;
  }

  /**
   * Make every volume open to QEMU's user exactly as the live instances need (volume-access.ts): at daemon start,
   * after a live detach, and when a VM ends (`except`: that instance, whatever its state says yet).
   */
  settleAccess(except?: string): void {
    if (!this.d.runAs) return;
    const live = this.d.instances.listRows().filter((r) => r.name !== except && (isActive(r.state) || r.state === 'error'));
    const records = this.d.volumes.store.records();
    applyVolumeAccess(this.d.runAs, records, volumeAccess(records, live.map((r) => r.spec.disks.map((x) => x.volume))));
  }

  private give(volumes: string[]): void {
    if (this.d.runAs) giveVolumes(this.d.runAs, this.d.volumes.store.records(), volumes);
  }

  /** A start failed: QEMU's image-lock failure on one of its volumes becomes VOLUME_IN_USE naming the holders. */
  private lockHolder(row: InstanceRow, e: unknown): unknown {
    try {
      const instances = this.d.instances.listRows().map((r) => ({
        name: r.name, alive: isActive(r.state) || r.state === 'error', volumes: r.spec.disks.map((x) => x.volume),
      }));
      return lockHolderError(e, row.name, row.spec.disks.map((x) => x.volume), this.d.volumes.store.records(), instances);
    } catch (err) {
      this.d.log.warn({ instance: row.name, err: (err as Error).message }, 'cannot name the holder of a locked volume');
      return e;
    }
  }

  private storage(): StorageDaemonService {
    if (!this.d.storageDaemons) throw new CorralError('INTERNAL', 'no storage daemon service: vhost-user-blk is not available');
    return this.d.storageDaemons;
  }

  /**
   * A vhost-user backend maps the guest's memory, so it must be a shared memfd. A running QEMU's memory
   * cannot change: refuse unless it already is (the instance started with a vhost-user disk).
   */
  private async assertSharedMemory(row: InstanceRow, vm: VmControl): Promise<void> {
    const backends = [RAM_BACKEND_ID, ...(row.spec.maxMemory !== null ? [HOTPLUG_RAM_BACKEND_ID] : [])];
    for (const id of backends) {
      const share = await vm.propertyGet<boolean>(objectPath(id), 'share').catch(() => false);
      if (share !== true) {
        throw invalidSpec('bus', `vhost-user-blk needs the guest's memory shared with the storage daemon (memfd share=on), and instance "${row.name}" runs without it (memory backend ${id}); stop the instance first: it then starts with shared memory`);
      }
    }
  }

  private async hotplugVhostUser(row: InstanceRow, vm: VmControl, r: ResolvedDisk): Promise<void> {
    await this.assertSharedMemory(row, vm);
    const p = volumeDisk(r, this.d.instances.paths(row).runDir);
    const queues = row.spec.cpus;
    await this.storage().start(row, p, queues);
    let chardev = false;
    try {
      await vm.chardevAdd(vhostUserChardevAdd(p));
      chardev = true;
      await vm.deviceAdd(diskDevice(p, 0, queues));
    } catch (e) {
      if (chardev) await vm.chardevRemove(chardevOf(p)).catch(leftBehind(this.d.log, `chardev ${chardevOf(p)} in QEMU`, { instance: row.name, volume: r.volume }));
      await this.storage().stop(row, p.id);
      throw new CorralError('QEMU_FAILED', `hotplug of volume "${r.volume}" failed: ${(e as Error).message}`);
    }
  }

  private async hotplug(vm: VmControl, r: ResolvedDisk, queues: number, runDir: string): Promise<void> {
    const p = volumeDisk(r, runDir);
    const present = await vm.peripherals();
    const controllerPresent = controllerFor(r.bus).every((c) => present.includes(String(c.id)));
    const objects = await vm.objects();
    for (const o of iothreadsFor(p, controllerPresent)) {
      if (!objects.includes(String(o.id))) await vm.objectAdd(o);
    }
    if (!controllerPresent) for (const c of controllerFor(r.bus)) await vm.deviceAdd(c);
    await vm.blockdevAdd(diskBlockdev(p, this.d.blockIo ?? { direct: false, aio: 'threads' }));
    try {
      await vm.deviceAdd(diskDevice(p, diskSlots([p])[0], queues));
    } catch (e) {
      await vm.blockdevDel(nodeOf(p)).catch(leftBehind(this.d.log, `block node ${nodeOf(p)} in QEMU`, { volume: r.volume }));
      throw new CorralError('QEMU_FAILED', `hotplug of volume "${r.volume}" failed: ${(e as Error).message}`);
    }
  }

  private async unplug(vm: VmControl & Pick<Vm, 'onEvent'>, volume: string, bus: DiskBus): Promise<void> {
    const { id, node } = volumeIds(volume);
    await unplugDevice(vm, id, this.d.unplugTimeoutMs ?? 15_000, `disk ${id}`);
    if (isVhostUser(bus)) {
      await vm.chardevRemove(chardevOf({ id })).catch((e: Error) => {
        this.d.log.warn({ volume, err: e.message }, 'chardev-remove after unplug failed');
      });
      return;
    }
    await deleteNode(vm, node).catch((e: Error) => {
      this.d.log.warn({ volume, err: e.message }, 'blockdev-del after unplug failed');
    });
    const io = iothreadOf({ id });
    if ((await vm.objects()).includes(io)) await vm.objectDel(io).catch(leftBehind(this.d.log, `iothread ${io} in QEMU`, { volume }));
  }
}

/**
 * blockdev-del a disk's node once its device has let go of it. The device leaves the QOM tree (and even sends
 * DEVICE_DELETED) a moment before its block backend is released from an iothread, and until then QEMU answers
 * that the node is busy: try again for a few seconds. A node that is already gone is fine.
 */
async function deleteNode(vm: VmControl, node: string, timeoutMs = 5000): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    try {
      await vm.blockdevDel(node);
      return;
    } catch (e) {
      const msg = (e as Error).message;
      if (/Failed to find node|Cannot find device|not found/i.test(msg)) return;
      if (Date.now() > until) throw e;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

export type { DiskBus };
