/**
 * Instance use cases: create, start, stop, restart, pause, resume, kill, delete, and adoption of running
 * QEMUs at daemon start. Operations on one instance are serialised; the hypervisor is the source of truth.
 * Watching VMs and the one exit path are in vm-watch.ts, adoption in reconcile.ts, state moves in
 * instance-state.ts.
 */
import { randomUUID } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, rmSync } from 'node:fs';
import type { SharedPool } from './shared-pool.js';
import { takeBack } from '../host/run-as.js';
import { assertFits } from '../host/space.js';
import { crashPoint } from '../host/crash-points.js';
import { CorralError, isCorralError, noSpace } from '../core/errors.js';
import { instancePaths, type InstancePaths } from '../core/paths.js';
import { type CreateRequest, type InstanceSpec, validateCreate, validateName } from '../core/spec.js';
import { ACTIVE_STATES, assertCanRun, isActive, type InstanceState, type Operation } from '../core/state.js';
import { createOverlay } from '../qemu/img.js';
import { DEFAULT_NETWORK, macFor, parseForward } from '../core/nics.js';
import { FIRST_NIC_ID } from '../core/device-ids.js';
import type { InstanceRow, PlacedNic } from '../store/store.js';
import { waitExit, type Vm } from '../vm/driver.js';
import type { InstanceDeps } from './instance-deps.js';
import { KeyedLock } from './locks.js';
import { moveState } from './instance-state.js';
import { reconcileInstances } from './reconcile.js';
import { VmWatch, type Running } from './vm-watch.js';
import { HookSet, launchExtras, runExitHooks, type HookOwner, type InstanceHooks, type LaunchContributor, type LiveInstance, type NicPlanner } from './instance-hooks.js';
import { OVMF_VARS, assertOvmf, launchPlan, type RuntimeStatus, prepareRunDir, removeRunDir, writeStatus } from './runtime.js';
import { keepPreviousStderr } from './exit-cause.js';
import { instanceView, type InstanceView } from './instance-view.js';
import { devicePaths, type DevicePath } from './device-paths.js';
import { formatSizeExact } from '../core/units.js';
import { admitOrThrow, poolView, type PoolView } from '../core/pool.js';

export type { InstanceView, InstanceDeps };

/** Timings of the daemon's own share of the last start (for the benchmark). */
export interface StartTimings {
  beforeSpawnMs: number;
  qemuLaunchMs: number;
  qmpReadyMs: number;
}

/** The row of a new instance, stopped, whose first NIC's MAC is its MAC. */
function stoppedRow(uuid: string, name: string, spec: InstanceSpec): InstanceRow {
  const now = new Date().toISOString();
  return {
    uuid, name, spec, state: 'stopped', accel: null, pid: null, pidStart: null, mac: spec.nics[0]?.mac ?? macFor(uuid),
    createdAt: now, startedAt: null, lastError: null, updatedAt: now,
  };
}

export class InstanceService {
  private hookSet = new HookSet();
  /** Attached volumes of an instance, resolved to their files (set by the disk service). */
  private contributors: LaunchContributor[] = [];
  private nicPlanner: NicPlanner = (uuid, req) => [{ id: FIRST_NIC_ID, model: 'virtio-net', network: DEFAULT_NETWORK, mac: macFor(uuid), queues: 1, ...(req.forwards ? { forwards: req.forwards.map(parseForward) } : {}) }];
  /** Asks a guest's agent to power it off, for a stop whose ACPI request the guest ignored (set by the guest agent service). */
  private guestShutdown: ((row: InstanceRow, timeoutMs: number) => Promise<void>) | null = null;
  /** The pids of the processes serving an instance's vhost-user disks (set by the storage daemon service). */
  private backendSource: (row: InstanceRow) => Record<string, number | null> = () => ({});
  private locks = new KeyedLock();
  /** The VMs watched and the one exit path (vm-watch.ts). */
  private vms: VmWatch;
  /** The daemon's own timings of each instance's last start (served as a Server-Timing header). */
  readonly startTimings = new Map<string, StartTimings>();

  constructor(private d: InstanceDeps) {
    this.vms = new VmWatch({ deps: d, hooks: () => this.hooks, paths: (r) => this.paths(r) });
  }

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

  /** How a stop asks the guest's agent to power the guest off when ACPI is ignored (the guest agent service). */
  setGuestShutdown(fn: (row: InstanceRow, timeoutMs: number) => Promise<void>): void {
    this.guestShutdown = fn;
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
    const run = this.vms.get(row.uuid);
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
    const p = instancePaths(this.d.dataDir, row.uuid);
    return row.spec.rootPool === 'shared' ? { ...p, disk: this.sharedPool().diskOf(row.name) } : p;
  }

  private sharedPool(): SharedPool {
    if (!this.d.sharedPool) throw new CorralError('INVALID_SPEC', 'pool: this host has no shared pool (start its daemon or agent with --shared-pool DIR)', { field: 'pool' });
    return this.d.sharedPool;
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

  /** Whether a NIC of any instance has this MAC (the store's index). */
  macInUse(mac: string): boolean {
    return this.d.store.macInUse(mac);
  }

  /** The NICs of every instance that forward host ports. */
  nicsWithForwards(): PlacedNic[] {
    return this.d.store.nicsWithForwards();
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

  /** Move an instance to a new state, as the table in core/state.ts allows (instance-state.ts). */
  private setState(row: InstanceRow, to: InstanceState, reason: string, patch: Partial<InstanceRow> = {}): void {
    moveState(this.d, row, to, reason, patch);
  }

  /** The pool: capacity, and what instances that are starting, running, paused or stopping hold. */
  pool(excludeUuid?: string): PoolView {
    const allocations = this.d.store.listInstances(ACTIVE_STATES)
      .filter((r) => r.uuid !== excludeUuid)
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
      spec.nics = req.network === 'none' ? [] : this.nicPlanner(uuid, req);
      const row = stoppedRow(uuid, name, spec);
      const p = this.paths(row);
      const shared = spec.rootPool === 'shared' ? this.sharedPool() : null;
      // the shared pool's root disk is this create's to remove on failure, unless it takes over one that was there
      const ownsSharedDisk = shared !== null && req.adopt !== true;
      if (shared && req.adopt === true && !existsSync(p.disk)) throw new CorralError('INVALID_SPEC', `adopt: the shared pool holds no root disk for "${name}" (${p.disk})`, { field: 'adopt' });
      if (ownsSharedDisk && existsSync(shared.instanceDir(name))) {
        throw new CorralError('ALREADY_EXISTS', `the shared pool already holds a root disk for "${name}" (${shared.instanceDir(name)}): an instance of that name on another host, or left behind`, { field: 'name' });
      }
      const release = this.d.images.claim(spec.image); // the image is not rebuilt or deleted under the new overlay
      try {
        mkdirSync(p.dir, { recursive: true, mode: 0o711 }); // QEMU's user opens what it is given there (vm-files.ts)
        const overlay = this.d.overlay ?? createOverlay;
        if (ownsSharedDisk) {
          const base = await shared.base(image);
          shared.makeInstanceDir(name);
          await overlay(p.disk, base, image.format, spec.disk);
        } else if (!shared) {
          await overlay(p.disk, image.disk, image.format, spec.disk);
        }
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
        if (ownsSharedDisk) shared.remove(name);
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
          if (ownsSharedDisk) shared.remove(name);
          removeRunDir(p);
          this.d.events.publish('instance.deleted', name, { reason: 'create --start failed' });
          throw e;
        }
      }
      return this.view(row);
    });
  }

  /**
   * Record a stopped instance whose folder a copy or an import has made (instancePaths(dataDir, uuid): its root disk
   * there, its UEFI variables for a UEFI instance): the row, under the new name's lock. ALREADY_EXISTS when the name
   * was taken meanwhile; the caller removes the folder on any failure. The spec comes checked (core/instance-archive).
   */
  async recordMade(name: string, uuid: string, spec: InstanceSpec, reason: string): Promise<InstanceView> {
    validateName('name', name);
    return this.locks.run(name, async () => {
      if (this.d.store.getInstance(name)) throw new CorralError('ALREADY_EXISTS', `instance "${name}" already exists`, { field: 'name' });
      await this.checkSpec(spec);
      const row = stoppedRow(uuid, name, spec);
      const p = this.paths(row);
      for (const f of [p.disk, p.efiVars]) takeBack(f);
      this.d.store.insertInstance(row);
      this.d.events.publish('instance.created', name, { uuid, image: spec.image, reason });
      return this.view(row);
    });
  }

  /**
   * The incoming side of a live migration: the instance as its source host has it (the same uuid, so the same
   * MACs and launch plan; its root disk on the shared pool, taken over), recorded here and started paused with
   * `-incoming defer`. The caller (migration.ts) checked the spec; a failure leaves nothing (the shared disk stays).
   * `stopped`: a stopped instance moved here (move-in.ts): only recorded, not started.
   */
  async createIncoming(name: string, uuid: string, spec: InstanceSpec, o: { stopped?: boolean } = {}): Promise<InstanceView> {
    validateName('name', name);
    this.d.images.get(spec.image);
    return this.locks.run(name, async () => {
      if (this.d.store.getInstance(name)) throw new CorralError('ALREADY_EXISTS', `instance "${name}" already exists on this host`, { field: 'name' });
      if (spec.firmware === 'uefi') throw new CorralError('NOT_MIGRATABLE', `instance "${name}" boots UEFI: its variables file is not on the shared pool yet`, { name });
      await this.checkSpec(spec);
      const row = stoppedRow(uuid, name, spec);
      const p = this.paths(row);
      if (!existsSync(p.disk)) throw new CorralError('NOT_MIGRATABLE', `the shared pool of this host holds no root disk for "${name}" (${p.disk})`, { name });
      mkdirSync(p.dir, { recursive: true, mode: 0o711 });
      this.d.store.insertInstance(row);
      this.d.events.publish('instance.created', name, { uuid, image: spec.image, reason: o.stopped ? 'moved here stopped from another host' : 'incoming live migration' });
      if (o.stopped) return this.view(row);
      try {
        await this.doStart(row, true);
      } catch (e) {
        this.d.store.deleteInstance(uuid);
        rmSync(p.dir, { recursive: true, force: true });
        removeRunDir(p);
        this.d.events.publish('instance.deleted', name, { reason: 'its incoming migration could not start' });
        throw e;
      }
      return this.view(row);
    });
  }

  /**
   * Delete an instance: its row, its files and its root disk. `forget`: its root disk on the shared pool stays (the
   * instance runs on another host of the cluster now, which took that disk over).
   */
  async delete(name: string, force = false, forget = false): Promise<void> {
    return this.locks.run(name, async () => {
      const row = this.row(name);
      if (isActive(row.state)) {
        if (!force) assertCanRun('delete', row.state, name);
        await this.doKill(row);
      } else if (row.pid !== null) {
        await this.doKill(row, 'deleted'); // an error-state instance whose QEMU may still run
      }
      const p = this.paths(row);
      for (const h of this.hooks) {
        try {
          await h.deleting?.(row);
        } catch (e) {
          this.d.log.warn({ instance: row.name, err: (e as Error).message }, 'delete hook failed');
        }
      }
      crashPoint('delete.killed');
      // the row goes first: a crash after it leaves files that no row names, which reconcile removes
      this.d.store.deleteInstance(row.uuid);
      crashPoint('delete.row');
      removeRunDir(p);
      rmSync(p.dir, { recursive: true, force: true });
      if (row.spec.rootPool === 'shared' && !forget) this.sharedPool().remove(row.name);
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

  /**
   * Start an instance whose lock the caller holds (a snapshot's restore). `load`: QEMU starts with its vCPUs stopped
   * (-S) and `load` runs once it answers (it loads a memory snapshot and lets the guest run); a failure there fails
   * the start as any other step would, leaving nothing running.
   */
  async startHeld(name: string, load?: (vm: Vm) => Promise<void>): Promise<void> {
    const row = this.row(name);
    assertCanRun('start', row.state, name);
    await this.doStart(row, false, load);
  }

  /** Kill the QEMU of an instance whose lock the caller holds (a restore that discards the running guest). */
  async killHeld(name: string, why: string): Promise<void> {
    const row = this.row(name);
    if (isActive(row.state) || row.pid !== null) await this.doKill(row, why);
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
      // QEMU takes a `cont` in inmigrate as "run once it has arrived": only a controller's finish may decide that
      if ((await this.vmOf(row).status()).status === 'inmigrate') throw new CorralError('INVALID_STATE', `instance "${name}" is receiving a live migration: it runs once a controller finishes the migration`, { state: row.state });
      await this.vmOf(row).resume(); // after a disk error QEMU retries the failed requests (and stops again if they fail)
      const run = this.vms.get(row.uuid);
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

  /**
   * The VNC socket of a running instance with a display (the API bridges it to the web console's graphical console):
   * NO_DISPLAY for one without, whatever its state; then the console's rule (running, paused, starting, stopping).
   */
  vncSocket(name: string): string {
    const row = this.row(name);
    if (row.spec.display !== 'vnc') throw new CorralError('NO_DISPLAY', `instance "${name}" has no display (it was created with --display none, the default); \`corral set ${name} display=vnc\` gives it one from its next start`, { instance: name });
    assertCanRun('console', row.state, name);
    return this.paths(row).vnc;
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
    const run = this.vms.get(row.uuid);
    if (!run) throw new CorralError('INVALID_STATE', `instance "${row.name}" has no running QEMU`, { state: row.state });
    return run.vm;
  }

  /**
   * Start: admission, `starting`, the hooks' host resources, the launch, the `launched` hooks, `running`. A
   * failure at any step kills what was launched, runs every `exited` hook (which undo what the others set up)
   * and leaves the instance in the state it started from (stopped for a first start), with lastError set.
   */
  private async doStart(row: InstanceRow, incoming = false, load?: (vm: Vm) => Promise<void>): Promise<void> {
    const t0 = performance.now();
    const image = this.d.images.get(row.spec.image);
    const p = this.paths(row);
    await this.vms.settled(row.uuid);
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
      if (incoming) plan.incoming = true;
      if (load) plan.paused = true;
      for (const h of this.hooks) if (h.beforeSpawn) await h.beforeSpawn(row, plan);
      const t1 = performance.now();
      keepPreviousStderr(p.stderr);
      const vm = await this.d.driver.launch(plan, { stderr: p.stderr });
      crashPoint('start.spawned'); // reconcile finds the VM by its uuid and adopts it
      const t2 = performance.now();
      run = this.vms.watch(row, vm, true);
      const startedAt = new Date().toISOString();
      const status: RuntimeStatus = {
        uuid: row.uuid, name: row.name, pid: vm.pid, startTicks: vm.startTicks, qmp: p.qmp, qemuVersion: this.d.driver.version(),
        accel, startedAt, operation: 'start',
      };
      writeStatus(p, status);
      this.d.store.updateInstance(row.uuid, { pid: vm.pid, pidStart: vm.startTicks, accel, startedAt });
      Object.assign(row, { pid: vm.pid, pidStart: vm.startTicks, accel, startedAt });
      for (const h of this.hooks) if (h.launched) await h.launched(row, vm);
      if (load) await load(vm);
      const st = await vm.status();
      this.startTimings.set(row.name, { beforeSpawnMs: t1 - t0, qemuLaunchMs: t2 - t1, qmpReadyMs: performance.now() - t2 });
      run.starting = false;
      // an incoming migration's QEMU waits paused (inmigrate) until the guest has come and it is told to run
      const paused = st.status === 'paused' || st.status === 'inmigrate';
      this.setState(row, paused ? 'paused' : 'running', `QEMU ${vm.pid} started (${accel})${incoming ? ' for an incoming migration' : ''}`);
      writeStatus(p, { ...status, operation: null });
    } catch (e) {
      for (const h of this.hooks) if (h.startFailed) e = h.startFailed(row, e);
      if (run) await this.vms.endStarted(row, run, 'the start failed');
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

  /** An error as the API reports it: coded errors as they are; anything else is a bug (INTERNAL), logged. */
  private coded(e: unknown, during: string): CorralError {
    if (isCorralError(e)) return e;
    const full = noSpace(e, during);
    if (full) return full;
    this.d.log.warn({ err: (e as Error)?.stack ?? String(e) }, `unexpected error during ${during}`);
    return new CorralError('INTERNAL', `${during}: ${(e as Error)?.message ?? String(e)}`);
  }

  /**
   * Stop: ACPI power button, then, for an instance with the guest agent's channel, after half the timeout the
   * agent's guest-shutdown (event `instance.stop-agent`), then SIGKILL at the timeout (event `instance.stop-timeout`).
   */
  private async doStop(row: InstanceRow, timeoutSec: number): Promise<void> {
    const run = this.vms.get(row.uuid);
    if (!run) {
      this.setState(row, 'stopped', 'no QEMU process', { pid: null, pidStart: null });
      return;
    }
    const agent = this.guestShutdown !== null && row.spec.agent && timeoutSec > 0;
    this.setState(row, 'stopping', `ACPI power-off requested (timeout ${timeoutSec}s${agent ? '; the guest agent\'s shutdown after half of it' : ''})`);
    crashPoint('stop.requested'); // reconcile adopts the VM, still running: the stop did not happen
    const t0 = Date.now();
    try {
      const st = await run.vm.status();
      if (!st.running) await run.vm.resume();
      await run.vm.powerdown();
    } catch (e) {
      this.d.log.warn({ instance: row.name, err: (e as Error).message }, 'powerdown request failed');
    }
    const totalMs = timeoutSec * 1000;
    if (await waitExit(run.vm, agent ? totalMs / 2 - (Date.now() - t0) : totalMs - (Date.now() - t0))) {
      await this.vms.settled(row.uuid);
      return;
    }
    if (agent && this.guestShutdown) {
      const after = Math.round((Date.now() - t0) / 100) / 10;
      try {
        await this.guestShutdown({ ...row, state: 'stopping' }, Math.max(1, Math.min(5000, totalMs - (Date.now() - t0))));
        this.d.events.publish('instance.stop-agent', row.name, { afterSec: after });
      } catch (e) {
        this.d.log.warn({ instance: row.name, err: (e as Error).message }, 'the guest agent\'s shutdown failed');
      }
      if (await waitExit(run.vm, Math.max(0, totalMs - (Date.now() - t0)))) {
        await this.vms.settled(row.uuid);
        return;
      }
    }
    this.d.events.publish('instance.stop-timeout', row.name, { timeoutSec });
    await this.doKill(row, `killed: the guest did not power off within ${timeoutSec}s`);
  }

  private async doKill(row: InstanceRow, why = 'killed by user'): Promise<void> {
    const run = this.vms.get(row.uuid);
    if (run) {
      run.expected ??= why; // an exit we cause is not a crash
      run.vm.kill();
      if (!(await waitExit(run.vm, 10_000))) throw new CorralError('TIMEOUT', `QEMU ${run.vm.pid} did not exit after SIGKILL`);
    } else {
      // no VM watched: a QEMU whose monitor never answered (error), or one that is already gone
      if (row.pid !== null) this.d.driver.killProcess(row.uuid, { pid: row.pid, startTicks: row.pidStart });
      const stored = this.d.store.getInstance(row.name);
      if (stored && stored.state !== 'stopped') this.vms.gone(stored, 'stopped', why, null);
    }
    await this.vms.settled(row.uuid);
  }

  // ---- daemon start / stop ----

  /** Adopt every QEMU that outlived the previous daemon; mark the ones that died as crashed (reconcile.ts). */
  async reconcile(): Promise<void> {
    await reconcileInstances({ deps: this.d, locks: this.locks, watch: this.vms, hooks: () => this.hooks, paths: (r) => this.paths(r) });
  }

  /** Let go of every VM without stopping it: they outlive the daemon. */
  detachAll(): void {
    this.vms.detachAll();
  }
}
