/**
 * Named steps inside multi-step operations, where the fault-injection suite (test/integration/crash.test.ts)
 * kills the daemon: with CORRAL_CRASH_AT=STEP in its environment the daemon SIGKILLs itself on reaching STEP,
 * as a power cut or an OOM kill would. Each step sits between two effects that a crash could separate; the
 * suite restarts the daemon and checks that reconcile leaves the old state or the new one, never a mix.
 */
export const CRASH_STEPS = [
  /** create: the disk overlay is made, the row is not stored */
  'create.overlay',
  /** create: the row is stored, the create has not answered */
  'create.row',
  /** start: the hooks' host resources exist (taps, bound devices), QEMU is not spawned */
  'start.resources',
  /** start: QEMU runs, neither the row nor the status file knows its pid */
  'start.spawned',
  /** stop: the instance is `stopping`, QEMU was not asked to power off */
  'stop.requested',
  /** delete: QEMU is gone, the row is still stored */
  'delete.killed',
  /** delete: the row is gone, the instance's files are not */
  'delete.row',
  /** disk attach to a running VM: the records say attached, QEMU does not have the disk */
  'attach.recorded',
  /** disk detach from a running VM: the records say detached, QEMU still has the disk */
  'detach.recorded',
  /** instance snapshot: the disks hold it, its record still says creating (reconcile deletes it again) */
  'snapshot.taken',
  /** volume create: the image is made in its staging folder, not placed */
  'volume.built',
  /** image import: the copy is made in its staging folder, not committed */
  'import.copied',
] as const;

export type CrashStep = (typeof CRASH_STEPS)[number];

export function crashPoint(step: CrashStep): void {
  if (process.env.CORRAL_CRASH_AT === step) process.kill(process.pid, 'SIGKILL');
}
