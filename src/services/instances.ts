/**
 * Instance use cases: create, start, stop, restart, pause, resume, kill, delete, and adoption of running
 * QEMUs at daemon start. Operations on one instance are serialised; the hypervisor is the source of truth.
 */
import { randomUUID } from 'node:crypto';
import { copyFileSync, mkdirSync, rmSync } from 'node:fs';
import { takeBack } from '../host/run-as.js';
import { assertFits } from '../host/space.js';
import { crashPoint } from '../host/crash-points.js';
import { sweepInstanceDirs } from './sweep.js';
import { CorralError, isCorralError, noSpace } from '../core/errors.js';
import { instancePaths, type InstancePaths } from '../core/paths.js';
import { type CreateRequest, type HostLimits, type Accelerator, type InstanceSpec, validateCreate, validateName } from '../core/spec.js';
import { assertCanRun, assertTransition, isActive, type InstanceState, type Operation } from '../core/state.js';
import { createOverlay } from '../qemu/img.js';
import { DEFAULT_NETWORK, macFor, parseForward } from '../core/nics.js';
import { FIRST_NIC_ID } from '../core/device-ids.js';
import type { ImageStore } from '../storage/images.js';
import type { InstanceRow, Store } from '../store/store.js';
import { waitExit, type Vm, type VmDriver, type VmEvent, type VmExit, type VmProcess } from '../vm/driver.js';
import type { EventBus } from './events.js';
import { KeyedLock } from './locks.js';
import type { BlockIo } from '../qemu/argv-disks.js';
import { HookSet, exitCauses, launchExtras, runExitHooks, type HookOwner, type InstanceHooks, type LaunchContributor, type LiveInstance, type NicPlanner } from './instance-hooks.js';
import { OVMF_VARS, assertOvmf, launchPlan, type RuntimeStatus, prepareRunDir, readStatus, removeRunDir, writeStatus } from './runtime.js';
import { exitRecord, goneWhileDown, ioErrorReason, keepPreviousStderr, stderrLine, writeExitInfo, type ExitInfo } from './exit-cause.js';
import { instanceView, type InstanceView } from './instance-view.js';
import { devicePaths, type DevicePath } from './device-paths.js';
import { formatSizeExact } from '../core/units.js';
import { admitOrThrow, poolView, type HostCapacityInput, type PoolConfig, type PoolView } from '../core/pool.js';

export type { InstanceView };

export interface InstanceDeps {
  dataDir: string;
  store: Store;
  images: Pick<ImageStore, 'get' | 'claim'>;
  events: EventBus;
  host: HostLimits;
  /** The accelerator chosen by the probe (or forced). */
  accelerator: () => Promise<Accelerator>;
  /** The resource pool: host capacity and its ratios and reserve. */
  pool: { host: HostCapacityInput; config: PoolConfig };
  /** The hypervisor: every VM process is launched, adopted, watched and killed through it. */
  driver: VmDriver;
  /** How QEMU opens image files here (probed at daemon start); default page cache + threads. */
  blockIo?: BlockIo;
  log: { info(o: object, m?: string): void; warn(o: object, m?: string): void };
}

/** A VM the daemon watches, with what the daemon knows of how it should end. */
interface Running {
  vm: Vm;
  /** why the daemon itself ends it (stop, kill, a failed start): its exit is not a crash */
  expected: string | null;
  /** the guest failed (a kernel panic) and the daemon ends it: its exit is a crash */
  crash: string | null;
  /** its start (or adoption) has not finished: that operation's own failure path deals with an exit */
  starting: boolean;
  /** why QEMU paused the guest on its own (BLOCK_IO_ERROR with action stop: a full disk), until it resumes */
  ioError?: string | null;
}

/** Timings of the daemon's own share of the last start (for the benchmark). */
export interface StartTimings {
  beforeSpawnMs: number;
  qemuLaunchMs: number;
  qmpReadyMs: number;
}

export class InstanceService {
  private hookSet = new HookSet();
  /** Attached volumes of an instance, resolved to their files (set by the disk service). */
  private contributors: LaunchContributor[] = [];
  private nicPlanner: NicPlanner = (uuid, req) => [{ id: FIRST_NIC_ID, model: 'virtio-net', network: DEFAULT_NETWORK, mac: macFor(uuid), queues: 1, ...(req.forwards ? { forwards: req.forwards.map(parseForward) } : {}) }];
  /** The pids of the processes serving an instance's vhost-user disks (set by the storage daemon service). */
  private backendSource: (row: InstanceRow) => Record<string, number | null> = () => ({});
  /** Exit hooks still at work per instance uuid (stopping storage daemons). */
  private exiting = new Map<string, Promise<void>>();
  private locks = new KeyedLock();
  /** The VMs watched, by instance uuid. */
  private running = new Map<string, Running>();
  /** The daemon's own timings of each instance's last start (served as a Server-Timing header). */
  readonly startTimings = new Map<string, StartTimings>();

  constructor(private d: InstanceDeps) {}

  /** A service's lifecycle hooks; they run in HOOK_ORDER (instance-hooks.ts), whatever the order they are added in. */
  addHooks(owner: HookOwner, h: InstanceHooks): void {
    this.hookSet.add(owner, h);
  }

  private get hooks(): InstanceHooks[] {
    return this.hookSet.all;
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
    const run = this.running.get(row.uuid);
    if (!run || row.pid === null || (row.state !== 'running' && row.state !== 'paused')) {
      throw new CorralError('INVALID_STATE', `instance "${name}" is ${row.state}: it must be running`, { state: row.state });
    }
    return { row, pid: row.pid, vm: run.vm };
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

  /**
   * Move an instance to a new state: refused (INTERNAL, both states named) when the table in core/state.ts does
   * not allow it. The stored state is the one moved from, whatever an older copy of the row says.
   */
  private setState(row: InstanceRow, to: InstanceState, reason: string, patch: Partial<InstanceRow> = {}, extra: Record<string, unknown> = {}): void {
    const stored = this.d.store.getInstance(row.name);
    const from = stored && stored.uuid === row.uuid ? stored.state : row.state;
    assertTransition(from, to, row.name);
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
      assertFits(this.d.dataDir, spec.disk ?? image.virtualSize, `the root disk of instance "${name}"`);
      const uuid = randomUUID();
      const now = new Date().toISOString();
      spec.nics = req.network === 'none' ? [] : this.nicPlanner(uuid, req);
      const row: InstanceRow = {
        uuid, name, spec, state: 'stopped', accel: null, pid: null, pidStart: null, mac: spec.nics[0]?.mac ?? macFor(uuid),
        createdAt: now, startedAt: null, lastError: null, updatedAt: now,
      };
      const p = this.paths(row);
      const release = this.d.images.claim(spec.image); // the image is not rebuilt or deleted under the new overlay
      try {
        mkdirSync(p.dir, { recursive: true, mode: 0o711 }); // QEMU's user opens what it is given there (vm-files.ts)
        await createOverlay(p.disk, image.disk, image.format, spec.disk);
        if (spec.firmware === 'uefi') copyFileSync(OVMF_VARS, p.efiVars);
        for (const f of [p.disk, p.efiVars]) takeBack(f);
        crashPoint('create.overlay'); // a folder without a row: reconcile removes it (sweepInstanceDirs)
        // planned again with nothing awaited before the row is stored, so that two creates running at once never
        // take the same MAC or address (the first plan refused a bad request before any disk was made)
        if (spec.nics.length > 0) spec.nics = this.nicPlanner(uuid, req);
        row.mac = spec.nics[0]?.mac ?? macFor(uuid);
        this.d.store.insertInstance(row);
      } catch (e) {
        rmSync(p.dir, { recursive: true, force: true });
        throw e;
      } finally {
        release();
      }
      crashPoint('create.row');
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
      } else if (row.pid !== null) {
        await this.doKill(row, 'deleted'); // an error-state instance whose QEMU may still run
      }
      const p = this.paths(row);
      crashPoint('delete.killed');
      // the row goes first: a crash after it leaves files that no row names, which reconcile removes
      this.d.store.deleteInstance(row.uuid);
      crashPoint('delete.row');
      removeRunDir(p);
      rmSync(p.dir, { recursive: true, force: true });
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
      await this.doStart(this.row(name));
    });
  }

  kill(name: string): Promise<InstanceView> {
    return this.op(name, 'kill', (row) => this.doKill(row));
  }

  pause(name: string): Promise<InstanceView> {
    return this.op(name, 'pause', async (row) => {
      await this.vmOf(row).pause();
      this.setState(row, 'paused', 'paused by user');
    });
  }

  resume(name: string): Promise<InstanceView> {
    return this.op(name, 'resume', async (row) => {
      await this.vmOf(row).resume(); // after a disk error QEMU retries the failed requests (and stops again if they fail)
      const run = this.running.get(row.uuid);
      const cleared = run?.ioError ? { lastError: null } : {};
      if (run) run.ioError = null;
      this.setState(row, 'running', 'resumed by user', cleared);
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
    return devicePaths(launchPlan(row, this.d.images.get(row.spec.image), accel, this.paths(row), launchExtras(this.contributors, row, this.d.blockIo)), live ? this.backendSource(row) : {});
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

  private vmOf(row: InstanceRow): Vm {
    const run = this.running.get(row.uuid);
    if (!run) throw new CorralError('INVALID_STATE', `instance "${row.name}" has no running QEMU`, { state: row.state });
    return run.vm;
  }

  /**
   * Start: admission, `starting`, the hooks' host resources, the launch, the `launched` hooks, `running`. A
   * failure at any step kills what was launched, runs every `exited` hook (which undo what the others set up)
   * and leaves the instance in the state it started from (stopped for a first start), with lastError set.
   */
  private async doStart(row: InstanceRow): Promise<void> {
    const t0 = performance.now();
    const image = this.d.images.get(row.spec.image);
    const p = this.paths(row);
    await this.settled(row.uuid);
    Object.assign(row, this.row(row.name));
    const accel = row.spec.accel === 'auto' ? await this.d.accelerator() : row.spec.accel;
    const prior = row.state;
    // Admission and the move to "starting" happen with no await in between: a concurrent start of another
    // instance sees this one as allocated, so concurrent starts cannot oversubscribe the pool.
    admitOrThrow(this.pool(row.uuid), { cpus: row.spec.cpus, memory: row.spec.memory });
    this.setState(row, 'starting', 'start requested', { lastError: null });
    let run: Running | null = null;
    let prepared = false;
    try {
      prepareRunDir(p);
      prepared = true;
      for (const h of this.hooks) if (h.beforeLaunch) await h.beforeLaunch(row, accel);
      crashPoint('start.resources');
      const plan = launchPlan(row, image, accel, p, launchExtras(this.contributors, row, this.d.blockIo));
      for (const h of this.hooks) if (h.beforeSpawn) await h.beforeSpawn(row, plan);
      const t1 = performance.now();
      keepPreviousStderr(p.stderr);
      const vm = await this.d.driver.launch(plan, { stderr: p.stderr });
      crashPoint('start.spawned'); // reconcile finds the VM by its uuid and adopts it
      const t2 = performance.now();
      run = this.watch(row, vm, true);
      const startedAt = new Date().toISOString();
      const status: RuntimeStatus = {
        uuid: row.uuid, name: row.name, pid: vm.pid, startTicks: vm.startTicks, qmp: p.qmp, qemuVersion: this.d.driver.version(),
        accel, startedAt, operation: 'start',
      };
      writeStatus(p, status);
      this.d.store.updateInstance(row.uuid, { pid: vm.pid, pidStart: vm.startTicks, accel, startedAt });
      Object.assign(row, { pid: vm.pid, pidStart: vm.startTicks, accel, startedAt });
      for (const h of this.hooks) if (h.launched) await h.launched(row, vm);
      const st = await vm.status();
      this.startTimings.set(row.name, { beforeSpawnMs: t1 - t0, qemuLaunchMs: t2 - t1, qmpReadyMs: performance.now() - t2 });
      run.starting = false;
      this.setState(row, st.status === 'paused' ? 'paused' : 'running', `QEMU ${vm.pid} started (${accel})`);
      writeStatus(p, { ...status, operation: null });
    } catch (e) {
      for (const h of this.hooks) if (h.startFailed) e = h.startFailed(row, e);
      if (run) await this.endStartedVm(row, run, 'the start failed');
      // best effort on a failed start, but finished before the start returns: nothing is left running
      if (prepared) await runExitHooks(this.hooks, row, this.d.log);
      removeRunDir(p);
      const err = this.coded(e, `start of instance "${row.name}"`);
      this.setState(row, prior === 'crashed' || prior === 'error' ? prior : 'stopped', `start failed: ${err.message}`, {
        pid: null, pidStart: null, lastError: err.message,
      });
      throw err;
    }
  }

  /** A VM whose start or adoption failed: end it and stop watching it (its exit moves no state). */
  private async endStartedVm(row: InstanceRow, run: Running, why: string): Promise<void> {
    run.expected ??= why;
    run.vm.kill();
    if (!(await waitExit(run.vm, 10_000))) {
      this.d.log.warn({ instance: row.name, pid: run.vm.pid }, 'QEMU did not exit after SIGKILL; it may still run');
      run.vm.detach();
    }
    if (this.running.get(row.uuid) === run) this.running.delete(row.uuid);
  }

  /** An error as the API reports it: coded errors as they are; anything else is a bug (INTERNAL), logged. */
  private coded(e: unknown, during: string): CorralError {
    if (isCorralError(e)) return e;
    const full = noSpace(e, during);
    if (full) return full;
    this.d.log.warn({ err: (e as Error)?.stack ?? String(e) }, `unexpected error during ${during}`);
    return new CorralError('INTERNAL', `${during}: ${(e as Error)?.message ?? String(e)}`);
  }

  private async doStop(row: InstanceRow, timeoutSec: number): Promise<void> {
    const run = this.running.get(row.uuid);
    if (!run) {
      this.setState(row, 'stopped', 'no QEMU process', { pid: null, pidStart: null });
      return;
    }
    this.setState(row, 'stopping', `ACPI power-off requested (timeout ${timeoutSec}s)`);
    crashPoint('stop.requested'); // reconcile adopts the VM, still running: the stop did not happen
    try {
      const st = await run.vm.status();
      if (!st.running) await run.vm.resume();
      await run.vm.powerdown();
    } catch (e) {
      this.d.log.warn({ instance: row.name, err: (e as Error).message }, 'powerdown request failed');
    }
    if (await waitExit(run.vm, timeoutSec * 1000)) {
      await this.settled(row.uuid);
      return;
    }
    this.d.events.publish('instance.stop-timeout', row.name, { timeoutSec });
    await this.doKill(row, `killed: the guest did not power off within ${timeoutSec}s`);
  }

  private async doKill(row: InstanceRow, why = 'killed by user'): Promise<void> {
    const run = this.running.get(row.uuid);
    if (run) {
      run.expected ??= why; // an exit we cause is not a crash
      run.vm.kill();
      if (!(await waitExit(run.vm, 10_000))) throw new CorralError('TIMEOUT', `QEMU ${run.vm.pid} did not exit after SIGKILL`);
    } else {
      // no VM watched: a QEMU whose monitor never answered (error), or one that is already gone
      if (row.pid !== null) this.d.driver.killProcess(row.uuid, { pid: row.pid, startTicks: row.pidStart });
      const stored = this.d.store.getInstance(row.name);
      if (stored && stored.state !== 'stopped') this.vmGone(stored, 'stopped', why, null);
    }
    await this.settled(row.uuid);
  }

  // ---- watching and the one exit path ----

  /** Watch a VM: its monitor events and, once, its exit. */
  private watch(row: InstanceRow, vm: Vm, starting: boolean): Running {
    const run: Running = { vm, expected: null, crash: null, starting };
    const { uuid, name } = row;
    this.running.set(uuid, run);
    vm.onEvent((ev) => this.onVmEvent(uuid, name, run, ev));
    void vm.exited.then((exit) => this.vmExited(uuid, name, run, exit)).catch((e: Error) => {
      this.d.log.warn({ instance: name, err: e.message }, 'the exit of a QEMU could not be handled');
    });
    return run;
  }

  /** The stored row of instance `name` if it still is the instance `uuid`. */
  private current(name: string, uuid: string): InstanceRow | null {
    const row = this.d.store.getInstance(name);
    return row && row.uuid === uuid ? row : null;
  }

  private onVmEvent(uuid: string, name: string, run: Running, ev: VmEvent): void {
    try {
      this.vmEvent(uuid, name, run, ev);
    } catch (e) {
      // called from the monitor's socket: a failure here (the store's disk full) must not end the daemon
      this.d.log.warn({ instance: name, event: ev.event, err: (e as Error).message }, 'a QEMU event could not be handled');
    }
  }

  private vmEvent(uuid: string, name: string, run: Running, ev: VmEvent): void {
    const row = this.current(name, uuid);
    if (!row || this.running.get(uuid) !== run) return;
    this.d.events.publish('qemu.event', row.name, { event: ev.event, data: ev.data });
    if (ev.event === 'BLOCK_IO_ERROR' && ev.data?.action === 'stop') run.ioError = ioErrorReason(ev.data);
    if (run.starting) return;
    if (ev.event === 'STOP' && row.state === 'running') this.setState(row, 'paused', run.ioError ?? 'QMP STOP', run.ioError ? { lastError: run.ioError } : {});
    else if (ev.event === 'RESUME' && row.state === 'paused') {
      const cleared = run.ioError ? { lastError: null } : {};
      run.ioError = null;
      this.setState(row, 'running', 'QMP RESUME', cleared);
    }
    else if (ev.event === 'GUEST_PANICKED') {
      // Like libvirt's on_crash=destroy: end the QEMU; the state becomes crashed once it is really gone, so
      // that a new start can never race the old process's clean-up.
      run.crash = 'the guest kernel panicked';
      run.vm.kill();
    }
  }

  /** The driver saw a watched VM end: say why, then (unless its start is still running) the one exit path. */
  private vmExited(uuid: string, name: string, run: Running, exit: VmExit): void {
    if (this.running.get(uuid) !== run) return;
    this.running.delete(uuid);
    const row = this.current(name, uuid);
    if (!row) return;
    const unasked = !run.expected && !run.crash && !(exit.shutdown !== null && exit.shutdown !== 'host-signal');
    const proc = { pid: run.vm.pid, startTicks: run.vm.startTicks };
    const info = exitRecord({
      pid: proc.pid, expected: run.expected, crash: run.crash, guestShutdown: exit.shutdown !== null, shutdownReason: exit.shutdown,
      stopping: row.state === 'stopping', status: exit.status,
      kernel: unasked ? this.d.driver.deathNote(proc) : null,
      service: unasked ? exitCauses(this.hooks, row, this.d.log) : null,
      stderr: stderrLine(this.paths(row).stderr),
    });
    const { state, reason } = info;
    if (!run.starting) {
      this.vmGone(row, state, reason, info);
    } else if (!run.expected) {
      this.recordExit(row, info); // died during its start: the start's failure path moves the state
    }
  }

  private recordExit(row: InstanceRow, exit: ExitInfo): void {
    try {
      writeExitInfo(this.paths(row).exitInfo, exit);
    } catch (e) {
      this.d.log.warn({ instance: row.name, err: (e as Error).message }, 'cannot record why QEMU ended');
    }
  }

  /**
   * The one exit path: a VM is gone (seen by the driver, killed without a watcher, or found dead at
   * adoption). Record why, start the exit hooks (the next operation on the instance waits for them: settled),
   * remove the runtime dir and move the state.
   */
  private vmGone(row: InstanceRow, to: InstanceState, reason: string, exit: ExitInfo | null): void {
    if (exit) this.recordExit(row, exit);
    const work = runExitHooks(this.hooks, row, this.d.log);
    this.exiting.set(row.uuid, work);
    void work.finally(() => {
      if (this.exiting.get(row.uuid) === work) this.exiting.delete(row.uuid);
    });
    removeRunDir(this.paths(row));
    this.setState(row, to, reason, { pid: null, pidStart: null, lastError: to === 'crashed' ? reason : row.lastError }, exit ? { exit } : {});
  }

  /** Wait for the exit hooks of an instance's last VM (its storage daemons stopping, its taps removed). */
  private async settled(uuid: string): Promise<void> {
    await this.exiting.get(uuid);
  }

  // ---- daemon start / stop ----

  /** Adopt every QEMU that outlived the previous daemon; mark the ones that died as crashed. */
  async reconcile(): Promise<void> {
    const rows = this.d.store.listInstances();
    for (const row of rows) {
      await this.locks.run(row.name, async () => {
        try {
          await this.reconcileOne(row);
        } catch (e) {
          this.d.log.warn({ instance: row.name, err: (e as Error).message }, 'cannot reconcile instance');
        }
      });
    }
    for (const gone of sweepInstanceDirs(this.d.dataDir, rows)) this.d.log.warn({ dir: gone }, 'removed the files of an instance that no longer exists (a create or delete cut short)');
  }

  private async reconcileOne(row: InstanceRow): Promise<void> {
    const p = this.paths(row);
    const status = readStatus(p);
    // The pid from the row, else the status file; if neither (the daemon died mid-start), look for a VM
    // carrying this uuid, so that it is adopted rather than started twice.
    const pid = row.pid ?? status?.pid ?? null;
    const recorded: VmProcess | null = pid === null ? null : { pid, startTicks: row.pidStart ?? status?.startTicks ?? null };
    const proc = this.d.driver.find(row.uuid, recorded, recorded === null && isActive(row.state));
    if (proc) return this.adopt(row, proc);
    if (!isActive(row.state)) {
      removeRunDir(p);
      return;
    }
    if (row.state === 'starting' && recorded === null) {
      // the daemon died during a start, before any VM ran: that start did not happen
      this.vmGone(row, 'stopped', 'the daemon stopped during the start, before QEMU ran: not started', null);
      return;
    }
    const gone = goneWhileDown(row.state === 'stopping', recorded?.pid ?? null, recorded && this.d.driver.deathNote(recorded), stderrLine(p.stderr));
    this.vmGone(row, gone.state, gone.reason, gone.exit);
  }

  /** Adopt a VM that outlived the previous daemon; if it does not answer, the instance is `error` (kill ends it). */
  private async adopt(row: InstanceRow, proc: VmProcess): Promise<void> {
    let run: Running | null = null;
    try {
      run = this.watch(row, await this.d.driver.adopt(proc, { qmp: this.paths(row).qmp }), true);
      for (const h of this.hooks) if (h.adopted) await h.adopted(row, run.vm);
      const st = await run.vm.status();
      run.starting = false;
      this.setState(row, st.status === 'paused' ? 'paused' : 'running', `adopted QEMU ${proc.pid} after daemon restart`, { pid: proc.pid, pidStart: proc.startTicks });
      this.d.log.info({ instance: row.name, pid: proc.pid }, 'adopted running QEMU');
    } catch (e) {
      this.d.log.warn({ instance: row.name, pid: proc.pid, err: (e as Error).message }, 'cannot reach the monitor of a live QEMU');
      if (run) {
        run.vm.detach();
        this.running.delete(row.uuid);
      }
      this.setState(row, 'error', `QEMU ${proc.pid} is alive but its QMP socket does not answer`, {
        pid: proc.pid, pidStart: proc.startTicks, lastError: (e as Error).message,
      });
    }
  }

  /** Let go of every VM without stopping it: they outlive the daemon. */
  detachAll(): void {
    for (const run of this.running.values()) run.vm.detach();
    this.running.clear();
  }
}
