/**
 * Memory of running instances: live resize (virtio-mem above the boot size, the balloon at or below it),
 * statistics (configured, guest-visible, host-resident, guest-reported) and the guest-physical -> host-virtual
 * memory map with host residency per range. A resize is kept, as a vCPU hotplug is: the spec's memory becomes the
 * new size (what list and the pool show, and the boot size of the next start), while the running QEMU keeps its
 * boot size (`bootOf`) and reaches the new size with virtio-mem above it and the balloon below it.
 */
import { BALLOON_ID, HOTPLUG_RAM_DEVICE_ID, peripheralPath } from '../core/device-ids.js';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CorralError, invalidSpec } from '../core/errors.js';
import type { InstanceSpec } from '../core/spec.js';
import { readHugepages, type HugepagePool } from '../host/memory.js';
import { HUGEPAGE_BYTES, VIRTIO_MEM_BLOCK, hugepageNeed } from '../core/spec-compute.js';
import { MiB, formatSize, parseSize } from '../core/units.js';
import { readResidency } from '../qemu/pagemap.js';
import type { Vm, VmControl } from '../vm/driver.js';
import type { InstanceRow } from '../store/store.js';
import type { EventBus } from './events.js';
import type { InstanceHooks } from './instance-hooks.js';
import type { InstanceService } from './instances.js';
import type { InstanceConfigService } from './instance-config.js';
import { admitOrThrow } from '../core/pool.js';
import { isActive } from '../core/state.js';
import { guestUsed, parseFlatRam, parseGpa2hva, parseGuestStats, parseSmapsRollup, type GuestStats } from './memory-map.js';

export const BALLOON_PATH = peripheralPath(BALLOON_ID);
export const VMEM_PATH = peripheralPath(HOTPLUG_RAM_DEVICE_ID);
/** Seconds between the guest's balloon statistics reports. */
export const STATS_POLL_SECONDS = 2;
export const MIN_RESIZE = 64 * MiB;
/** A resize must leave the guest at least this much above what it uses. */
export const RESIZE_MARGIN = 32 * MiB;

export interface MemoryMapEntry {
  region: string;
  gpaStart: number;
  gpaEnd: number;
  hvaStart: number | null;
  hvaEnd: number | null;
  size: number;
  /** bytes of the range resident in host RAM, and swapped out; null when the pagemap cannot be read */
  resident: number | null;
  swapped: number | null;
}

export interface MemoryStats {
  name: string;
  configured: { memory: number; maxMemory: number | null; balloon: boolean };
  /** the size a resize since this QEMU started asked for, kept as the spec's memory (null: the boot size) */
  requested: number | null;
  guest: {
    /** memory the guest can use: the boot memory less the balloon, plus what virtio-mem has plugged */
    visible: number;
    balloon: number | null;
    plugged: number | null;
    /** as the guest reports it through the balloon (null before its first report) */
    total: number | null;
    free: number | null;
    available: number | null;
    used: number | null;
  };
  host: { rss: number | null; anonymous: number | null; shared: number | null; swap: number | null };
  map: MemoryMapEntry[];
}

/** What the pressure controller needs of one VM with a balloon. */
export interface BalloonSnapshot {
  name: string;
  uuid: string;
  actual: number;
  /** the balloon size to deflate back to: the boot size, or a smaller size asked for by a resize */
  ceiling: number;
  available: number | null;
  used: number | null;
}

interface Devices {
  actual: number | null;
  plugged: number | null;
  stats: GuestStats | null;
  deflateOnOom: boolean;
}

/** A resize of a stopped instance: the boot memory of its next start. */
export interface StoppedResize {
  name: string;
  memory: number;
  state: string;
}

export interface MemoryDeps {
  instances: InstanceService;
  /** a stopped instance's resize is a configuration change */
  config: Pick<InstanceConfigService, 'setLocked'>;
  events: EventBus;
  log: { warn(o: object, m?: string): void };
  proc?: string;
  /** sysfs root for the hugepage pools (tests) */
  sysRoot?: string;
}

export class MemoryService {
  /** the boot memory of each running QEMU (the spec's memory when it started; QEMU's base memory when adopted) */
  private boots = new Map<string, number>();

  constructor(private d: MemoryDeps) {}

  /** Lifecycle hooks: turn on the balloon's statistics; know each QEMU's boot memory while it runs. */
  hooks(): InstanceHooks {
    const setUp = async (row: InstanceRow, vm: Vm): Promise<void> => {
      if (!row.spec.balloon) return;
      try {
        await vm.propertySet(BALLOON_PATH, 'guest-stats-polling-interval', STATS_POLL_SECONDS);
      } catch (e) {
        this.d.log.warn({ instance: row.name, err: (e as Error).message }, 'cannot turn on balloon statistics');
      }
    };
    const launched = async (row: InstanceRow, vm: Vm): Promise<void> => {
      this.boots.set(row.uuid, row.spec.memory);
      await setUp(row, vm);
    };
    const adopted = async (row: InstanceRow, vm: Vm): Promise<void> => {
      await setUp(row, vm);
      // resized before the daemon restarted: QEMU still boots from its base memory, the spec holds the new size
      const base = await vm.memorySize().then((r) => r.base, () => null);
      this.boots.set(row.uuid, base ?? row.spec.memory);
    };
    return {
      beforeLaunch: (row) => checkHugepages(row.spec, readHugepages(this.d.sysRoot ?? '/sys')),
      launched,
      adopted,
      exited: (row) => { this.boots.delete(row.uuid); },
    };
  }

  private async devices(row: InstanceRow, vm: VmControl): Promise<Devices> {
    let actual: number | null = null;
    let stats: GuestStats | null = null;
    let deflateOnOom = false;
    if (row.spec.balloon) {
      actual = await vm.balloonSize();
      stats = parseGuestStats(await vm.propertyGet(BALLOON_PATH, 'guest-stats'));
      deflateOnOom = (await vm.propertyGet<boolean>(BALLOON_PATH, 'deflate-on-oom')) === true;
    }
    const plugged = this.hasVmem(row) ? await vm.propertyGet<number>(VMEM_PATH, 'size') : null;
    return { actual, plugged, stats, deflateOnOom };
  }

  /** The running QEMU has a virtio-mem device: room between its boot memory and maxMemory (see launchPlan). */
  private hasVmem(row: InstanceRow): boolean {
    return row.spec.maxMemory !== null && row.spec.maxMemory > this.bootOf(row);
  }

  /** The size a resize asked for since this QEMU started: the spec's memory where it differs from the boot size. */
  private requestedOf(row: InstanceRow): number | null {
    return row.spec.memory === this.bootOf(row) ? null : row.spec.memory;
  }

  /** The boot memory of the instance's running QEMU. */
  private bootOf(row: InstanceRow): number {
    return this.boots.get(row.uuid) ?? row.spec.memory;
  }

  private used(row: InstanceRow, dev: Devices): number | null {
    if (!dev.stats) return null;
    return guestUsed(dev.stats, dev.actual === null ? 0 : Math.max(0, this.bootOf(row) - dev.actual), dev.deflateOnOom);
  }

  async stats(name: string): Promise<MemoryStats> {
    const { row, pid, vm } = this.d.instances.live(name);
    const dev = await this.devices(row, vm);
    const proc = this.d.proc ?? '/proc';
    let host: MemoryStats['host'] = { rss: null, anonymous: null, shared: null, swap: null };
    try {
      host = parseSmapsRollup(readFileSync(join(proc, String(pid), 'smaps_rollup'), 'utf8'));
    } catch {
      /* gone, or an old kernel */
    }
    return {
      name: row.name,
      configured: { memory: this.bootOf(row), maxMemory: row.spec.maxMemory, balloon: row.spec.balloon },
      requested: this.requestedOf(row),
      guest: {
        visible: (dev.actual ?? this.bootOf(row)) + (dev.plugged ?? 0),
        balloon: dev.actual, plugged: dev.plugged,
        total: dev.stats?.total ?? null, free: dev.stats?.free ?? null, available: dev.stats?.available ?? null,
        used: this.used(row, dev),
      },
      host,
      map: await this.memoryMap(pid, vm),
    };
  }

  /** Guest-physical RAM ranges, the host-virtual range behind each, and how much of it is resident. */
  private async memoryMap(pid: number, vm: VmControl): Promise<MemoryMapEntry[]> {
    const regions = new Set(await vm.memdevs());
    const mtree = await vm.memoryTree();
    const out: MemoryMapEntry[] = [];
    for (const r of parseFlatRam(mtree, regions)) {
      const size = r.end - r.start;
      const hva = parseGpa2hva(await vm.gpaToHva(r.start));
      const res = hva === null ? null : readResidency(pid, hva, size, this.d.proc);
      out.push({
        region: r.region, gpaStart: r.start, gpaEnd: r.end, hvaStart: hva, hvaEnd: hva === null ? null : hva + size, size,
        resident: res ? res.present * 4096 : null, swapped: res ? res.swapped * 4096 : null,
      });
    }
    return out;
  }

  /**
   * Resize a running guest's memory. Above the boot size virtio-mem plugs the difference (up to maxMemory);
   * at or below it the balloon takes the rest. Refused (INVALID_SPEC, field memory, nothing changed): above
   * maxMemory (or the boot size without one), below 64 MiB, or below what the guest uses + 32 MiB.
   */
  async resizeMemory(name: string, sizeIn: string | number): Promise<MemoryStats | StoppedResize> {
    const size = parseSize('memory', sizeIn);
    return this.d.instances.withLock(name, async (): Promise<MemoryStats | StoppedResize> => {
      const stored = this.d.instances.rowOf(name);
      if (!isActive(stored.state)) {
        // stopped: the same change as `corral set memory=SIZE`, the boot memory of the next start
        await this.d.config.setLocked(name, { memory: size });
        return { name, memory: size, state: stored.state };
      }
      const { row, vm } = this.d.instances.live(name);
      const boot = this.bootOf(row);
      const max = row.spec.maxMemory ?? boot;
      if (size % MiB !== 0) throw invalidSpec('memory', 'must be a whole number of MiB');
      if (size > max) {
        throw invalidSpec('memory', `${formatSize(size)} is more than ${row.spec.maxMemory === null ? `the boot memory (${formatSize(boot)}; no maxMemory was set)` : `maxMemory (${formatSize(max)})`}`);
      }
      if (size < MIN_RESIZE) throw invalidSpec('memory', `must be at least 64 MiB, got ${formatSize(size)}`);
      if (size < boot && !row.spec.balloon) throw invalidSpec('memory', `shrinking below the boot memory (${formatSize(boot)}) needs the balloon, which is off`);
      const block = row.spec.hugepages ? Math.max(VIRTIO_MEM_BLOCK, HUGEPAGE_BYTES[row.spec.hugepages]) : VIRTIO_MEM_BLOCK;
      if (size > boot && (size - boot) % block !== 0) throw invalidSpec('memory', `the part above the boot memory must be a multiple of ${formatSize(block)}`);
      const dev = await this.devices(row, vm);
      const used = this.used(row, dev);
      const current = (dev.actual ?? boot) + (dev.plugged ?? 0);
      if (used !== null && size < current && size < used + RESIZE_MARGIN) {
        throw invalidSpec('memory', `${formatSize(size)} is below what the guest uses now (${formatSize(used)}) plus a ${formatSize(RESIZE_MARGIN)} margin`);
      }
      if (row.spec.hugepages && size % HUGEPAGE_BYTES[row.spec.hugepages] !== 0) {
        throw invalidSpec('memory', `must be a multiple of the ${row.spec.hugepages} hugepage size (it is also the next boot size)`);
      }
      // growing takes memory from the pool: admitted like a start
      if (size > row.spec.memory) admitOrThrow(this.d.instances.pool(row.uuid), { cpus: row.spec.cpus, memory: size });
      if (this.hasVmem(row)) {
        await vm.propertySet(VMEM_PATH, 'requested-size', Math.max(0, size - boot));
      }
      if (row.spec.balloon) await vm.balloon(Math.min(size, boot));
      this.d.instances.updateSpec(name, { memory: size }); // kept: list and the pool count it, the next start boots with it
      this.d.events.publish('memory.resized', row.name, { from: current, to: size, live: true });
      // still under the lock: a stop or kill queued behind the resize cannot end QEMU before the reply is read
      return this.stats(name);
    });
  }

  /** The balloon of a running instance, for the pressure controller; null when it has none or is not live. */
  async balloonSnapshot(row: InstanceRow): Promise<BalloonSnapshot | null> {
    if (!row.spec.balloon || row.state !== 'running') return null;
    let live;
    try {
      live = this.d.instances.live(row.name);
    } catch {
      return null;
    }
    const dev = await this.devices(live.row, live.vm);
    if (dev.actual === null) return null;
    return {
      name: row.name, uuid: row.uuid, actual: dev.actual, ceiling: Math.min(row.spec.memory, this.bootOf(row)),
      available: dev.stats?.available ?? null, used: this.used(live.row, dev),
    };
  }

  /** Move a running instance's balloon (under its lock). */
  async setBalloon(name: string, bytes: number): Promise<void> {
    await this.d.instances.withLock(name, async () => {
      await this.d.instances.live(name).vm.balloon(bytes);
    });
  }
}

/**
 * A hugepage-backed guest needs its whole memory (boot and hotpluggable) as free pages of that size in the
 * host's pool, since QEMU reserves them when it maps the backend: refuse the start before QEMU runs.
 */
export function checkHugepages(spec: InstanceSpec, pools: HugepagePool[]): void {
  const hp = hugepageNeed(spec, pools);
  if (!hp || hp.free >= hp.need) return;
  const { need, free, total } = hp;
  const kb = HUGEPAGE_BYTES[spec.hugepages!] / 1024;
  throw new CorralError('INSUFFICIENT_RESOURCES', `not enough ${spec.hugepages} hugepages: the guest needs ${need}, the host has ${free} free` +
    (total !== null ? ` of ${total} (add more: echo ${(total + need - free)} > /sys/kernel/mm/hugepages/hugepages-${kb}kB/nr_hugepages)` : ` (the host has no ${spec.hugepages} hugepage pool)`), {
    short: [{ resource: `hugepages-${spec.hugepages}`, requested: need, free, shortBy: need - free }],
  });
}
