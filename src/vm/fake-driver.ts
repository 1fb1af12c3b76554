/**
 * An in-memory hypervisor behind the VmDriver seam: for the lifecycle unit tests and, later, simulated hosts.
 * Its "processes" live in the driver (the host's process table), so a second InstanceService over the same
 * driver sees what a restarted daemon sees: VMs that outlived it, to be found and adopted.
 *
 * A process runs until it is killed, powers off (ACPI, unless the guest ignores it) or a test ends it with
 * exit(). Failures are injected per test: a launch that fails or whose monitor never greets, a command that
 * fails or hangs, a monitor that stops answering, a process that survives SIGKILL.
 */
import { writeFileSync } from 'node:fs';
import { CorralError } from '../core/errors.js';
import type { LaunchPlan } from '../qemu/argv.js';
import type { BlockStatsEntry, HotpluggableCpu, JobInfo, MigrationInfo, VcpuInfo, Vm, VmDriver, VmEvent, VmExit, VmProcess, VmRunStatus, VmSockets } from './driver.js';

/** Fake pids start above Linux's largest pid_max (2^22), so they never name a real process. */
const FIRST_PID = 5_000_000;

/** One VM "process" on the fake host. */
export class FakeProcess {
  alive = true;
  status: 'running' | 'paused' | 'postmigrate' | 'inmigrate' = 'running';
  /** the guest powers off on the ACPI button (false: it ignores it, as a hung guest does) */
  acpi = true;
  /** SIGKILL does not end it (a process stuck in the kernel) */
  unkillable = false;
  /** its monitor stops answering: every call fails with TIMEOUT (adoption too) */
  monitorDead = false;
  /** what the host kernel logged about its death, for deathNote() */
  deathNote: string | null = null;
  /** every monitor command it received, in order */
  readonly calls: string[] = [];
  readonly devices = new Set<string>();
  readonly objects = new Set<string>(['mem0']);
  readonly properties = new Map<string, unknown>();
  /** the internal snapshots each block node's image holds, as query-named-block-nodes reports them */
  readonly nodeSnapshots = new Map<string, Array<Record<string, unknown>>>();
  balloon: number;
  private readonly failures = new Map<string, CorralError>();
  private readonly holds = new Map<string, Promise<void>>();
  private handles = new Set<FakeVm>();
  private shutdown: string | null = null;

  constructor(readonly pid: number, readonly startTicks: number, readonly uuid: string, readonly plan: LaunchPlan) {
    this.balloon = plan.memory;
    for (const d of plan.disks) this.devices.add(d.id);
    for (const n of plan.nics) this.devices.add(n.id);
  }

  /** The next `command` fails with `error` (default: QEMU_FAILED as QEMU's refusal would read). */
  failNext(command: string, error = new CorralError('QEMU_FAILED', `QEMU refused ${command}: injected`, { command })): void {
    this.failures.set(command, error);
  }

  /** `command` waits until the returned function is called (an operation caught half-way). */
  hold(command: string): () => void {
    let release!: () => void;
    this.holds.set(command, new Promise<void>((r) => { release = r; }));
    return () => {
      this.holds.delete(command);
      release();
    };
  }

  /** The process ends: code, or a signal; shutdown is the hypervisor's report before it ('guest-shutdown' ...). */
  exit(how: { code?: number; signal?: string; shutdown?: string | null } = { signal: 'SIGSEGV' }): void {
    if (!this.alive) return;
    this.alive = false;
    if (how.shutdown !== undefined) this.shutdown = how.shutdown;
    const exit: VmExit = { status: { code: how.code ?? null, signal: how.signal ?? null }, shutdown: this.shutdown };
    for (const h of [...this.handles]) h.ended(exit);
    this.handles.clear();
  }

  /** SIGKILL, delivered a moment later as the kernel would. */
  kill(): void {
    if (this.unkillable || !this.alive) return;
    setImmediate(() => this.exit({ signal: 'SIGKILL' }));
  }

  attach(h: FakeVm): void {
    if (this.alive) this.handles.add(h);
  }

  detach(h: FakeVm): void {
    this.handles.delete(h);
  }

  emit(ev: VmEvent): void {
    for (const h of this.handles) h.event(ev);
  }

  async call<T>(command: string, fn: () => T | Promise<T>): Promise<T> {
    this.calls.push(command);
    await this.holds.get(command);
    if (!this.alive) throw new CorralError('VM_GONE', `QEMU went away during ${command}`, { command });
    if (this.monitorDead) throw new CorralError('TIMEOUT', `QEMU did not answer ${command} within 10s`, { command });
    const f = this.failures.get(command);
    if (f) {
      this.failures.delete(command);
      throw f;
    }
    return fn();
  }

  setShutdown(reason: string): void {
    this.shutdown = reason;
    this.emit({ event: 'SHUTDOWN', data: { guest: reason === 'guest-shutdown', reason } });
  }
}

/** The daemon's connection to one fake process. */
export class FakeVm implements Vm {
  readonly exited: Promise<VmExit>;
  private resolveExit!: (e: VmExit) => void;
  private listeners = new Set<(ev: VmEvent) => void>();
  private detached = false;

  constructor(readonly process: FakeProcess) {
    this.exited = new Promise((r) => { this.resolveExit = r; });
    process.attach(this);
  }

  get pid(): number { return this.process.pid; }
  get startTicks(): number { return this.process.startTicks; }

  ended(exit: VmExit): void {
    if (!this.detached) this.resolveExit(exit);
  }

  event(ev: VmEvent): void {
    for (const fn of this.listeners) fn(ev);
  }

  onEvent(fn: (ev: VmEvent) => void): () => void {
    this.listeners.add(fn);
    return () => { this.listeners.delete(fn); };
  }

  kill(): void { this.process.kill(); }

  detach(): void {
    this.detached = true;
    this.process.detach(this);
  }

  private call<T>(command: string, fn: () => T | Promise<T>): Promise<T> {
    if (this.detached) return Promise.reject(new CorralError('VM_GONE', `the monitor of QEMU ${this.pid} is closed`, { command }));
    return this.process.call(command, fn);
  }

  status(): Promise<VmRunStatus> {
    return this.call('query-status', () => ({ status: this.process.status, running: this.process.status === 'running' }));
  }
  pause(): Promise<void> {
    return this.call('stop', () => {
      this.process.status = 'paused';
      this.process.emit({ event: 'STOP', data: {} });
    });
  }
  resume(): Promise<void> {
    return this.call('cont', () => {
      this.process.status = 'running';
      this.process.emit({ event: 'RESUME', data: {} });
    });
  }
  powerdown(): Promise<void> {
    return this.call('system_powerdown', () => {
      if (!this.process.acpi) return;
      setImmediate(() => {
        if (!this.process.alive) return;
        this.process.setShutdown('guest-shutdown');
        this.process.exit({ code: 0 });
      });
    });
  }
  /** The vCPU slots QEMU offers up to maxCpus; the boot vCPUs and those device_add plugged (ids cpuN) are taken. */
  private cpuSlots(): HotpluggableCpu[] {
    const { cpus, maxCpus, topology: t } = this.process.plan;
    return Array.from({ length: maxCpus }, (_, i) => {
      const props = { 'socket-id': Math.floor(i / (t.cores * t.threads)), 'core-id': Math.floor(i / t.threads) % t.cores, 'thread-id': i % t.threads };
      const path = i < cpus ? `/machine/unattached/device[${i}]` : this.process.devices.has(`cpu${i}`) ? `/machine/peripheral/cpu${i}` : undefined;
      return { type: 'qemu64-x86_64-cpu', 'vcpus-count': 1, props, ...(path ? { 'qom-path': path } : {}) };
    });
  }
  vcpus(): Promise<VcpuInfo[]> {
    return this.call('query-cpus-fast', () => this.cpuSlots().flatMap((c, i) => (c['qom-path'] ? [{ 'cpu-index': i, 'thread-id': this.pid + 1 + i, 'qom-path': c['qom-path'] }] : [])));
  }
  hotpluggableCpus(): Promise<HotpluggableCpu[]> { return this.call('query-hotpluggable-cpus', () => this.cpuSlots()); }
  vcpuStats(): Promise<unknown> { return this.call('query-stats', () => ({})); }
  deviceAdd(args: Record<string, unknown>): Promise<void> {
    return this.call('device_add', () => { this.process.devices.add(String(args.id)); });
  }
  deviceDel(id: string): Promise<void> {
    return this.call('device_del', () => {
      if (!this.process.devices.delete(id.replace(/^\/machine\/peripheral\//, ''))) throw new CorralError('QEMU_FAILED', `QEMU refused device_del: Device '${id}' not found`, { command: 'device_del' });
      setImmediate(() => this.process.emit({ event: 'DEVICE_DELETED', data: { device: id } }));
    });
  }
  peripherals(): Promise<string[]> { return this.call('qom-list', () => [...this.process.devices]); }
  objects(): Promise<string[]> { return this.call('qom-list', () => [...this.process.objects]); }
  objectAdd(args: Record<string, unknown>): Promise<void> { return this.call('object-add', () => { this.process.objects.add(String(args.id)); }); }
  objectDel(id: string): Promise<void> { return this.call('object-del', () => { this.process.objects.delete(id); }); }
  propertyGet<T = unknown>(path: string, property: string): Promise<T> {
    return this.call('qom-get', () => this.process.properties.get(`${path}.${property}`) as T);
  }
  propertySet(path: string, property: string, value: unknown): Promise<void> {
    return this.call('qom-set', () => { this.process.properties.set(`${path}.${property}`, value); });
  }
  blockdevAdd(): Promise<void> { return this.call('blockdev-add', () => undefined); }
  blockdevDel(): Promise<void> { return this.call('blockdev-del', () => undefined); }
  blockResize(): Promise<void> { return this.call('block_resize', () => undefined); }
  chardevAdd(): Promise<void> { return this.call('chardev-add', () => undefined); }
  chardevRemove(): Promise<void> { return this.call('chardev-remove', () => undefined); }
  netdevAdd(): Promise<void> { return this.call('netdev_add', () => undefined); }
  netdevDel(): Promise<void> { return this.call('netdev_del', () => undefined); }
  memorySize(): Promise<{ base: number | null; plugged: number | null }> {
    return this.call('query-memory-size-summary', () => ({ base: this.process.plan.memory, plugged: 0 }));
  }
  balloonSize(): Promise<number> { return this.call('query-balloon', () => this.process.balloon); }
  blockStats(): Promise<BlockStatsEntry[]> {
    return this.call('query-blockstats', () => this.process.plan.disks.map((d) => d.id).map((d) => ({ qdev: `/machine/peripheral/${d}/virtio-backend`, stats: { rd_bytes: 0, wr_bytes: 0, rd_operations: 0, wr_operations: 0 } })));
  }
  balloon(bytes: number): Promise<void> { return this.call('balloon', () => { this.process.balloon = bytes; }); }
  memdevs(): Promise<string[]> { return this.call('query-memdev', () => ['mem0']); }
  memoryTree(): Promise<string> { return this.call('human-monitor-command', () => ''); }
  gpaToHva(): Promise<string> { return this.call('human-monitor-command', () => ''); }
  /** A simulated migration completes at once: the source is left paused in postmigrate, as QEMU leaves it. */
  migrateIncoming(): Promise<void> { return this.call('migrate-incoming', () => undefined); }
  migrateSetCapabilities(): Promise<void> { return this.call('migrate-set-capabilities', () => undefined); }
  migrateSetParameters(): Promise<void> { return this.call('migrate-set-parameters', () => undefined); }
  migrate(): Promise<void> {
    return this.call('migrate', () => {
      this.migration = 'completed';
      this.process.status = 'postmigrate';
      this.process.emit({ event: 'STOP', data: {} });
    });
  }
  queryMigrate(): Promise<MigrationInfo> {
    return this.call('query-migrate', () => (this.migration ? { status: this.migration, 'total-time': 1, downtime: 0, 'setup-time': 0 } : {}));
  }
  migrateCancel(): Promise<void> { return this.call('migrate_cancel', () => undefined); }
  migrateStartPostcopy(): Promise<void> { return this.call('migrate-start-postcopy', () => undefined); }
  private migration: string | null = null;
  /** A simulated mirror is ready at once; a cancel concludes it (completed, or with an error when forced). */
  nbdServerStart(): Promise<void> { return this.call('nbd-server-start', () => undefined); }
  nbdServerStop(): Promise<void> { return this.call('nbd-server-stop', () => undefined); }
  blockExportAdd(): Promise<void> { return this.call('block-export-add', () => undefined); }
  blockdevMirror(args: Record<string, unknown>): Promise<void> {
    return this.call('blockdev-mirror', () => { this.jobs.set(String(args['job-id']), { id: String(args['job-id']), type: 'mirror', status: 'ready', 'current-progress': 0, 'total-progress': 0 }); });
  }
  private backupJob(args: Record<string, unknown>): void {
    this.jobs.set(String(args['job-id']), { id: String(args['job-id']), type: 'backup', status: 'concluded', 'current-progress': 0, 'total-progress': 0 });
  }
  blockJobCancel(job: string, force: boolean): Promise<void> {
    return this.call('block-job-cancel', () => {
      const j = this.jobs.get(job);
      if (!j) throw new CorralError('QEMU_FAILED', `QEMU refused block-job-cancel: Block job '${job}' not found`, { command: 'block-job-cancel' });
      j.status = 'concluded';
      if (force) j.error = 'Operation canceled';
    });
  }
  jobDismiss(id: string): Promise<void> { return this.call('job-dismiss', () => { this.jobs.delete(id); }); }
  queryJobs(): Promise<JobInfo[]> { return this.call('query-jobs', () => [...this.jobs.values()].map((j) => ({ ...j }))); }
  private jobs = new Map<string, JobInfo>();
  /**
   * A transaction of blockdev-snapshot-internal-sync (internal snapshots) or of blockdev-backup (backup jobs that
   * conclude at once); snapshot jobs that conclude at once.
   */
  transaction(actions: Array<{ type: string; data: Record<string, unknown> }>): Promise<void> {
    return this.call('transaction', () => {
      for (const a of actions) {
        if (a.type === 'blockdev-backup') this.backupJob(a.data);
        else this.addSnapshot(String(a.data.device), String(a.data.name), 0);
      }
    });
  }
  snapshotJob(kind: 'save' | 'load' | 'delete', args: Record<string, unknown>): Promise<void> {
    return this.call(`snapshot-${kind}`, () => {
      const tag = String(args.tag);
      const devices = (args.devices as string[]) ?? [];
      let error: string | undefined;
      if (kind === 'save') for (const d of devices) this.addSnapshot(d, tag, d === args.vmstate ? 4096 : 0);
      if (kind === 'delete') for (const d of devices) this.process.nodeSnapshots.set(d, (this.process.nodeSnapshots.get(d) ?? []).filter((x) => x.name !== tag));
      if (kind === 'load' && !devices.every((d) => this.process.nodeSnapshots.get(d)?.some((x) => x.name === tag))) error = `Snapshot '${tag}' does not exist in one or more devices`;
      const id = String(args['job-id']);
      this.jobs.set(id, { id, type: `snapshot-${kind}`, status: 'concluded', 'current-progress': 1, 'total-progress': 1, ...(error ? { error } : {}) });
    });
  }
  nodeSnapshots(): Promise<Record<string, unknown>> {
    return this.call('query-named-block-nodes', () => Object.fromEntries([...this.process.nodeSnapshots].map(([k, v]) => [k, v.map((x) => ({ ...x }))])));
  }
  private addSnapshot(node: string, name: string, vmState: number): void {
    const list = this.process.nodeSnapshots.get(node) ?? [];
    if (list.some((x) => x.name === name)) throw new CorralError('QEMU_FAILED', `QEMU refused the snapshot: Snapshot with name '${name}' already exists`, { command: 'transaction' });
    const now = Date.now();
    list.push({ id: String(list.length + 1), name, 'vm-state-size': vmState, 'date-sec': Math.floor(now / 1000), 'date-nsec': (now % 1000) * 1e6 });
    this.process.nodeSnapshots.set(node, list);
  }
}

/** How the next launch goes. */
export type LaunchOutcome =
  /** QEMU refuses the plan and exits at once (its stderr line is the error) */
  | { fail: string }
  /** QEMU starts but its monitor never greets: the launch kills it and fails */
  | { noGreeting: true };

export class FakeDriver implements VmDriver {
  readonly name = 'fake';
  /** the fake host's VM processes, live and dead, by pid */
  readonly processes = new Map<number, FakeProcess>();
  /** every launch plan, in order */
  readonly launches: LaunchPlan[] = [];
  private nextPid = FIRST_PID;
  private next: LaunchOutcome | null = null;
  private launchHold: Promise<void> | null = null;

  version(): string {
    return 'fake-1.0';
  }

  /** The next launch fails as described. */
  failNextLaunch(outcome: LaunchOutcome): void {
    this.next = outcome;
  }

  /** Launches wait until the returned function is called. */
  holdLaunch(): () => void {
    let release!: () => void;
    this.launchHold = new Promise<void>((r) => { release = r; });
    return () => {
      this.launchHold = null;
      release();
    };
  }

  /** The live processes. */
  live(): FakeProcess[] {
    return [...this.processes.values()].filter((p) => p.alive);
  }

  /** The live process of an instance (at most one may exist). */
  processOf(uuid: string): FakeProcess | undefined {
    return this.live().find((p) => p.uuid === uuid);
  }

  async launch(plan: LaunchPlan, files: { stderr: string }): Promise<Vm> {
    this.launches.push(plan);
    await this.launchHold;
    const outcome = this.next;
    this.next = null;
    if (outcome && 'fail' in outcome) {
      writeFileSync(files.stderr, `qemu-system-x86_64: ${outcome.fail}\n`);
      throw new CorralError('QEMU_FAILED', `qemu-system-x86_64: ${outcome.fail}`, { exitCode: 1, signal: null });
    }
    writeFileSync(files.stderr, '');
    const pid = this.nextPid++;
    const proc = new FakeProcess(pid, pid * 10, plan.uuid, plan);
    this.processes.set(pid, proc);
    if (outcome && 'noGreeting' in outcome) {
      proc.exit({ signal: 'SIGKILL' });
      throw new CorralError('QEMU_FAILED', 'QEMU did not answer on QMP: QMP greeting timed out after 30000 ms');
    }
    return new FakeVm(proc);
  }

  find(uuid: string, recorded: VmProcess | null, search: boolean): VmProcess | null {
    if (recorded) {
      const p = this.processes.get(recorded.pid);
      if (p?.alive && p.uuid === uuid && (recorded.startTicks === null || recorded.startTicks === p.startTicks)) return recorded;
    }
    if (!search) return null;
    const p = this.processOf(uuid);
    return p ? { pid: p.pid, startTicks: p.startTicks } : null;
  }

  async adopt(proc: VmProcess, _sockets: VmSockets): Promise<Vm> {
    const p = this.processes.get(proc.pid);
    if (!p?.alive) throw new CorralError('VM_GONE', `QEMU ${proc.pid} is gone`, { command: 'connect' });
    if (p.monitorDead) throw new CorralError('TIMEOUT', 'QEMU did not answer connect within 10s', { command: 'connect' });
    return new FakeVm(p);
  }

  killProcess(uuid: string, proc: VmProcess): void {
    const p = this.processes.get(proc.pid);
    if (p?.alive && p.uuid === uuid) p.kill();
  }

  deathNote(proc: VmProcess): string | null {
    return this.processes.get(proc.pid)?.deathNote ?? null;
  }
}
