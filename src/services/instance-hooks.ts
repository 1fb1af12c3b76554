/**
 * What other services plug into the instance service: lifecycle hooks, launch-plan contributions, the planner
 * of a new instance's first NIC, and the live instance they act on.
 */
import { CorralError } from '../core/errors.js';
import type { CreateRequest, Accelerator, InstanceSpec } from '../core/spec.js';
import type { InstanceNic } from '../core/nics.js';
import type { LaunchPlan } from '../qemu/argv.js';
import type { InstanceRow } from '../store/store.js';
import type { Vm } from '../vm/driver.js';
import type { LaunchExtras } from './runtime.js';

/** What every contributor adds to an instance's launch plan, merged, with how image files are opened. */
export function launchExtras(contributors: LaunchContributor[], row: InstanceRow, blockIo: LaunchExtras['blockIo']): LaunchExtras {
  const e: LaunchExtras = { blockIo };
  for (const c of contributors) {
    const more = c(row);
    if (more.volumes) e.volumes = [...(e.volumes ?? []), ...more.volumes];
    if (more.hostdevs) e.hostdevs = [...(e.hostdevs ?? []), ...more.hostdevs];
    if (more.networkKind) e.networkKind = more.networkKind;
  }
  return e;
}

/** What a service adds to an instance's launch plan. */
export type LaunchContributor = (row: InstanceRow) => Pick<LaunchExtras, 'volumes' | 'hostdevs' | 'networkKind'>;

/** The first NIC of a new instance from its create request (network, nicModel, forwards). */
export type NicPlanner = (uuid: string, req: CreateRequest) => InstanceNic[];

/**
 * The services that hook into the lifecycle, in the order their hooks run (every kind of hook, `exited` too):
 * - cpu: checks the CPU model first; at launch puts QEMU in its cgroup and pins vCPUs before anything else
 *   touches the running guest.
 * - memory: checks hugepages before host resources are made; knows each QEMU's boot memory.
 * - files: hands the instance's runtime dir, root disk, UEFI vars and console log to QEMU's unprivileged user
 *   (beforeLaunch, beforeSpawn) before any process of the VM is started, and takes them back (exited).
 * - cloud-init: writes the instance's NoCloud seed disk from its spec and lends it to QEMU's user, read-only
 *   (beforeLaunch); takes it back (exited).
 * - storage-daemons: start the vhost-user-blk back ends before QEMU connects to them (beforeSpawn).
 * - disks: refuse a start with a volume that has clones; name who holds a locked volume (startFailed).
 * - snapshots: a deleted instance's snapshots leave the volumes it had attached (deleting).
 * - nics: make taps (beforeLaunch) and remove them (exited).
 * - passthrough: bind host devices to vfio-pci after the others' checks and resources, so that a start refused
 *   earlier never takes a device from its host driver.
 * - guest-agent: drops the instance's agent client and what it cached of the guest (exited).
 * - console-log: last, so its boot separator is the console log's line just before QEMU starts.
 */
export const HOOK_ORDER = ['cpu', 'memory', 'files', 'cloud-init', 'storage-daemons', 'disks', 'snapshots', 'nics', 'passthrough', 'guest-agent', 'console-log'] as const;
export type HookOwner = (typeof HOOK_ORDER)[number];

/** Other services (CPU, memory, disks, NICs, storage daemons, passthrough) hook into the lifecycle. */
export interface InstanceHooks {
  /**
   * Check a spec against what only a service knows (QEMU's CPU models, QEMU's memory overhead under the
   * accelerator): at create and at every change of a stored spec, so that a bad value is refused when given,
   * not at the next start. A throw (INVALID_SPEC) refuses the create or change; nothing is made.
   */
  checkSpec?(spec: InstanceSpec, accel: Accelerator): void | Promise<void>;
  /**
   * The instance is `starting` and its run dir exists; the launch plan is built next. Host resources the plan
   * names are made here (taps, bound PCI devices). A throw refuses the start, and the exited hooks run to undo
   * what any beforeLaunch set up.
   */
  beforeLaunch?(row: InstanceRow, accel: Accelerator): void | Promise<void>;
  /**
   * The runtime dir is fresh and the launch plan built; QEMU is spawned next. Processes QEMU connects to
   * (vhost-user storage daemons) start here. A throw fails the start; `exited` then runs to clean up.
   */
  beforeSpawn?(row: InstanceRow, plan: LaunchPlan): Promise<void>;
  /** QEMU answers on its monitor; the instance becomes running once every launched hook is done (a throw fails the start). */
  launched?(row: InstanceRow, vm: Vm): Promise<void>;
  /** A restarted daemon adopted a running VM. */
  adopted?(row: InstanceRow, vm: Vm): Promise<void>;
  /**
   * QEMU is gone (or a start failed after the runtime dir was made). Runs before the runtime dir is removed;
   * what it must read from there it reads at once. A returned promise is awaited before the stop or kill
   * that caused the exit returns, and before the instance's next start.
   */
  exited?(row: InstanceRow): void | Promise<void>;
  /**
   * QEMU ended without being asked to: what this service knows of why (the VM cgroup's OOM kills), or null.
   * Called before the exited hooks, while what it reads (the cgroup) is still there.
   */
  exitCause?(row: InstanceRow): string | null;
  /**
   * An instance is being deleted: its QEMU is gone, its row and folder are still there. What it holds outside its
   * folder goes here (its snapshots inside the volumes it had attached). A failure is logged; the delete goes on.
   */
  deleting?(row: InstanceRow): Promise<void>;
  /** After an instance is deleted (its row is gone). */
  deleted?(row: InstanceRow): void;
  /**
   * A start failed with `error`: return the error to report, that one or a clearer one (the disk service names
   * who holds a volume QEMU could not lock). Runs first, before the state and lastError are set.
   */
  startFailed?(row: InstanceRow, error: unknown): unknown;
}

/** A live instance as other services see it. */
export interface LiveInstance {
  row: InstanceRow;
  pid: number;
  vm: Vm;
}

/** The hooks of every service, held in HOOK_ORDER whatever order they were added in. */
export class HookSet {
  private byOwner = new Map<HookOwner, InstanceHooks>();

  add(owner: HookOwner, hooks: InstanceHooks): void {
    if (this.byOwner.has(owner)) throw new CorralError('INTERNAL', `the hooks of "${owner}" were added twice`);
    this.byOwner.set(owner, hooks);
  }

  /** Every service's hooks, in HOOK_ORDER. */
  get all(): InstanceHooks[] {
    return HOOK_ORDER.map((o) => this.byOwner.get(o)).filter((h): h is InstanceHooks => h !== undefined);
  }
}

type Warn = { warn(o: object, m?: string): void };

/** Run every hook's `exited`; resolves when the asynchronous ones are done (their failures are logged). */
export function runExitHooks(hooks: InstanceHooks[], row: InstanceRow, log: Warn): Promise<void> {
  const work: Array<Promise<void>> = [];
  const warn = (e: unknown): void => log.warn({ instance: row.name, err: (e as Error).message }, 'exit hook failed');
  for (const h of hooks) {
    try {
      const r = h.exited?.(row);
      if (r) work.push(r.catch(warn));
    } catch (e) {
      warn(e);
    }
  }
  return Promise.all(work).then(() => undefined);
}

/** What the services know of why a QEMU ended unasked (the VM cgroup's OOM kills), joined; or null. */
export function exitCauses(hooks: InstanceHooks[], row: InstanceRow, log: Warn): string | null {
  const said: string[] = [];
  for (const h of hooks) {
    try {
      const c = h.exitCause?.(row);
      if (c) said.push(c);
    } catch (e) {
      log.warn({ instance: row.name, err: (e as Error).message }, 'exit cause hook failed');
    }
  }
  return said.length ? said.join('; ') : null;
}
