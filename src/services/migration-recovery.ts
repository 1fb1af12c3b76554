/**
 * A host's side of live migrations that nobody drives any more (the cluster's side: src/cluster/migration-recovery.ts).
 * - facts: what this host's QEMU says of an instance now (its run state, query-migrate's status, whether it is the
 *   incoming side of a migration not finished yet): a recovering controller decides from the facts of both sides
 *   (src/core/migration-recovery.ts). No side effect.
 * - resume-source: a source whose migration completed but whose destination the controller removed (it waits
 *   paused in postmigrate and never ran since) runs here again. Nothing else is resumed this way.
 * - at the agent's start (after reconcile): each record marked incoming (incoming-marks.ts) whose QEMU died is
 *   removed (a QEMU that was receiving and is gone holds nothing: its migration is over), one whose QEMU lives stays
 *   marked (paused, not an instance of this host's until a controller finishes it); a QEMU still in inmigrate that
 *   was not marked yet (the agent died right after starting it) is marked.
 * - for the heartbeat: the records here that a migration left (incoming ones, and sources waiting in postmigrate);
 *   the controller answers those whose migration is over (no controller will finish them: the cluster's row neither
 *   names this host nor migrates to it), and they are removed, keeping the shared disk (abandon).
 */
import { CorralError, isCorralError } from '../core/errors.js';
import { migrationFigures } from '../core/migration.js';
import type { EventBus } from './events.js';
import type { IncomingMarks } from './incoming-marks.js';
import type { InstanceService } from './instances.js';
import type { MigrationService } from './migration.js';

/** One side of a migration as this host has it. */
export interface MigrationFacts {
  name: string;
  uuid: string;
  /** the record's state (paused for a QEMU a migration holds) */
  state: string;
  /** QEMU's run state (running, paused, inmigrate, postmigrate ...); null: no QEMU */
  run: string | null;
  /** query-migrate's status ('none' when none, or no QEMU) */
  migration: string;
  /** the incoming side of a migration not finished yet */
  incoming: boolean;
}

/** A record that a migration left here, as the heartbeat reports it. */
export interface MigrationMark {
  name: string;
  uuid: string;
  side: 'incoming' | 'outgoing';
}

/** how long the heartbeat waits for a paused QEMU's run state */
const RUN_STATE_MS = 500;

export class MigrationRecoveryService {
  constructor(private readonly d: {
    instances: InstanceService;
    migration: MigrationService;
    events: EventBus;
    log: { info: (o: object, m: string) => void; warn: (o: object, m: string) => void };
  }) {}

  private get marks(): IncomingMarks {
    return this.d.migration.marks;
  }

  /** The QEMU of a record, or null when it has none (INVALID_STATE from live() is "none"; anything else is thrown). */
  private liveOrNull(name: string): ReturnType<InstanceService['live']> | null {
    try {
      return this.d.instances.live(name);
    } catch (e) {
      if (isCorralError(e) && e.code === 'INVALID_STATE') return null;
      throw e;
    }
  }

  async facts(name: string): Promise<MigrationFacts> {
    const row = this.d.instances.rowOf(name);
    const live = this.liveOrNull(name);
    const run = live ? (await live.vm.status()).status : null;
    const migration = live ? migrationFigures(await live.vm.queryMigrate()).status : 'none';
    return { name, uuid: row.uuid, state: row.state, run, migration, incoming: this.marks.has(name) || run === 'inmigrate' };
  }

  /** See the file's comment: only a source in postmigrate, never an incoming side. */
  async resumeSource(name: string): Promise<MigrationFacts> {
    if (this.marks.has(name)) throw new CorralError('INVALID_STATE', `instance "${name}" is the incoming side of a live migration here, not its source`, { name });
    const live = this.liveOrNull(name);
    const st = live ? (await live.vm.status()).status : null;
    if (st !== 'postmigrate') {
      throw new CorralError('INVALID_STATE', `instance "${name}" is ${st ?? 'not running'} here, not a source waiting in postmigrate: nothing to resume`, { name, status: st });
    }
    await this.d.instances.resume(name);
    await this.d.migration.sourceResumed(name);
    this.d.events.publish('instance.migration-resumed', name, { reason: 'its live migration completed but the destination was removed: it runs here again' });
    this.d.log.warn({ instance: name }, 'the source of a live migration whose destination was removed runs again');
    return this.facts(name);
  }

  /** At the agent's start, after reconcile (see the file's comment): the names removed. */
  async init(): Promise<string[]> {
    const removed: string[] = [];
    for (const row of this.d.instances.listRows()) {
      try {
        const mark = this.marks.read(row);
        const live = this.liveOrNull(row.name);
        if (mark && live) {
          this.marks.load(row.name, mark);
        } else if (mark) {
          await this.drop(row.name, 'incoming', 'its incoming QEMU ended while the agent was down: the migration is over');
          removed.push(row.name);
        } else if (live && (await live.vm.status()).status === 'inmigrate') {
          this.marks.add(row);
        }
      } catch (e) {
        this.d.log.warn({ instance: row.name, error: (e as Error).message }, 'the live-migration state of an instance could not be checked at start');
      }
    }
    return removed;
  }

  /**
   * What the heartbeat reports (see the file's comment). It never fails and never waits long: a beat late renews
   * no lease, so a paused QEMU whose monitor is slow to say its run state is left out of this beat.
   */
  async leftovers(): Promise<MigrationMark[]> {
    const out: MigrationMark[] = [];
    try {
      for (const name of this.marks.names()) out.push({ name, uuid: this.marks.get(name)!.uuid, side: 'incoming' });
      const paused = this.d.instances.listRows().filter((r) => r.state === 'paused' && !this.marks.has(r.name));
      const states = await Promise.all(paused.map((r) => this.runState(r.name, RUN_STATE_MS)));
      paused.forEach((r, i) => { if (states[i] === 'postmigrate') out.push({ name: r.name, uuid: r.uuid, side: 'outgoing' }); });
    } catch (e) {
      this.d.log.warn({ error: (e as Error).message }, 'what live migrations left here could not be listed for the heartbeat');
    }
    return out;
  }

  /** A QEMU's run state, or null (no QEMU, no answer, or none within `withinMs`). */
  private async runState(name: string, withinMs?: number): Promise<string | null> {
    let timer: NodeJS.Timeout | undefined;
    try {
      const live = this.liveOrNull(name);
      if (!live) return null;
      const late = new Promise<null>((r) => { if (withinMs !== undefined) timer = setTimeout(() => r(null), withinMs); });
      const st = await Promise.race([live.vm.status(), late]);
      return st?.status ?? null;
    } catch {
      return null;
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * Remove what the controller says no migration will finish: `sentAt` is when the heartbeat that reported them was
   * built (ms since the epoch): an incoming side made after it is another migration's, and stays.
   */
  async abandon(names: string[], sentAt: number): Promise<void> {
    for (const name of names) {
      try {
        const mark = this.marks.get(name);
        if (mark) {
          if (mark.since < sentAt) await this.drop(name, 'incoming', 'the cluster says its migration is over: no controller will finish it');
        } else if ((await this.runState(name)) === 'postmigrate') {
          await this.drop(name, 'outgoing', 'its migration completed and the cluster runs it on another host');
        }
      } catch (e) {
        if (isCorralError(e) && e.code === 'INSTANCE_NOT_FOUND') continue;
        this.d.log.warn({ instance: name, error: (e as Error).message }, 'could not remove what a live migration left');
      }
    }
  }

  /** The record, its QEMU and its files go; its shared disk stays (the guest lives, or lived, on another host). */
  private async drop(name: string, side: MigrationMark['side'], reason: string): Promise<void> {
    await this.d.instances.delete(name, true, true);
    this.marks.drop(name);
    this.d.events.publish('instance.migration-abandoned', name, { side, reason });
    this.d.log.warn({ instance: name, side, reason }, 'removed what a live migration left on this host');
  }
}
