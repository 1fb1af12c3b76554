/**
 * The hypervisor seam. The services (src/services) reach a VM process only through a VmDriver and the Vm it
 * hands out: launch from a launch plan, find and adopt a running VM after a daemon restart, typed monitor
 * operations, kill, and one exit signal. src/qemu/driver.ts implements it for QEMU; src/vm/fake-driver.ts
 * implements it in memory for the lifecycle unit tests (and, later, simulated hosts).
 *
 * Errors: every method rejects with a coded CorralError (the driver maps its own monitor's failures in one
 * place): TIMEOUT when the VM does not answer in time, VM_GONE when its process or monitor went away during
 * the call, QEMU_FAILED when the hypervisor refused the command (details.command, details.class).
 */
import type { LaunchPlan } from '../qemu/argv.js';

/** A VM process, told apart from a later process that reuses its pid by its start time. */
export interface VmProcess {
  pid: number;
  /** start time in clock ticks since boot (null when unknown) */
  startTicks: number | null;
}

/** How a VM process ended. */
export interface VmExit {
  /** exit code or signal as its parent saw it; null for a VM adopted after a daemon restart */
  status: { code: number | null; signal: string | null } | null;
  /** the hypervisor's shutdown report before the exit ('guest-shutdown', 'host-signal', ...), or null */
  shutdown: string | null;
}

/** An asynchronous event of a VM's monitor (QMP's STOP, RESUME, SHUTDOWN, DEVICE_DELETED, GUEST_PANICKED ...). */
export interface VmEvent {
  event: string;
  data: Record<string, unknown>;
}

export interface VmRunStatus {
  /** the hypervisor's word: running, paused, prelaunch, inmigrate, shutdown ... */
  status: string;
  running: boolean;
}

export interface VcpuInfo {
  'cpu-index': number;
  'thread-id': number;
  'qom-path': string;
}

/** One block backend's counters as query-blockstats gives them (the fields Corral reads). */
export interface BlockStatsEntry {
  device?: string;
  qdev?: string;
  'node-name'?: string;
  stats: { rd_bytes: number; wr_bytes: number; rd_operations: number; wr_operations: number };
}

export interface HotpluggableCpu {
  type: string;
  'vcpus-count': number;
  props: { 'socket-id'?: number; 'core-id'?: number; 'thread-id'?: number; 'node-id'?: number; 'die-id'?: number };
  'qom-path'?: string;
}

/** The typed monitor operations the services use (QMP's commands under their own names). */
export interface VmControl {
  status(): Promise<VmRunStatus>;
  pause(): Promise<void>;
  resume(): Promise<void>;
  /** ACPI power button */
  powerdown(): Promise<void>;

  /** vCPUs online: index, host thread, QOM path */
  vcpus(): Promise<VcpuInfo[]>;
  hotpluggableCpus(): Promise<HotpluggableCpu[]>;
  /** KVM's per-vCPU statistics (query-stats, provider kvm): raw, parsed by the CPU service */
  vcpuStats(): Promise<unknown>;

  deviceAdd(args: Record<string, unknown>): Promise<void>;
  /** asks the guest to release the device; it is gone at DEVICE_DELETED */
  deviceDel(id: string): Promise<void>;
  /** ids of the user-created devices */
  peripherals(): Promise<string[]>;
  /** ids of the user-created objects (iothreads, memory backends) */
  objects(): Promise<string[]>;
  objectAdd(args: Record<string, unknown>): Promise<void>;
  objectDel(id: string): Promise<void>;
  propertyGet<T = unknown>(path: string, property: string): Promise<T>;
  propertySet(path: string, property: string, value: unknown): Promise<void>;

  blockdevAdd(args: Record<string, unknown>): Promise<void>;
  blockdevDel(node: string): Promise<void>;
  blockResize(node: string, bytes: number): Promise<void>;
  chardevAdd(args: Record<string, unknown>): Promise<void>;
  chardevRemove(id: string): Promise<void>;
  netdevAdd(args: Record<string, unknown>): Promise<void>;
  netdevDel(id: string): Promise<void>;

  /** guest RAM: boot (base) memory and hotplugged memory in bytes */
  memorySize(): Promise<{ base: number | null; plugged: number | null }>;
  /** the balloon's current size in bytes */
  balloonSize(): Promise<number>;
  /** each block backend's I/O counters (QEMU: query-blockstats) */
  blockStats(): Promise<BlockStatsEntry[]>;
  /** set the balloon target in bytes */
  balloon(bytes: number): Promise<void>;
  /** ids of the memory backends */
  memdevs(): Promise<string[]>;
  /** the guest-physical address space, flattened (QEMU: `info mtree -f`) */
  memoryTree(): Promise<string>;
  /** the host virtual address backing a guest-physical address (QEMU: `gpa2hva`) */
  gpaToHva(gpa: number): Promise<string>;

  /** live migration (QEMU's words): the incoming side listens on `uri` (started with -incoming defer) */
  migrateIncoming(uri: string): Promise<void>;
  migrateSetCapabilities(caps: Record<string, boolean>): Promise<void>;
  migrateSetParameters(params: Record<string, unknown>): Promise<void>;
  /** the outgoing side sends the VM to `uri` (returns at once; query-migrate follows it) */
  migrate(uri: string): Promise<void>;
  queryMigrate(): Promise<MigrationInfo>;
  migrateCancel(): Promise<void>;
  /** switch an outgoing migration (postcopy-ram set on both sides) to postcopy: the destination runs the guest */
  migrateStartPostcopy(): Promise<void>;

  /** non-shared storage migration (core/migration-disks.ts builds the arguments): QEMU's NBD server (destination) */
  nbdServerStart(args: Record<string, unknown>): Promise<void>;
  nbdServerStop(): Promise<void>;
  blockExportAdd(args: Record<string, unknown>): Promise<void>;
  /** the source mirrors a disk into an NBD client node; block jobs are followed with queryJobs */
  blockdevMirror(args: Record<string, unknown>): Promise<void>;
  /** force false on a ready mirror: it completes (the target consistent, no pivot); force true: it is abandoned */
  blockJobCancel(job: string, force: boolean): Promise<void>;
  jobDismiss(id: string): Promise<void>;
  queryJobs(): Promise<JobInfo[]>;

  /** a QMP transaction: every action happens, or none (internal snapshots of every disk at one instant) */
  transaction(actions: Array<{ type: string; data: Record<string, unknown> }>): Promise<void>;
  /** start an internal snapshot job (snapshot-save, snapshot-load, snapshot-delete); followed with queryJobs, dismissed with jobDismiss */
  snapshotJob(kind: 'save' | 'load' | 'delete', args: Record<string, unknown>): Promise<void>;
  /** each named block node's image's internal snapshots as QEMU reports them (query-named-block-nodes: image.snapshots), by node name */
  nodeSnapshots(): Promise<Record<string, unknown>>;
}

/** QEMU's query-jobs, one job: `error` set in `concluded` means it failed (or was cancelled). */
export interface JobInfo {
  id: string;
  type: string;
  status: string;
  'current-progress': number;
  'total-progress': number;
  error?: string;
}

/** QEMU's query-migrate, the fields Corral reads (all but status absent before a migration starts). */
export interface MigrationInfo {
  status?: string;
  'total-time'?: number;
  'expected-downtime'?: number;
  downtime?: number;
  'setup-time'?: number;
  'error-desc'?: string;
  ram?: {
    transferred: number; remaining: number; total: number; 'dirty-pages-rate'?: number; mbps?: number;
    'dirty-sync-count'?: number; 'page-size'?: number;
  };
}

/** A running VM the daemon is connected to. */
export interface Vm extends VmControl {
  readonly pid: number;
  readonly startTicks: number | null;
  /** Resolves exactly once, when the VM process is gone (never after detach()). */
  readonly exited: Promise<VmExit>;
  /** Subscribe to monitor events; returns the unsubscribe. */
  onEvent(fn: (ev: VmEvent) => void): () => void;
  /** End the process at once (SIGKILL for QEMU); `exited` follows. */
  kill(): void;
  /** Stop watching without touching the VM: it outlives the daemon. */
  detach(): void;
}

/** Where a VM's control sockets are (from the launch plan's paths). */
export interface VmSockets {
  qmp: string;
}

export interface VmDriver {
  /** e.g. "qemu" */
  readonly name: string;
  /** the hypervisor's version, recorded in each instance's runtime status */
  version(): string;
  /**
   * Start the VM a launch plan describes, its stderr going to `files.stderr`; resolves once its monitor
   * answers. A failure is QEMU_FAILED with the hypervisor's own error line; nothing is left running.
   */
  launch(plan: LaunchPlan, files: { stderr: string }): Promise<Vm>;
  /**
   * The VM process of instance `uuid` that is still running: `recorded` if it is still that VM, else (with
   * `search`, for a daemon that died mid-start before recording a pid) any VM process carrying the uuid.
   */
  find(uuid: string, recorded: VmProcess | null, search: boolean): VmProcess | null;
  /** Connect to a running VM found by find() (adoption after a daemon restart). */
  adopt(proc: VmProcess, sockets: VmSockets): Promise<Vm>;
  /** Kill a VM process the daemon is not connected to, if it still is instance `uuid`'s VM. */
  killProcess(uuid: string, proc: VmProcess): void;
  /** What the host's kernel logged about a VM process's death (a segfault, an OOM kill), or null. */
  deathNote(proc: VmProcess): string | null;
}

/** Resolves true once the VM is gone, false after timeoutMs. */
export function waitExit(vm: Pick<Vm, 'exited'>, timeoutMs: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<boolean>((resolve) => { timer = setTimeout(() => resolve(false), timeoutMs); });
  return Promise.race([vm.exited.then(() => true), late]).finally(() => clearTimeout(timer));
}
