/**
 * The VMs the daemon watches, and the one exit path. A watched VM's monitor events move its instance's state
 * (STOP, RESUME, a guest panic, QEMU pausing on a disk I/O error); its exit, seen once, is recorded with its
 * cause, starts the exit hooks and moves the state. Starts, stops and kills (instances.ts) and adoption at
 * daemon start (reconcile.ts) share it.
 */
import type { InstancePaths } from '../core/paths.js';
import type { InstanceState } from '../core/state.js';
import type { InstanceRow } from '../store/store.js';
import { waitExit, type Vm, type VmEvent, type VmExit } from '../vm/driver.js';
import { exitRecord, ioErrorReason, stderrLine, writeExitInfo, type ExitInfo } from './exit-cause.js';
import { exitCauses, runExitHooks, type InstanceHooks } from './instance-hooks.js';
import { moveState } from './instance-state.js';
import type { InstanceDeps } from './instance-deps.js';
import { removeRunDir } from './runtime.js';

/** A VM the daemon watches, with what the daemon knows of how it should end. */
export interface Running {
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

export interface WatchContext {
  deps: Pick<InstanceDeps, 'store' | 'events' | 'driver' | 'log'>;
  hooks(): InstanceHooks[];
  paths(row: InstanceRow): InstancePaths;
}

export class VmWatch {
  /** The VMs watched, by instance uuid. */
  private running = new Map<string, Running>();
  /** Exit hooks still at work per instance uuid (stopping storage daemons). */
  private exiting = new Map<string, Promise<void>>();

  constructor(private c: WatchContext) {}

  /** The VM watched for instance `uuid`, if any. */
  get(uuid: string): Running | undefined {
    return this.running.get(uuid);
  }

  /** Watch a VM: its monitor events and, once, its exit. */
  watch(row: InstanceRow, vm: Vm, starting: boolean): Running {
    const run: Running = { vm, expected: null, crash: null, starting };
    const { uuid, name } = row;
    this.running.set(uuid, run);
    vm.onEvent((ev) => this.onVmEvent(uuid, name, run, ev));
    void vm.exited.then((exit) => this.vmExited(uuid, name, run, exit)).catch((e: Error) => {
      this.c.deps.log.warn({ instance: name, err: e.message }, 'the exit of a QEMU could not be handled');
    });
    return run;
  }

  /** Stop watching a VM without ending it (its monitor did not answer at adoption). */
  unwatch(row: InstanceRow, run: Running): void {
    run.vm.detach();
    if (this.running.get(row.uuid) === run) this.running.delete(row.uuid);
  }

  /** A VM whose start or adoption failed: end it and stop watching it (its exit moves no state). */
  async endStarted(row: InstanceRow, run: Running, why: string): Promise<void> {
    run.expected ??= why;
    run.vm.kill();
    if (!(await waitExit(run.vm, 10_000))) {
      this.c.deps.log.warn({ instance: row.name, pid: run.vm.pid }, 'QEMU did not exit after SIGKILL; it may still run');
      run.vm.detach();
    }
    if (this.running.get(row.uuid) === run) this.running.delete(row.uuid);
  }

  /**
   * The one exit path: a VM is gone (seen by the driver, killed without a watcher, or found dead at
   * adoption). Record why, start the exit hooks (the next operation on the instance waits for them: settled),
   * remove the runtime dir and move the state.
   */
  gone(row: InstanceRow, to: InstanceState, reason: string, exit: ExitInfo | null): void {
    if (exit) this.recordExit(row, exit);
    const work = runExitHooks(this.c.hooks(), row, this.c.deps.log);
    this.exiting.set(row.uuid, work);
    void work.finally(() => {
      if (this.exiting.get(row.uuid) === work) this.exiting.delete(row.uuid);
    });
    removeRunDir(this.c.paths(row));
    moveState(this.c.deps, row, to, reason, { pid: null, pidStart: null, lastError: to === 'crashed' ? reason : row.lastError }, exit ? { exit } : {});
  }

  /** Wait for the exit hooks of an instance's last VM (its storage daemons stopping, its taps removed). */
  async settled(uuid: string): Promise<void> {
    await this.exiting.get(uuid);
  }

  /** Let go of every VM without stopping it: they outlive the daemon. */
  detachAll(): void {
    for (const run of this.running.values()) run.vm.detach();
    this.running.clear();
  }

  /** The stored row of instance `name` if it still is the instance `uuid`. */
  private current(name: string, uuid: string): InstanceRow | null {
    const row = this.c.deps.store.getInstance(name);
    return row && row.uuid === uuid ? row : null;
  }

  private onVmEvent(uuid: string, name: string, run: Running, ev: VmEvent): void {
    try {
      this.vmEvent(uuid, name, run, ev);
    } catch (e) {
      // called from the monitor's socket: a failure here (the store's disk full) must not end the daemon
      this.c.deps.log.warn({ instance: name, event: ev.event, err: (e as Error).message }, 'a QEMU event could not be handled');
    }
  }

  private vmEvent(uuid: string, name: string, run: Running, ev: VmEvent): void {
    const row = this.current(name, uuid);
    if (!row || this.running.get(uuid) !== run) return;
    this.c.deps.events.publish('qemu.event', row.name, { event: ev.event, data: ev.data });
    if (ev.event === 'BLOCK_IO_ERROR' && ev.data?.action === 'stop') run.ioError = ioErrorReason(ev.data);
    if (run.starting) return;
    if (ev.event === 'STOP' && row.state === 'running') moveState(this.c.deps, row, 'paused', run.ioError ?? 'QMP STOP', run.ioError ? { lastError: run.ioError } : {});
    else if (ev.event === 'RESUME' && row.state === 'paused') {
      const cleared = run.ioError ? { lastError: null } : {};
      run.ioError = null;
      moveState(this.c.deps, row, 'running', 'QMP RESUME', cleared);
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
      kernel: unasked ? this.c.deps.driver.deathNote(proc) : null,
      service: unasked ? exitCauses(this.c.hooks(), row, this.c.deps.log) : null,
      stderr: stderrLine(this.c.paths(row).stderr),
    });
    const { state, reason } = info;
    if (!run.starting) {
      this.gone(row, state, reason, info);
    } else if (!run.expected) {
      this.recordExit(row, info); // died during its start: the start's failure path moves the state
    }
  }

  private recordExit(row: InstanceRow, exit: ExitInfo): void {
    try {
      writeExitInfo(this.c.paths(row).exitInfo, exit);
    } catch (e) {
      this.c.deps.log.warn({ instance: row.name, err: (e as Error).message }, 'cannot record why QEMU ended');
    }
  }
}
