/**
 * Instance use cases: create, start, stop, restart, pause, resume, kill, delete, and adoption of running
 * QEMUs at daemon start. Operations on one instance are serialised; the hypervisor is the source of truth.
 */
import { randomUUID } from 'node:crypto';
import { copyFileSync, mkdirSync, rmSync } from 'node:fs';
import { CorralError, isCorralError } from '../core/errors.js';
import { instancePaths, type InstancePaths } from '../core/paths.js';
import { type CreateRequest, type HostLimits, type Accelerator, type InstanceSpec, validateCreate, validateName } from '../core/spec.js';
import { assertCanRun, isActive, validTransition, type InstanceState, type Operation } from '../core/state.js';
import { buildArgv } from '../qemu/argv.js';
import { createOverlay } from '../qemu/img.js';
import { launchQemu } from '../qemu/launch.js';
import { DEFAULT_NETWORK, macFor, parseForward } from '../core/nics.js';
import { findQemusByUuid, isQemuOf, processStartTicks } from '../qemu/proc.js';
import type { QmpClient, QmpEvent } from '../qemu/qmp.js';
import type { ExitStatus } from '../qemu/launch.js';
import type { ImageStore } from '../storage/images.js';
import type { InstanceRow, Store } from '../store/store.js';
import type { EventBus } from './events.js';
import { KeyedLock } from './locks.js';
import { VmMonitor, type MonitorHandlers } from './monitor.js';
import type { BlockIo } from '../qemu/argv-disks.js';
import { exitCauses, runExitHooks, type InstanceHooks, type LaunchContributor, type LiveInstance, type NicPlanner } from './instance-hooks.js';
import { OVMF_VARS, assertOvmf, launchPlan, type LaunchExtras, type RuntimeStatus, prepareRunDir, readStatus, removeRunDir, writeStatus } from './runtime.js';
import { ConsoleLogRotator } from './console-log.js';
import { describeExit, kernelNote, keepPreviousStderr, stderrLine, writeExitInfo, type ExitInfo } from './exit-cause.js';
import { instanceView, type InstanceView } from './instance-view.js';
import { devicePaths, type DevicePath } from './device-paths.js';
import { formatSizeExact } from '../core/units.js';
import { admitOrThrow, poolView, type HostCapacityInput, type PoolConfig, type PoolView } from '../core/pool.js';

export type { InstanceView };

export interface InstanceDeps {
  dataDir: string;
  store: Store;
  images: ImageStore;
  events: EventBus;
  host: HostLimits;
  /** The accelerator chosen by the probe (or forced). */
  accelerator: () => Promise<Accelerator>;
  /** The resource pool: host capacity and its ratios and reserve. */
  pool: { host: HostCapacityInput; config: PoolConfig };
  qemuVersion: () => string;
  /** How QEMU opens image files here (probed at daemon start); default page cache + threads. */
  blockIo?: BlockIo;
  log: { info(o: object, m?: string): void; warn(o: object, m?: string): void };
}

/** Timings of the daemon's own share of the last start (for the benchmark). */
export interface StartTimings {
  beforeSpawnMs: number;
  qemuLaunchMs: number;
  qmpReadyMs: number;
}

export class InstanceService {
  private hooks: InstanceHooks[] = [];
  /** Attached volumes of an instance, resolved to their files (set by the disk service). */
  private contributors: LaunchContributor[] = [];
  private nicPlanner: NicPlanner = (uuid, req) => [{ id: 'net0', model: 'virtio-net', network: DEFAULT_NETWORK, mac: macFor(uuid), queues: 1, ...(req.forwards ? { forwards: req.forwards.map(parseForward) } : {}) }];
  /** The pids of the processes serving an instance's vhost-user disks (set by the storage daemon service). */
  private backendSource: (row: InstanceRow) => Record<string, number | null> = () => ({});
  /** Exit hooks still at work per instance uuid (stopping storage daemons). */
  private exiting = new Map<string, Promise<void>>();
  private locks = new KeyedLock();
  private monitors = new Map<string, VmMonitor>();
  private rotators = new Map<string, ConsoleLogRotator>();
  /** The daemon's own timings of each instance's last start (served as a Server-Timing header). */
  readonly startTimings = new Map<string, StartTimings>();

  constructor(private d: InstanceDeps) {}

  addHooks(h: InstanceHooks): void {
    this.hooks.push(h);
  }

  /** How a new instance's first NIC is made (set by the NIC service, which knows the networks). */
  setNicPlanner(fn: NicPlanner): void {
    this.nicPlanner = fn;
  }

  /** Where `devices` gets the pids of vhost-user backends from. */
  setBackendSource(fn: (row: InstanceRow) => Record<string, number | null>): void {
    this.backendSource = fn;
  }

  /** Run fn under the instance's lock (serialised with its lifecycle operations). */
  withLock<T>(name: string, fn: () => Promise<T>): Promise<T> {
    return this.locks.run(name, fn);
  }

  /** The running (or paused) instance with its QEMU pid and QMP client; INVALID_STATE otherwise. */
  live(name: string): LiveInstance {
    const row = this.row(name);
    const m = this.monitors.get(row.uuid);
    if (!m || !m.alive || row.pid === null || (row.state !== 'running' && row.state !== 'paused')) {
      throw new CorralError('INVALID_STATE', `instance "${name}" is ${row.state}: it must be running`, { state: row.state });
    }
    return { row, pid: row.pid, qmp: m.qmp };
  }

  /** The stored row of an instance (INSTANCE_NOT_FOUND otherwise). */
  rowOf(name: string): InstanceRow {
    return this.row(name);
  }

  /** Change stored spec fields of an instance (a hotplug did); the caller holds the instance's lock. */
  updateSpec(name: string, patch: Partial<InstanceSpec>): InstanceRow {
    const row = this.row(name);
    const spec = { ...row.spec, ...patch };
    this.d.store.updateInstance(row.uuid, { spec });
    return { ...row, spec };
  }

  paths(row: InstanceRow): InstancePaths {
    return instancePaths(this.d.dataDir, row.uuid);
  }

  private row(name: string): InstanceRow {
    validateName('name', name);
    const row = this.d.store.getInstance(name);
    if (!row) throw new CorralError('INSTANCE_NOT_FOUND', `instance "${name}" not found`, { name });
    return row;
  }

  list(): InstanceView[] {
    return this.listRows().map((r) => this.view(r));
  }

  /** Every instance's stored row (no /proc or disk reads, unlike list()). */
  listRows(): InstanceRow[] {
    return this.d.store.listInstances();
  }

  get(name: string): InstanceView {
    return this.view(this.row(name));
  }

  view(r: InstanceRow): InstanceView {
    return instanceView(r, this.paths(r));
  }

  private setState(row: InstanceRow, to: InstanceState, reason: string, patch: Partial<InstanceRow> = {}, extra: Record<string, unknown> = {}): void {
    const from = row.state;
    if (!validTransition(from, to)) {
      this.d.log.warn({ instance: row.name, from, to }, 'unexpected state transition');
    }
    Object.assign(row, patch, { state: to });
    this.d.store.updateInstance(row.uuid, { ...patch, state: to });
    if (from !== to) this.d.events.publish('instance.state', row.name, { from, to, reason, ...extra });
  }

  /** The pool: capacity, and what instances that are starting, running, paused or stopping hold. */
  pool(excludeUuid?: string): PoolView {
    const allocations = this.d.store.listInstances()
      .filter((r) => isActive(r.state) && r.uuid !== excludeUuid)
      .map((r) => ({ name: r.name, cpus: r.spec.cpus, memory: r.spec.memory }));
    return poolView(this.d.pool.host, this.d.pool.config, allocations);
  }

  /** The services' own checks of a spec (CPU model, memory limit) under the accelerator it would run on. */
  async checkSpec(spec: InstanceSpec): Promise<void> {
    const accel = spec.accel === 'auto' ? await this.d.accelerator() : spec.accel;
    for (const h of this.hooks) if (h.checkSpec) await h.checkSpec(spec, accel);
  }

  // ---- create / delete ----

  async create(req: CreateRequest): Promise<InstanceView> {
    const { name, spec } = validateCreate(req, this.d.host);
    const image = this.d.images.get(spec.image);
    return this.locks.run(name, async () => {
      if (this.d.store.getInstance(name)) throw new CorralError('ALREADY_EXISTS', `instance "${name}" already exists`, { field: 'name' });
      if (spec.disk !== null && spec.disk < image.virtualSize) {
        throw new CorralError('INVALID_SPEC', `disk: ${formatSizeExact(spec.disk)} is smaller than the image (${formatSizeExact(image.virtualSize)})`, { field: 'disk' });
      }
      if (spec.firmware === 'uefi') assertOvmf();
      await this.checkSpec(spec);
      const uuid = randomUUID();
      const now = new Date().toISOString();
      spec.nics = req.network === 'none' ? [] : this.nicPlanner(uuid, req);
      const row: InstanceRow = {
        uuid, name, spec, state: 'stopped', accel: null, pid: null, pidStart: null, mac: spec.nics[0]?.mac ?? macFor(uuid),
        createdAt: now, startedAt: null, lastError: null, updatedAt: now,
      };
      const p = this.paths(row);
      try {
        mkdirSync(p.dir, { recursive: true, mode: 0o700 });
        await createOverlay(p.disk, image.disk, image.format, spec.disk);
        if (spec.firmware === 'uefi') copyFileSync(OVMF_VARS, p.efiVars);
        this.d.store.insertInstance(row);
      } catch (e) {
        rmSync(p.dir, { recursive: true, force: true });
        throw e;
      }
      this.d.events.publish('instance.created', name, { uuid, image: spec.image });
      if (req.start) {
        try {
          await this.doStart(row);
        } catch (e) {
          // A failed create --start leaves nothing behind: no disk, no process, no socket, no row.
          this.d.store.deleteInstance(uuid);
          rmSync(p.dir, { recursive: true, force: true });
          removeRunDir(p);
          this.d.events.publish('instance.deleted', name, { reason: 'create --start failed' });
          throw e;
        }
      }
      return this.view(row);
    });
  }

  async delete(name: string, force = false): Promise<void> {
    return this.locks.run(name, async () => {
      const row = this.row(name);
      if (isActive(row.state)) {
        if (!force) assertCanRun('delete', row.state, name);
        await this.doKill(row);
      }
      const p = this.paths(row);
      this.rotators.get(row.uuid)?.stop();
      this.rotators.delete(row.uuid);
      removeRunDir(p);
      rmSync(p.dir, { recursive: true, force: true });
      this.d.store.deleteInstance(row.uuid);
      for (const h of this.hooks) {
        try {
          h.deleted?.(row);
        } catch (e) {
          this.d.log.warn({ instance: row.name, err: (e as Error).message }, 'delete hook failed');
        }
      }
      this.d.events.publish('instance.deleted', name, { uuid: row.uuid });
    });
  }

  // ---- lifecycle ----

  private op(name: string, op: Operation, fn: (row: InstanceRow) => Promise<void>): Promise<InstanceView> {
    return this.locks.run(name, async () => {
      const row = this.row(name);
      assertCanRun(op, row.state, name);
      await fn(row);
      return this.view(this.row(name));
    });
  }

  start(name: string): Promise<InstanceView> {
    return this.op(name, 'start', (row) => this.doStart(row));
  }

  stop(name: string, timeoutSec = 30): Promise<InstanceView> {
    return this.op(name, 'stop', (row) => this.doStop(row, timeoutSec));
  }

  restart(name: string, timeoutSec = 30): Promise<InstanceView> {
    return this.op(name, 'restart', async (row) => {
      await this.doStop(row, timeoutSec);
      await this.doStart(row);
    });
  }

  kill(name: string): Promise<InstanceView> {
    return this.op(name, 'kill', (row) => this.doKill(row));
  }

  pause(name: string): Promise<InstanceView> {
    return this.op(name, 'pause', async (row) => {
      await this.qmpOf(row).stop();
      this.setState(row, 'paused', 'paused by user');
    });
  }

  resume(name: string): Promise<InstanceView> {
    return this.op(name, 'resume', async (row) => {
      await this.qmpOf(row).cont();
      this.setState(row, 'running', 'resumed by user');
    });
  }

  /** The console socket of a running instance (the API bridges it to the user). */
  consoleSocket(name: string): string {
    const row = this.row(name);
    assertCanRun('console', row.state, name);
    return this.paths(row).console;
  }

  /** Each device with its approach and data path (from the launch plan, as the next start would use it). */
  async devices(name: string): Promise<DevicePath[]> {
    const row = this.row(name);
    const accel = row.accel ?? (row.spec.accel === 'auto' ? await this.d.accelerator() : row.spec.accel);
    const live = isActive(row.state) && row.pid !== null;
    return devicePaths(launchPlan(row, this.d.images.get(row.spec.image), accel, this.paths(row), this.extras(row)), live ? this.backendSource(row) : {});
  }

  private extras(row: InstanceRow): LaunchExtras {
    const e: LaunchExtras = { blockIo: this.d.blockIo };
    for (const c of this.contributors) {
      const more = c(row);
      if (more.volumes) e.volumes = [...(e.volumes ?? []), ...more.volumes];
      if (more.hostdevs) e.hostdevs = [...(e.hostdevs ?? []), ...more.hostdevs];
      if (more.networkKind) e.networkKind = more.networkKind;
    }
    return e;
  }

  /**
   * Another service adds to every launch plan: the volumes attached as disks (disks), the host devices it bound
   * (passthrough), what kind each network is (NICs). Called for each start (after beforeLaunch) and for `devices`.
   */
  addLaunchContributor(fn: LaunchContributor): void {
    this.contributors.push(fn);
  }

  consoleLogPath(name: string): string {
    return this.paths(this.row(name)).consoleLog;
  }

  private qmpOf(row: InstanceRow) {
    const m = this.monitors.get(row.uuid);
    if (!m || !m.alive) throw new CorralError('INVALID_STATE', `instance "${row.name}" has no running QEMU`, { state: row.state });
    return m.qmp;
  }

  private async doStart(row: InstanceRow): Promise<void> {
    const t0 = performance.now();
    const image = this.d.images.get(row.spec.image);
    const p = this.paths(row);
    await this.exitSettled(row.uuid);
    const accel = row.spec.accel === 'auto' ? await this.d.accelerator() : row.spec.accel;
    const prior = row.state;
    // Admission and the move to "starting" happen with no await in between: a concurrent start of another
    // instance sees this one as allocated, so concurrent starts cannot oversubscribe the pool.
    admitOrThrow(this.pool(row.uuid), { cpus: row.spec.cpus, memory: row.spec.memory });
    this.setState(row, 'starting', 'start requested', { lastError: null });
    let pid: number | null = null;
    let prepared = false;
    try {
      prepareRunDir(p);
      prepared = true;
      // Hooks may set up host resources (taps, storage daemons, bound devices) here; whatever happens next,
      // a failed start runs every exited hook, which undoes them.
      for (const h of this.hooks) if (h.beforeLaunch) await h.beforeLaunch(row, accel);
      this.rotateLog(row).rotateNow();
      const plan = launchPlan(row, image, accel, p, this.extras(row));
      const argv = buildArgv(plan);
      for (const h of this.hooks) if (h.beforeSpawn) await h.beforeSpawn(row, plan);
      const t1 = performance.now();
      keepPreviousStderr(p.stderr);
      const launched = await launchQemu(argv, { qmp: p.qmp, stderr: p.stderr });
      const t2 = performance.now();
      pid = launched.pid;
      const startedAt = new Date().toISOString();
      const status: RuntimeStatus = {
        uuid: row.uuid, name: row.name, pid, startTicks: launched.startTicks, qmp: p.qmp, qemuVersion: this.d.qemuVersion(),
        accel, startedAt, operation: 'start',
      };
      writeStatus(p, status);
      this.d.store.updateInstance(row.uuid, { pid, pidStart: launched.startTicks, accel, startedAt });
      Object.assign(row, { pid, pidStart: launched.startTicks, accel, startedAt });
      const monitor = await this.watch(row, pid, launched.startTicks, launched.qmp, launched.exit);
      for (const h of this.hooks) if (h.launched) await h.launched(row, pid, monitor.qmp);
      const st = await monitor.qmp.queryStatus();
      this.startTimings.set(row.name, { beforeSpawnMs: t1 - t0, qemuLaunchMs: t2 - t1, qmpReadyMs: performance.now() - t2 });
      this.setState(row, st.status === 'paused' ? 'paused' : 'running', `QEMU ${pid} started (${accel})`);
      writeStatus(p, { ...status, operation: null });
    } catch (e) {
      for (const h of this.hooks) if (h.startFailed) e = h.startFailed(row, e);
      if (pid !== null) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          /* already gone */
        }
        this.monitors.get(row.uuid)?.detach();
        this.monitors.delete(row.uuid);
      }
      // best effort on a failed start, but finished before the start returns: nothing is left running
      if (prepared) await this.runExitHooks(row);
      removeRunDir(p);
      const msg = isCorralError(e) ? e.message : (e as Error).message;
      this.setState(row, prior === 'crashed' || prior === 'error' ? prior : 'stopped', `start failed: ${msg}`, {
        pid: null, pidStart: null, lastError: msg,
      });
      throw isCorralError(e) ? e : new CorralError('QEMU_FAILED', msg);
    }
  }

  private async doStop(row: InstanceRow, timeoutSec: number): Promise<void> {
    const m = this.monitors.get(row.uuid);
    if (!m || !m.alive) {
      this.setState(row, 'stopped', 'no QEMU process', { pid: null, pidStart: null });
      return;
    }
    this.setState(row, 'stopping', `ACPI power-off requested (timeout ${timeoutSec}s)`);
    try {
      const st = await m.qmp.queryStatus();
      if (!st.running) await m.qmp.cont();
      await m.qmp.systemPowerdown();
    } catch (e) {
      this.d.log.warn({ instance: row.name, err: (e as Error).message }, 'powerdown request failed');
    }
    if (await m.waitExit(timeoutSec * 1000)) {
      await this.exitSettled(row.uuid);
      return;
    }
    this.d.events.publish('instance.stop-timeout', row.name, { timeoutSec });
    await this.doKill(row, `killed: the guest did not power off within ${timeoutSec}s`);
  }

  private async doKill(row: InstanceRow, why = 'killed by user'): Promise<void> {
    const m = this.monitors.get(row.uuid);
    const pid = row.pid;
    if (m) m.expectedExit = why; // an exit we cause is not a crash
    if (pid !== null && isQemuOf(pid, row.uuid, row.pidStart)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* gone already */
      }
    }
    if (m && !(await m.waitExit(10_000))) throw new CorralError('TIMEOUT', `QEMU ${pid} did not exit after SIGKILL`);
    if (!m || this.d.store.getInstance(row.name)?.state !== 'stopped') {
      this.finishExit(row, 'stopped', why);
    }
    await this.exitSettled(row.uuid);
  }

  // ---- watching ----

  private rotateLog(row: InstanceRow): ConsoleLogRotator {
    let r = this.rotators.get(row.uuid);
    if (!r) {
      r = new ConsoleLogRotator(this.paths(row).consoleLog);
      this.rotators.set(row.uuid, r);
    }
    return r;
  }

  /** Watch a QEMU: over the QMP connection its launch opened, or by connecting to an adopted one's socket. */
  private async watch(row: InstanceRow, pid: number, startTicks: number | null, qmp?: QmpClient, exit?: Promise<ExitStatus>): Promise<VmMonitor> {
    const p = this.paths(row);
    const handlers: MonitorHandlers = {
      onEvent: (ev) => this.onQmpEvent(row, ev),
      onExit: ({ guestShutdown, shutdownReason, expected, crash, status }) => {
        const cur = this.d.store.getInstance(row.name);
        if (!cur || cur.uuid !== row.uuid) return;
        const unasked = !expected && !crash && !(guestShutdown && shutdownReason !== 'host-signal');
        const facts = {
          pid, expected, crash, guestShutdown, shutdownReason, stopping: cur.state === 'stopping', status,
          kernel: unasked ? kernelNote(pid, startTicks) : null,
          service: unasked ? exitCauses(this.hooks, cur, this.d.log) : null,
          stderr: stderrLine(p.stderr),
        };
        const { state, reason } = describeExit(facts);
        this.finishExit(cur, state, reason, {
          at: new Date().toISOString(), pid, state, reason, code: status?.code ?? null, signal: status?.signal ?? null,
          kernel: facts.kernel, service: facts.service, stderr: facts.stderr,
        });
        Object.assign(row, { state: cur.state, pid: null, pidStart: null });
      },
    };
    const m = qmp ? VmMonitor.watch(pid, startTicks, qmp, handlers, exit) : await VmMonitor.attach(pid, startTicks, p.qmp, handlers);
    this.monitors.set(row.uuid, m);
    this.rotateLog(row).start();
    return m;
  }

  /** Run every exit hook; resolves when the asynchronous ones are done (their failures are logged). */
  private runExitHooks(row: InstanceRow): Promise<void> {
    return runExitHooks(this.hooks, row, this.d.log);
  }

  /** Wait for the exit hooks of an instance's last QEMU (its storage daemons stopping). */
  private async exitSettled(uuid: string): Promise<void> {
    await this.exiting.get(uuid);
  }

  private finishExit(row: InstanceRow, to: InstanceState, reason: string, exit?: ExitInfo): void {
    if (exit) {
      try {
        writeExitInfo(this.paths(row).exitInfo, exit);
      } catch (e) {
        this.d.log.warn({ instance: row.name, err: (e as Error).message }, 'cannot record why QEMU ended');
      }
    }
    this.monitors.delete(row.uuid);
    const work = this.runExitHooks(row);
    this.exiting.set(row.uuid, work);
    void work.finally(() => {
      if (this.exiting.get(row.uuid) === work) this.exiting.delete(row.uuid);
    });
    this.rotators.get(row.uuid)?.stop();
    removeRunDir(this.paths(row));
    this.setState(row, to, reason, { pid: null, pidStart: null, lastError: to === 'crashed' ? reason : row.lastError }, exit ? { exit } : {});
  }

  private onQmpEvent(watched: InstanceRow, ev: QmpEvent): void {
    const row = this.d.store.getInstance(watched.name);
    if (!row || row.uuid !== watched.uuid) return;
    this.d.events.publish('qemu.event', row.name, { event: ev.event, data: ev.data });
    if (ev.event === 'STOP' && row.state === 'running') this.setState(row, 'paused', 'QMP STOP');
    else if (ev.event === 'RESUME' && row.state === 'paused') this.setState(row, 'running', 'QMP RESUME');
    else if (ev.event === 'GUEST_PANICKED') {
      // Like libvirt's on_crash=destroy: end the QEMU; the state becomes crashed once it is really gone, so
      // that a new start can never race the old process's clean-up.
      const m = this.monitors.get(row.uuid);
      if (m) m.crashReason = 'the guest kernel panicked';
      if (row.pid) {
        try {
          process.kill(row.pid, 'SIGKILL');
        } catch {
          /* gone */
        }
      }
    }
  }

  // ---- daemon start / stop ----

  /** Adopt every QEMU that outlived the previous daemon; mark the ones that died as crashed. */
  async reconcile(): Promise<void> {
    for (const row of this.d.store.listInstances()) {
      await this.locks.run(row.name, async () => {
        const p = this.paths(row);
        const status = readStatus(p);
        // The pid from the row, else the status file; if neither (the daemon died mid-start), look for a
        // QEMU carrying this uuid, so that it is adopted rather than started twice.
        let pid = row.pid ?? status?.pid ?? null;
        let startTicks = row.pidStart ?? status?.startTicks ?? null;
        if (pid === null && isActive(row.state)) {
          pid = findQemusByUuid(row.uuid)[0] ?? null;
          startTicks = pid === null ? null : processStartTicks(pid);
        }
        if (pid !== null && isQemuOf(pid, row.uuid, startTicks)) {
          try {
            const m = await this.watch(row, pid, startTicks);
            for (const h of this.hooks) if (h.adopted) await h.adopted(row, pid, m.qmp);
            const st = await m.qmp.queryStatus();
            const to: InstanceState = st.status === 'paused' ? 'paused' : 'running';
            this.setState(row, to, `adopted QEMU ${pid} after daemon restart`, { pid, pidStart: startTicks });
            this.d.log.info({ instance: row.name, pid }, 'adopted running QEMU');
            return;
          } catch (e) {
            this.d.log.warn({ instance: row.name, pid, err: (e as Error).message }, 'cannot reach QMP of a live QEMU');
            this.setState(row, 'error', `QEMU ${pid} is alive but its QMP socket does not answer`, { lastError: (e as Error).message });
            return;
          }
        }
        if (isActive(row.state)) {
          const to: InstanceState = row.state === 'stopping' ? 'stopped' : 'crashed';
          const dead = row.pid ?? status?.pid ?? null;
          const kernel = dead === null ? null : kernelNote(dead, row.pidStart ?? status?.startTicks ?? null);
          const stderr = stderrLine(p.stderr);
          const reason = `${to === 'crashed' ? 'QEMU died' : 'QEMU exited'} while the daemon was down${kernel ? `: ${kernel}` : stderr ? `: QEMU said: ${stderr}` : ''}`;
          this.finishExit(row, to, reason, dead === null ? undefined : {
            at: new Date().toISOString(), pid: dead, state: to, reason, code: null, signal: null, kernel, service: null, stderr,
          });
        } else {
          removeRunDir(p);
        }
      });
    }
  }

  /** Let go of every QEMU without stopping it: they outlive the daemon. */
  detachAll(): void {
    for (const m of this.monitors.values()) m.detach();
    this.monitors.clear();
    for (const r of this.rotators.values()) r.stop();
  }
}
