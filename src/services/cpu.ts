/**
 * CPU virtualization of running instances: the VM cgroup (weight, cap, memory limit), vCPU pinning,
 * per-vCPU statistics with KVM VM-exit counters, vCPU hotplug, and the CPU model check before a start.
 * Hooked into the instance lifecycle through InstanceService.addHooks.
 */
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { CorralError, invalidSpec, isCorralError } from '../core/errors.js';
import { formatCpuList, parseCpuList } from '../core/cpulist.js';
import { admitOrThrow } from '../core/pool.js';
import type { Accelerator, InstanceSpec } from '../core/spec.js';
import { checkMemoryLimit } from '../core/spec-compute.js';
import { formatSize } from '../core/units.js';
import { addProcess, createVmCgroup, readOomKills, readVmCgroup, removeVmCgroup, vmCgroupPaths, type VmCgroup, type VmCgroupReading } from '../host/cgroup-driver.js';
import { readCgroups, type CgroupInfo } from '../host/cgroups.js';
import { run } from '../host/exec.js';
import type { VcpuInfo, Vm, VmControl } from '../vm/driver.js';
import type { InstanceRow } from '../store/store.js';
import type { InstanceHooks } from './instance-hooks.js';
import type { InstanceService } from './instances.js';
import type { InstanceConfigService } from './instance-config.js';
import type { EventBus } from './events.js';
import {
  TCG_EXITS_REASON, nextSlots, slotsToUnplug, parseAllowedList, parseCpuHelp, parseTaskStat, parseVcpuStats, pinPlan,
  type ExitStats,
} from './cpu-plan.js';

/**
 * vCPU unplug under TCG frees the vCPU's translation jump cache while other threads may still read it: on
 * QEMU 7.2 (Debian 12) the heap is corrupted and QEMU aborts or segfaults at the unplug or at the next
 * hotplug. Under KVM there is no such cache, so unplug is offered there only.
 */
export function tcgUnplugRefused(name: string, current: number, count: number): CorralError {
  return new CorralError('UNSUPPORTED',
    `instance "${name}" runs under TCG, where QEMU cannot unplug a vCPU without corrupting its memory (it crashes); ` +
    `it keeps ${current} vCPUs. Stop it and resize to ${count} (applies at the next start), or run it under KVM`,
    { accel: 'tcg', cpus: current });
}

export interface CpuDeps {
  instances: InstanceService;
  /** a stopped instance's resize is a configuration change */
  config: InstanceConfigService;
  events: EventBus;
  /** online host CPU numbers */
  hostCpus: number[];
  cgroupRoot?: string;
  procRoot?: string;
  qemuBinary?: string;
  log: { info(o: object, m?: string): void; warn(o: object, m?: string): void };
}

export interface VcpuStat {
  index: number;
  threadId: number;
  qomPath: string;
  /** user + system seconds on the host */
  cpuTime: number | null;
  lastCpu: number | null;
  allowed: string | null;
}

export interface CpuStats {
  name: string;
  accel: string | null;
  pid: number;
  cpus: number;
  maxCpus: number;
  topology: { sockets: number; cores: number; threads: number };
  pin: string | null;
  vcpus: VcpuStat[];
  cgroup: VmCgroupReading | null;
  exits: ExitStats;
}

export class CpuService {
  private layout: CgroupInfo | undefined;
  private groups = new Map<string, VmCgroup>();
  private pendingRemoval = new Map<string, NodeJS.Timeout>();
  private models: Promise<Set<string> | null> | undefined;
  private clkTck: Promise<number> | undefined;
  private readonly proc: string;

  constructor(private d: CpuDeps) {
    this.proc = d.procRoot ?? '/proc';
  }

  hooks(): InstanceHooks {
    return {
      checkSpec: (spec, accel) => this.checkSpec(spec, accel),
      beforeLaunch: (row, accel) => this.checkSpec(row.spec, accel),
      launched: (row, vm) => this.launched(row, vm),
      adopted: async (row) => this.adopted(row),
      exited: (row) => this.exited(row),
      exitCause: (row) => this.oomCause(row),
    };
  }

  private cgroups(): CgroupInfo {
    return (this.layout ??= readCgroups(this.d.cgroupRoot ?? '/sys/fs/cgroup'));
  }

  private static groupName(row: InstanceRow): string {
    return `corral/${row.uuid}`;
  }

  private static wantsCgroup(row: InstanceRow): boolean {
    const s = row.spec;
    return s.cpuWeight !== null || s.cpuLimit !== null || s.memoryLimit !== null;
  }

  // ---- CPU model ----

  /** QEMU's CPU models, parsed once from `-cpu help`; null when QEMU cannot say. */
  knownModels(): Promise<Set<string> | null> {
    return (this.models ??= run(this.d.qemuBinary ?? 'qemu-system-x86_64', ['-cpu', 'help'], { timeoutMs: 10_000, maxBuffer: 4 * 1024 * 1024 })
      .then(({ stdout }) => parseCpuHelp(stdout))
      .catch((e: Error) => {
        this.d.log.warn({ err: e.message }, 'cannot list QEMU CPU models');
        return null;
      }));
  }

  /** The CPU model (QEMU must know it; host needs KVM) and the memory limit (guest plus QEMU's overhead). */
  async checkSpec(spec: InstanceSpec, accel: Accelerator): Promise<void> {
    await this.checkModel(spec, accel);
    checkMemoryLimit(spec, accel);
  }

  async checkModel(spec: InstanceSpec, accel: Accelerator): Promise<void> {
    const model = spec.cpuModel;
    if (model === 'auto') return;
    if (model === 'host' && accel !== 'kvm') {
      throw invalidSpec('cpuModel', 'the host CPU model needs KVM; this instance would run under TCG: use max or a named model');
    }
    const known = await this.knownModels();
    if (known && known.size > 0 && !known.has(model)) {
      throw invalidSpec('cpuModel', `QEMU does not know the CPU model "${model}" (see qemu-system-x86_64 -cpu help; e.g. max, qemu64, Skylake-Server)`);
    }
  }

  // ---- lifecycle hooks ----

  private async launched(row: InstanceRow, vm: Vm): Promise<void> {
    const { pid } = vm;
    const pending = this.pendingRemoval.get(row.uuid);
    if (pending) clearTimeout(pending);
    this.pendingRemoval.delete(row.uuid);
    if (CpuService.wantsCgroup(row)) {
      const s = row.spec;
      // Known before it is made, so that a failed start's exit hook removes a half-made group too.
      this.groups.set(row.uuid, vmCgroupPaths(this.cgroups(), CpuService.groupName(row)));
      const g = createVmCgroup(this.cgroups(), CpuService.groupName(row), { cpuWeight: s.cpuWeight, cpuLimit: s.cpuLimit, memoryLimit: s.memoryLimit });
      addProcess(g, pid);
    }
    if (row.spec.pin) await this.applyPinning(row, pid, await vm.vcpus());
  }

  private adopted(row: InstanceRow): void {
    if (!CpuService.wantsCgroup(row)) return;
    try {
      const g = vmCgroupPaths(this.cgroups(), CpuService.groupName(row));
      if (existsSync(g.dirs.cpu)) this.groups.set(row.uuid, g);
    } catch (e) {
      this.d.log.warn({ instance: row.name, err: (e as Error).message }, 'cannot find the cgroup of an adopted instance');
    }
  }

  /** The VM cgroup's OOM kills (its memory limit reached), read before the group is removed. */
  private oomCause(row: InstanceRow): string | null {
    const g = this.groups.get(row.uuid);
    const kills = g ? readOomKills(g) : null;
    if (!kills) return null;
    const limit = row.spec.memoryLimit;
    return `the VM's memory limit${limit ? ` (${formatSize(limit)})` : ''} was reached and the kernel OOM-killed QEMU (cgroup ${g!.name}: ${kills} OOM kill${kills > 1 ? 's' : ''})`;
  }

  private exited(row: InstanceRow): void {
    const g = this.groups.get(row.uuid);
    if (g) this.removeGroup(row, g, 50);
  }

  /** Remove the group once the last thread has left it (the kernel answers EBUSY until then). */
  private removeGroup(row: InstanceRow, g: VmCgroup, tries: number): void {
    try {
      removeVmCgroup(g);
      this.groups.delete(row.uuid);
      this.pendingRemoval.delete(row.uuid);
    } catch (e) {
      if (isCorralError(e) && e.details.code === 'EBUSY' && tries > 0) {
        const t = setTimeout(() => this.removeGroup(row, g, tries - 1), 100);
        t.unref();
        this.pendingRemoval.set(row.uuid, t);
        return;
      }
      this.pendingRemoval.delete(row.uuid);
      this.d.log.warn({ instance: row.name, err: (e as Error).message }, 'cannot remove the VM cgroup');
    }
  }

  // ---- pinning ----

  private tasks(pid: number): number[] {
    try {
      return readdirSync(`${this.proc}/${pid}/task`).filter((t) => /^\d+$/.test(t)).map(Number);
    } catch {
      throw new CorralError('QEMU_FAILED', `QEMU ${pid} is gone`);
    }
  }

  private allowed(pid: number, tid: number): string | null {
    try {
      return parseAllowedList(readFileSync(`${this.proc}/${pid}/task/${tid}/status`, 'utf8'));
    } catch {
      return null;
    }
  }

  /** Pin vCPU threads to the pin list and the other QEMU threads off it; verified through /proc. */
  private async applyPinning(row: InstanceRow, pid: number, cpus: VcpuInfo[]): Promise<void> {
    const pin = row.spec.pin;
    if (!pin) return;
    const vcpuTids = [...cpus].sort((a, b) => a['cpu-index'] - b['cpu-index']).map((c) => c['thread-id']);
    const emulatorTids = this.tasks(pid).filter((t) => !vcpuTids.includes(t));
    const plan = pinPlan({ vcpuTids, emulatorTids, pin, hostCpus: this.d.hostCpus, maxCpus: row.spec.maxCpus });
    for (const [tid, list] of plan) {
      const vcpu = vcpuTids.includes(tid);
      try {
        await run('taskset', ['-p', '-c', list, String(tid)], { timeoutMs: 10_000 });
      } catch (e) {
        if (!vcpu && !existsSync(`${this.proc}/${pid}/task/${tid}`)) continue; // a worker thread that ended
        if (isCorralError(e) && e.code === 'MISSING_TOOL') throw e;
        throw new CorralError('QEMU_FAILED', `cannot pin thread ${tid} of QEMU ${pid} to CPUs ${list}: ${(e as Error).message.trim()}`);
      }
      const got = this.allowed(pid, tid);
      if (vcpu && (got === null || formatCpuList(parseCpuList(got)) !== list)) {
        throw new CorralError('QEMU_FAILED', `vCPU thread ${tid} of QEMU ${pid} runs on CPUs ${got ?? '?'} after pinning to ${list}`);
      }
    }
    this.d.log.info({ instance: row.name, pin: formatCpuList(pin), threads: plan.size }, 'vCPU threads pinned');
  }

  // ---- statistics ----

  private ticksPerSecond(): Promise<number> {
    return (this.clkTck ??= run('getconf', ['CLK_TCK'], { timeoutMs: 5000 })
      .then(({ stdout }) => Number(stdout.trim()) || 100)
      .catch(() => 100));
  }

  private async exitStats(row: InstanceRow, vm: VmControl, cpus: VcpuInfo[]): Promise<ExitStats> {
    if (row.accel !== 'kvm') return { available: false, reason: TCG_EXITS_REASON };
    try {
      return parseVcpuStats(await vm.vcpuStats(), cpus);
    } catch (e) {
      return { available: false, reason: `QEMU cannot report KVM statistics: ${(e as Error).message}` };
    }
  }

  async stats(name: string): Promise<CpuStats> {
    const { row, pid, vm } = this.d.instances.live(name);
    const cpus = [...(await vm.vcpus())].sort((a, b) => a['cpu-index'] - b['cpu-index']);
    const hz = await this.ticksPerSecond();
    const vcpus = cpus.map((c): VcpuStat => {
      const tid = c['thread-id'];
      let st = null;
      try {
        st = parseTaskStat(readFileSync(`${this.proc}/${pid}/task/${tid}/stat`, 'utf8'));
      } catch {
        /* the thread is gone */
      }
      return {
        index: c['cpu-index'], threadId: tid, qomPath: c['qom-path'], cpuTime: st ? st.ticks / hz : null,
        lastCpu: st ? st.processor : null, allowed: this.allowed(pid, tid),
      };
    });
    const g = this.groups.get(row.uuid);
    let cgroup: VmCgroupReading | null = null;
    if (g) {
      try {
        cgroup = readVmCgroup(g);
      } catch {
        cgroup = null;
      }
    }
    const s = row.spec;
    return {
      name: row.name, accel: row.accel, pid, cpus: cpus.length, maxCpus: s.maxCpus, topology: s.topology,
      pin: s.pin ? formatCpuList(s.pin) : null, vcpus, cgroup, exits: await this.exitStats(row, vm, cpus),
    };
  }

  // ---- hotplug ----

  /**
   * Resize a running instance to `count` vCPUs: grow with QMP device_add, shrink with device_del of the
   * highest vCPUs, which the guest must take offline and eject (ACPI); a stopped one just stores the count.
   */
  resizeCpus(name: string, count: unknown): Promise<CpuStats | { name: string; cpus: number; state: string }> {
    return this.d.instances.withLock(name, async () => {
      const stored = this.d.instances.rowOf(name);
      const live = ['stopped', 'crashed', 'error'].includes(stored.state) ? null : this.d.instances.live(name);
      const row = live?.row ?? stored;
      const s = row.spec;
      if (typeof count !== 'number' || !Number.isInteger(count) || count < 1) throw invalidSpec('cpus', `must be a whole number of at least 1, got ${JSON.stringify(count)}`);
      if (count > s.maxCpus) {
        throw invalidSpec('cpus', `${count} vCPUs is more than maxCpus (${s.maxCpus}); create the instance with --max-cpus to allow hotplug`);
      }
      if (!live) {
        // stopped: the same change as `corral set cpus=N`, used at the next start
        await this.d.config.setLocked(name, { cpus: count });
        return { name, cpus: count, state: stored.state };
      }
      const { pid, vm } = live;
      const current = (await vm.vcpus()).length;
      if (count < current && row.accel !== 'kvm') throw tcgUnplugRefused(name, current, count);
      if (count < current) await this.unplugVcpus(vm, current - count, s.topology);
      if (count > current) {
        admitOrThrow(this.d.instances.pool(row.uuid), { cpus: count, memory: s.memory });
        const list = await vm.hotpluggableCpus();
        const slots = nextSlots(list, count - current, s.topology);
        if (slots.length < count - current) throw new CorralError('QEMU_FAILED', `QEMU has only ${slots.length} free vCPU slot(s), ${count - current} needed`);
        for (const slot of slots) {
          try {
            await vm.deviceAdd(slot);
          } catch (e) {
            throw new CorralError('QEMU_FAILED', `device_add of vCPU ${String(slot.id)} failed: ${(e as Error).message}`);
          }
        }
      }
      const cpus = await this.waitVcpus(vm, count);
      const updated = this.d.instances.updateSpec(name, { cpus: count });
      if (updated.spec.pin) await this.applyPinning(updated, pid, cpus);
      this.d.log.info({ instance: name, from: current, to: count }, 'vCPUs resized');
      if (count !== current) this.d.events.publish('cpus.resized', name, { from: current, to: count, live: true });
      return this.stats(name);
    });
  }

  /** device_del the highest vCPUs and wait (up to 20 s) until the guest has ejected them. */
  private async unplugVcpus(vm: VmControl, n: number, t: { cores: number; threads: number }): Promise<void> {
    const paths = slotsToUnplug(await vm.hotpluggableCpus(), n, t);
    if (paths.length < n) throw invalidSpec('cpus', `only ${paths.length} vCPU(s) can be unplugged (vCPU 0 stays)`);
    for (const id of paths) {
      try {
        await vm.deviceDel(id);
      } catch (e) {
        throw new CorralError('QEMU_FAILED', `device_del of vCPU ${id} failed: ${(e as Error).message}`);
      }
    }
    const until = Date.now() + 20_000;
    for (;;) {
      const left = (await vm.vcpus()).filter((c) => paths.includes(c['qom-path'])).length;
      if (left === 0) return;
      if (Date.now() > until) {
        throw new CorralError('TIMEOUT', `the guest did not release ${left} of ${n} vCPU(s) within 20 s (it must support ACPI CPU hot-unplug); they stay`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  private async waitVcpus(vm: VmControl, count: number): Promise<VcpuInfo[]> {
    const t0 = Date.now();
    for (;;) {
      const cpus = await vm.vcpus();
      if (cpus.length >= count && cpus.every((c) => c['thread-id'] > 0)) return cpus;
      if (Date.now() - t0 > 10_000) throw new CorralError('TIMEOUT', `QEMU shows ${cpus.length} vCPUs 10 s after the hotplug of ${count}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}
