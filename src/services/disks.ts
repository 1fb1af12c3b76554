/**
 * Volumes attached to instances as disks (virtio-blk, virtio-scsi, ide). A stopped instance's disks are only
 * recorded (the next start puts them on the QEMU command line); a running one's are hot-plugged over QMP
 * (blockdev-add + device_add, device_del + DEVICE_DELETED + blockdev-del) where the bus allows it. The
 * instance spec holds the disk list; the volume's attachedTo names the instance. Lock order: the
 * instance's lock, then the volume lock.
 */
import { CorralError, invalidSpec, isCorralError } from '../core/errors.js';
import { HOTPLUG_BUSES, planAttach, planDetach, volumeIds, type DiskBus, type InstanceDisk } from '../core/disks.js';
import { isActive } from '../core/state.js';
import type { QmpClient } from '../qemu/qmp.js';
import { peripherals, qomObjects, unplugDevice } from './qmp-devices.js';
import { controllerFor, diskBlockdev, diskDevice, diskSlots, iothreadsFor, nodeOf, type BlockIo } from '../qemu/argv-disks.js';
import type { InstanceRow } from '../store/store.js';
import type { EventBus } from './events.js';
import type { InstanceHooks, InstanceService } from './instances.js';
import { volumeDisk, type ResolvedDisk } from './runtime.js';
import type { VolumeService } from './volumes.js';

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
}

export class DiskService {
  constructor(private d: DiskDeps) {
    d.instances.setDiskSource((row) => this.resolve(row));
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
    return this.resolve(this.d.instances.rowOf(name)).map((r) => {
      const p = volumeDisk(r);
      return { volume: r.volume, bus: r.bus, id: p.id, path: r.path, format: r.format, serial: p.serial ?? r.volume };
    });
  }

  hooks(): InstanceHooks {
    return {
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
      const added = disks[disks.length - 1]!;
      const live = isActive(row.state);
      if (live) {
        if (!HOTPLUG_BUSES.includes(added.bus)) throw invalidSpec('bus', `${added.bus} has no hotplug; stop the instance first`);
        const { qmp } = this.d.instances.live(name);
        await this.hotplug(qmp, { volume: vol.name, bus: added.bus, path: vol.path, format: vol.format }, row.spec.cpus);
      }
      this.d.volumes.store.setAttached(vol.name, name);
      this.d.instances.updateSpec(name, { disks });
      this.d.events.publish('instance.disk.attached', name, { volume: vol.name, bus: added.bus, live });
      return this.list(name);
    }));
  }

  detach(name: string, volume: unknown): Promise<DiskView[]> {
    return this.d.instances.withLock(name, () => this.d.volumes.exclusive(async () => {
      const row = this.d.instances.rowOf(name);
      const { disk, rest } = planDetach(name, row.spec.disks, volume);
      const live = isActive(row.state);
      if (live) {
        if (!HOTPLUG_BUSES.includes(disk.bus)) throw invalidSpec('bus', `${disk.bus} has no hotplug; stop the instance first`);
        const { qmp } = this.d.instances.live(name);
        await this.unplug(qmp, disk.volume);
      }
      this.d.instances.updateSpec(name, { disks: rest });
      try {
        const v = this.d.volumes.store.record(disk.volume);
        if (v.attachedTo === name) this.d.volumes.store.setAttached(disk.volume, null);
      } catch (e) {
        if (!(isCorralError(e) && e.code === 'VOLUME_NOT_FOUND')) throw e;
      }
      this.d.events.publish('instance.disk.detached', name, { volume: disk.volume, live });
      return this.list(name);
    }));
  }

  private async hotplug(qmp: QmpClient, r: ResolvedDisk, queues: number): Promise<void> {
    const p = volumeDisk(r);
    const present = await peripherals(qmp);
    const controllerPresent = controllerFor(r.bus).every((c) => present.includes(String(c.id)));
    const objects = (await qomObjects(qmp));
    for (const o of iothreadsFor(p, controllerPresent)) {
      if (!objects.includes(String(o.id))) await qmp.execute('object-add', o);
    }
    if (!controllerPresent) for (const c of controllerFor(r.bus)) await qmp.execute('device_add', c);
    await qmp.execute('blockdev-add', diskBlockdev(p, this.d.blockIo ?? { direct: false, aio: 'threads' }));
    try {
      await qmp.execute('device_add', diskDevice(p, diskSlots([p])[0], queues));
    } catch (e) {
      await qmp.execute('blockdev-del', { 'node-name': nodeOf(p) }).catch(() => undefined);
      throw new CorralError('QEMU_FAILED', `hotplug of volume "${r.volume}" failed: ${(e as Error).message}`);
    }
  }

  private async unplug(qmp: QmpClient, volume: string): Promise<void> {
    const { id, node } = volumeIds(volume);
    await unplugDevice(qmp, id, this.d.unplugTimeoutMs ?? 15_000, `disk ${id}`);
    await qmp.execute('blockdev-del', { 'node-name': node }).catch((e: Error) => {
      this.d.log.warn({ volume, err: e.message }, 'blockdev-del after unplug failed');
    });
    if ((await qomObjects(qmp)).includes(`io-${id}`)) await qmp.execute('object-del', { id: `io-${id}` }).catch(() => undefined);
  }
}

export type { DiskBus };
