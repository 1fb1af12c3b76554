/**
 * Reconcile at daemon start: adopt every QEMU that outlived the previous daemon, record the ones that died while
 * it was down (crashed, or stopped if they were stopping), finish what a start cut short, and remove the files
 * of instances that no row names.
 */
import { isActive } from '../core/state.js';
import { pausedByMigration } from '../core/migration-recovery.js';
import type { InstancePaths } from '../core/paths.js';
import type { InstanceRow } from '../store/store.js';
import type { VmProcess } from '../vm/driver.js';
import { goneWhileDown, stderrLine } from './exit-cause.js';
import type { InstanceHooks } from './instance-hooks.js';
import { moveState } from './instance-state.js';
import type { InstanceDeps } from './instance-deps.js';
import type { KeyedLock } from './locks.js';
import { readStatus, removeRunDir } from './runtime.js';
import { sweepInstanceDirs } from './sweep.js';
import type { Running, VmWatch } from './vm-watch.js';

export interface ReconcileContext {
  deps: Pick<InstanceDeps, 'dataDir' | 'store' | 'events' | 'driver' | 'log'>;
  locks: KeyedLock;
  watch: VmWatch;
  hooks(): InstanceHooks[];
  paths(row: InstanceRow): InstancePaths;
}

/** Each instance under its lock; a failure with one is logged and the others go on. */
export async function reconcileInstances(c: ReconcileContext): Promise<void> {
  const rows = c.deps.store.listInstances();
  for (const row of rows) {
    await c.locks.run(row.name, async () => {
      try {
        await reconcileOne(c, row);
      } catch (e) {
        c.deps.log.warn({ instance: row.name, err: (e as Error).message }, 'cannot reconcile instance');
      }
    });
  }
  for (const gone of sweepInstanceDirs(c.deps.dataDir, rows)) c.deps.log.warn({ dir: gone }, 'removed the files of an instance that no longer exists (a create or delete cut short)');
}

async function reconcileOne(c: ReconcileContext, row: InstanceRow): Promise<void> {
  const p = c.paths(row);
  const status = readStatus(p);
  // The pid from the row, else the status file; if neither (the daemon died mid-start), look for a VM
  // carrying this uuid, so that it is adopted rather than started twice.
  const pid = row.pid ?? status?.pid ?? null;
  const recorded: VmProcess | null = pid === null ? null : { pid, startTicks: row.pidStart ?? status?.startTicks ?? null };
  const proc = c.deps.driver.find(row.uuid, recorded, recorded === null && isActive(row.state));
  if (proc) return adopt(c, row, proc);
  if (!isActive(row.state)) {
    removeRunDir(p);
    return;
  }
  if (row.state === 'starting' && recorded === null) {
    // the daemon died during a start, before any VM ran: that start did not happen
    c.watch.gone(row, 'stopped', 'the daemon stopped during the start, before QEMU ran: not started', null);
    return;
  }
  const gone = goneWhileDown(row.state === 'stopping', recorded?.pid ?? null, recorded && c.deps.driver.deathNote(recorded), stderrLine(p.stderr));
  c.watch.gone(row, gone.state, gone.reason, gone.exit);
}

/** Adopt a VM that outlived the previous daemon; if it does not answer, the instance is `error` (kill ends it). */
async function adopt(c: ReconcileContext, row: InstanceRow, proc: VmProcess): Promise<void> {
  let run: Running | null = null;
  try {
    run = c.watch.watch(row, await c.deps.driver.adopt(proc, { qmp: c.paths(row).qmp }), true);
    for (const h of c.hooks()) if (h.adopted) await h.adopted(row, run.vm);
    const st = await run.vm.status();
    run.starting = false;
    // (a live migration's QEMU, receiving or handed over, is paused too: migration-recovery.ts deals with it)
    moveState(c.deps, row, st.status === 'paused' || pausedByMigration(st.status) ? 'paused' : 'running', `adopted QEMU ${proc.pid} after daemon restart`, { pid: proc.pid, pidStart: proc.startTicks });
    c.deps.log.info({ instance: row.name, pid: proc.pid }, 'adopted running QEMU');
  } catch (e) {
    c.deps.log.warn({ instance: row.name, pid: proc.pid, err: (e as Error).message }, 'cannot reach the monitor of a live QEMU');
    if (run) c.watch.unwatch(row, run);
    moveState(c.deps, row, 'error', `QEMU ${proc.pid} is alive but its QMP socket does not answer`, {
      pid: proc.pid, pidStart: proc.startTicks, lastError: (e as Error).message,
    });
  }
}
