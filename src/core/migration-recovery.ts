/**
 * What to do with a live migration that nobody drives any more (its controller died, or gave up without knowing how
 * it ended): the one true owner of the guest, from what each side's QEMU says now. Pure: the facts in, a decision
 * out (src/cluster/migration-recovery.ts gathers the facts and carries the decision out).
 *
 * The rules rest on two facts of QEMU's precopy migration, and on one rule of Corral's:
 * - a destination QEMU leaves `inmigrate` only once the whole state has arrived (its own query-migrate then says
 *   `completed`); a stream cut short makes it exit. So a destination that is alive and no longer in inmigrate holds
 *   the whole guest, and one still in inmigrate holds a part of it, never to be run;
 * - a source whose migration completed waits paused in `postmigrate` and has not run since; one that failed or was
 *   cancelled runs on by itself;
 * - Corral resumes a destination only after its source completed, and resumes a completed source only after its
 *   destination was removed: so a destination that runs is the owner, and a source that runs again means that its
 *   destination must never run.
 * Whatever cannot be known (a host not answering) is waited for: a source is never resumed while its destination
 * might run, nor a destination while its source might.
 */

/** One side as its agent describes it. */
export type SideFacts =
  /** the host does not answer (or not clearly) */
  | { kind: 'unknown' }
  /** the host has no record of the instance, or it is known dead (an HA instance's QEMU on a fenced host) */
  | { kind: 'gone' }
  /**
   * the host has it: `run` is its QEMU's run state (running, paused, inmigrate, postmigrate ...; null: no QEMU, the
   * record only, crashed or stopped); `migration` the status of query-migrate ('none' when none); `incoming`: the
   * host holds it as an incoming migration not finished yet (its agent marks it so until it resumes the guest).
   */
  | { kind: 'there'; run: string | null; migration: string; incoming: boolean };

export type RecoveryAction =
  /** the destination owns the guest: resumed if it does not run yet, the row moves there, the source is removed */
  | 'complete'
  /** the source owns it: the destination is removed, the source resumed if the migration left it in postmigrate */
  | 'rollback'
  /** the source still sends: cancel it (it runs on), then decide again */
  | 'cancel'
  /** nothing is done now: asked again later */
  | 'wait';

export interface RecoveryDecision {
  action: RecoveryAction;
  /** complete: the destination is paused after the whole state arrived and must be resumed */
  resumeDestination: boolean;
  /** rollback: the source waits in postmigrate and must be resumed (once the destination is removed) */
  resumeSource: boolean;
  reason: string;
}

/** QEMU's migration statuses that end a migration ('none': there was none). */
const FINAL = new Set(['none', 'completed', 'failed', 'cancelled']);

/** Whether a query-migrate status says a migration is under way (setup, active, device, postcopy-active ...). */
export function migrationUnderWay(status: string): boolean {
  return !FINAL.has(status);
}

/** Run states in which a migration, not a user, holds the guest paused (an agent records them as `paused`). */
const MIGRATION_PAUSED = new Set(['inmigrate', 'postmigrate', 'finish-migrate']);

export function pausedByMigration(runState: string): boolean {
  return MIGRATION_PAUSED.has(runState);
}

type Source = 'migrating' | 'handed-over' | 'runs-on' | 'dead' | 'unknown';
type Destination = 'runs' | 'arrived' | 'receiving' | 'dead' | 'unknown' | 'unclear';

function sourceOf(s: SideFacts): Source {
  if (s.kind === 'unknown') return 'unknown';
  if (s.kind === 'gone' || s.run === null) return 'dead';
  if (migrationUnderWay(s.migration)) return 'migrating';
  if (s.run === 'postmigrate') return 'handed-over';
  return 'runs-on';
}

function destinationOf(d: SideFacts): Destination {
  if (d.kind === 'unknown') return 'unknown';
  if (d.kind === 'gone' || d.run === null) return 'dead';
  if (d.run === 'inmigrate') return 'receiving';
  // finished (resumed once by a controller: paused or migrated on since, it is the owner all the same), or running
  if (!d.incoming || d.run === 'running') return 'runs';
  // a QEMU leaves inmigrate only with the whole state (its incoming side then says completed); anything else is
  // not a state these rules know
  return d.migration === 'completed' ? 'arrived' : 'unclear';
}

const SOURCE_WORDS: Record<Source, string> = {
  migrating: 'the source still sends the guest',
  'handed-over': 'the source completed and waits paused (postmigrate)',
  'runs-on': 'the source runs the guest (its migration ended without handing it over)',
  dead: 'the source has no live QEMU',
  unknown: 'the source\'s host does not answer',
};
const DESTINATION_WORDS: Record<Destination, string> = {
  runs: 'the destination runs the guest',
  arrived: 'the destination holds the whole guest, paused',
  receiving: 'the destination is still receiving (inmigrate)',
  dead: 'the destination has no live QEMU',
  unknown: 'the destination\'s host does not answer',
  unclear: 'the destination is paused in a state these rules do not know (neither receiving nor complete)',
};

function decision(action: RecoveryAction, s: Source, d: Destination, then: string, o: { resumeDestination?: boolean; resumeSource?: boolean } = {}): RecoveryDecision {
  return { action, resumeDestination: o.resumeDestination ?? false, resumeSource: o.resumeSource ?? false, reason: `${DESTINATION_WORDS[d]} and ${SOURCE_WORDS[s]}: ${then}` };
}

/** The decision for a migration that nobody drives (see the file's comment), with its reason in words. */
export function decideRecovery(source: SideFacts, destination: SideFacts): RecoveryDecision {
  const s = sourceOf(source);
  const d = destinationOf(destination);
  switch (d) {
    case 'runs':
      if (s === 'migrating') return decision('wait', s, d, 'the migration ends by itself (postcopy), asked again later');
      if (s === 'runs-on') return decision('wait', s, d, 'two copies run: nothing is done automatically, a person must stop one');
      return decision('complete', s, d, 'the destination owns it');
    case 'arrived':
      if (s === 'handed-over' || s === 'dead') return decision('complete', s, d, 'the destination is resumed and owns it', { resumeDestination: true });
      if (s === 'runs-on') return decision('rollback', s, d, 'the source ran again, so the destination\'s state is stale: it is removed');
      return decision('wait', s, d, 'the source may have run again: asked again later');
    case 'receiving':
      if (s === 'migrating') return decision('cancel', s, d, 'the migration is cancelled and the source runs on');
      if (s === 'handed-over') return decision('wait', s, d, 'the destination is loading the last of the state: asked again later');
      if (s === 'unknown') return decision('wait', s, d, 'asked again later');
      return decision('rollback', s, d, 'the destination can never get the rest: it is removed');
    case 'dead':
      if (s === 'migrating') return decision('cancel', s, d, 'the migration is cancelled and the source runs on');
      if (s === 'handed-over') return decision('rollback', s, d, 'the source is resumed', { resumeSource: true });
      if (s === 'unknown') return decision('wait', s, d, 'only the source can say whether it waits to be resumed: asked again later');
      return decision('rollback', s, d, s === 'dead' ? 'the instance is as after a host failure' : 'the source owns it');
    case 'unknown':
    case 'unclear':
      if (s === 'migrating') return decision('cancel', s, d, 'the destination never ran (the source did not complete): the migration is cancelled');
      if (s === 'runs-on') return decision('rollback', s, d, 'the source owns it; what is left on the destination goes when its host answers');
      return decision('wait', s, d, 'the destination may run the guest: asked again later');
  }
}
