/**
 * A host's side of a live migration, driven by a cluster controller (src/cluster/migration.ts):
 * - incoming (destination): the instance as the source has it, started paused with `-incoming defer` from the same
 *   launch plan, then listening (`migrate-incoming`) on tcp:ADDRESS:PORT, a free port of the address given; the URI is
 *   the answer. A failure removes what it made (the shared root disk stays).
 * - start (source): the parameters (downtime limit, bandwidth, auto-converge), then `migrate` to that URI (checked:
 *   tcp:IP:PORT only); status: query-migrate's figures, and a source that a failed or cancelled migration left
 *   paused runs again; cancel: `migrate_cancel`.
 * - finish: on the destination the guest runs (`cont`); on the source, once QEMU says completed, its QEMU (paused in
 *   postmigrate) ends and its record goes, keeping the shared disk, as an HA move's `forget` does.
 * Which side a host is of comes from marks that outlive an agent restart (incoming-marks.ts) and from QEMU's own run
 * state (a source that completed waits in postmigrate), not from this process's memory; a cancel never resumes a
 * source that completed (its destination may run already): only a controller does, once it removed the destination
 * (migration-recovery.ts, `resume-source`).
 * The transport (core/migration-transport.ts): a step's `tls` is this side's pair, given to QEMU for the migration
 * only (migration-tls.ts); `postcopy` is checked on the destination first (migration-postcopy.ts); postcopy (the
 * controller asks each side in turn) switches the source, then runs the guest on the destination; from the switch
 * the source never runs again here and its cancel is refused.
 * Local disks (a root overlay on the local pool, volumes) move too (migration-disks.ts): the destination makes them
 * before its QEMU starts and exports them over NBD; the source's RAM migration starts only once every mirror is
 * ready, a cancel abandons the mirrors, and the source's files go only after its mirrors completed and the guest
 * runs on the destination.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { createServer, isIP } from 'node:net';
import { Value } from '@sinclair/typebox/value';
import { CorralError } from '../core/errors.js';
import { assertMigratable, migrateUri, migrationFigures, migrationOptions, migrationOutcome, parseMigrateUri, qemuMigrationSettings, type MigrationFigures } from '../core/migration.js';
import { migrationTlsMaterial, tlsMigrationParameters } from '../core/migration-transport.js';
import { InstanceSpecSchema } from '../core/spec-schema.js';
import type { InstanceSpec } from '../core/spec.js';
import type { EventBus } from './events.js';
import { IncomingMarks } from './incoming-marks.js';
import type { InstanceService, InstanceView } from './instances.js';
import type { RunAs } from '../host/run-as.js';
import { MigrationTls } from './migration-tls.js';
import { prepareIncomingPostcopy } from './migration-postcopy.js';
import type { MigrationDiskService } from './migration-disks.js';
import type { VmControl, VmRunStatus } from '../vm/driver.js';

/** how long a destination may take to load the last of the state after the source completed */
const ARRIVAL_MS = 30_000;

/**
 * The run status of an incoming QEMU once it has left inmigrate (the state it waited for has reached it), asked
 * every 50 ms for up to ARRIVAL_MS; still in inmigrate then: INVALID_STATE, `notYet` saying what has not happened.
 */
async function outOfInmigrate(vm: Pick<VmControl, 'status'>, name: string, notYet: string): Promise<VmRunStatus> {
  let st = await vm.status();
  for (const until = Date.now() + ARRIVAL_MS; st.status === 'inmigrate' && Date.now() < until;) {
    await sleep(50);
    st = await vm.status();
  }
  if (st.status === 'inmigrate') throw new CorralError('INVALID_STATE', `${notYet} (QEMU is still in inmigrate after ${ARRIVAL_MS / 1000} s)`, { name });
  return st;
}

/** A free TCP port on `address` now (QEMU binds it right after; a lost race is tried again). */
export function freePort(address: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, address, () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolve(port));
    });
  });
}

export class MigrationService {
  /** the instances this host receives (their QEMU waits in -incoming until the guest has come): incoming-marks.ts */
  readonly marks: IncomingMarks;
  /**
   * the instances this host sends: whether the guest ran when the migration began, and whether it was switched to
   * postcopy (from then the destination owns the guest: this side never runs it again, nor cancels)
   */
  private readonly outgoing = new Map<string, { wasRunning: boolean; postcopy: boolean }>();
  /** TLS on the migration stream (and NBD's): the objects a migrating instance's QEMU holds (migration-tls.ts) */
  readonly tls: MigrationTls;

  constructor(private readonly d: {
    instances: InstanceService; events: EventBus; log: { warn: (o: object, m: string) => void }; marks?: IncomingMarks;
    /** QEMU's user, who reads a migration's TLS pair (absent: a fake hypervisor) */
    runAs?: RunAs;
    /** this host's name in the cluster, for messages */
    hostName?: string;
    /** local disks that move with the instance (migration-disks.ts); without it only shared-pool instances move */
    disks?: MigrationDiskService;
    /** the names of an instance's snapshots (snapshots.ts): an instance that has any stays (they live in its disks and its folder here) */
    snapshots?: (name: string) => string[];
  }) {
    this.marks = d.marks ?? new IncomingMarks((row) => d.instances.paths(row), (name) => {
      try {
        return d.instances.rowOf(name);
      } catch {
        return null;
      }
    });
    this.tls = new MigrationTls({ instances: d.instances, log: d.log, ...(d.runAs ? { runAs: d.runAs } : {}) });
  }

  async incoming(name: string, body: { uuid?: unknown; spec?: unknown; address?: unknown; tls?: unknown; postcopy?: unknown; disks?: unknown }): Promise<{ uri: string; instance: InstanceView; nbd?: { host: string; port: number } }> {
    if (typeof body.address !== 'string' || isIP(body.address) === 0) throw new CorralError('INVALID_SPEC', `address: the IP address this host receives the migration on, got ${JSON.stringify(body.address)}`, { field: 'address' });
    if (typeof body.uuid !== 'string' || !/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/.test(body.uuid)) throw new CorralError('INVALID_SPEC', 'uuid: the instance\'s uuid on its source host', { field: 'uuid' });
    if (!Value.Check(InstanceSpecSchema, body.spec)) throw new CorralError('INVALID_SPEC', 'spec: the instance\'s whole configuration as its source host has it', { field: 'spec' });
    const spec = body.spec as InstanceSpec;
    assertMigratable(name, spec);
    const tlsMaterial = migrationTlsMaterial(body.tls);
    if (body.postcopy !== undefined && typeof body.postcopy !== 'boolean') throw new CorralError('INVALID_SPEC', 'postcopy: must be true or false', { field: 'postcopy' });
    // local disks are made here first, new and empty (the incoming QEMU opens them), then exported for the mirrors
    if (!this.d.disks && body.disks !== undefined) throw new CorralError('NOT_MIGRATABLE', 'this host cannot receive local disks', { name });
    await this.d.disks?.prepareIncoming(name, body.uuid, spec, body.disks);
    const instance = await this.d.instances.createIncoming(name, body.uuid, spec).catch(async (e: unknown) => {
      await this.d.disks?.abortIncoming(name);
      throw e;
    });
    try {
      this.marks.add(this.d.instances.rowOf(name));
      const vm = this.d.instances.live(name).vm;
      const tls = await this.tls.setup(name, 'server', tlsMaterial);
      await vm.migrateSetParameters(tlsMigrationParameters(tls));
      if (body.postcopy === true) await prepareIncomingPostcopy(vm, this.d.hostName ?? 'this host');
      // (the NBD server takes the same credentials, and lets in only this migration's source)
      const nbd = (await this.d.disks?.exportDisks(name, body.address, tls ? { creds: tls.creds, authz: tls.authz } : undefined)) ?? null;
      for (let attempt = 1; ; attempt++) {
        const uri = migrateUri(body.address, await freePort(body.address));
        try {
          await vm.migrateIncoming(uri);
          return { uri, instance, ...(nbd ? { nbd } : {}) };
        } catch (e) {
          if (attempt >= 3) throw e; // the port was taken between the check and QEMU's bind
        }
      }
    } catch (e) {
      this.marks.drop(name);
      await this.tls.release(name, true);
      await this.d.instances.delete(name, true, true).catch(() => undefined);
      await this.d.disks?.abortIncoming(name);
      throw e;
    }
  }

  async start(name: string, body: { uri?: unknown; maxDowntimeMs?: unknown; bandwidth?: unknown; autoConverge?: unknown; postcopy?: unknown; tls?: unknown }): Promise<MigrationFigures> {
    const { uri } = parseMigrateUri(body.uri);
    const o = migrationOptions(body);
    const tlsMaterial = migrationTlsMaterial(body.tls);
    const live = this.d.instances.live(name);
    if (live.row.state !== 'running') throw new CorralError('NOT_MIGRATABLE', `instance "${name}" is ${live.row.state}: only a running instance is live-migrated`, { name, state: live.row.state });
    if (this.marks.has(name)) throw new CorralError('NOT_MIGRATABLE', `instance "${name}" is being migrated to this host`, { name });
    assertMigratable(name, live.row.spec);
    const snaps = this.d.snapshots?.(name) ?? [];
    if (snaps.length > 0) throw new CorralError('NOT_MIGRATABLE', `instance "${name}" cannot be live-migrated: it has snapshots (${snaps.join(', ')}), which stay with its disks on this host (delete them first)`, { name, snapshots: snaps });
    await this.d.disks?.assertReady(name, live.row.spec);
    const before = migrationFigures(await live.vm.queryMigrate()).status;
    if (before !== 'none' && migrationOutcome(before) === null) throw new CorralError('NOT_MIGRATABLE', `instance "${name}" is being migrated already (${before})`, { name });
    const s = qemuMigrationSettings(o);
    try {
      const tls = await this.tls.setup(name, 'client', tlsMaterial);
      await live.vm.migrateSetCapabilities(s.capabilities);
      await live.vm.migrateSetParameters({ ...s.parameters, ...tlsMigrationParameters(tls) });
      this.outgoing.set(name, { wasRunning: true, postcopy: false });
      await live.vm.migrate(uri);
    } catch (e) {
      this.outgoing.delete(name);
      await this.tls.release(name);
      throw e;
    }
    this.d.events.publish('instance.migration-started', name, { uri, ...o, tls: tlsMaterial !== null });
    return migrationFigures(await live.vm.queryMigrate());
  }

  /**
   * Switch an outgoing migration to postcopy (the controller asks once the first pass is done): from then the
   * destination runs the guest and this side never runs it again. A migration that completed meanwhile is left so.
   */
  async startPostcopy(name: string): Promise<MigrationFigures> {
    if (this.marks.has(name)) return this.runInPostcopy(name);
    const live = this.d.instances.live(name);
    const mine = this.outgoing.get(name);
    if (!mine) throw new CorralError('INVALID_STATE', `instance "${name}" is not being migrated from this host`, { name });
    const f = migrationFigures(await live.vm.queryMigrate());
    if (f.status === 'completed' || f.status.startsWith('postcopy')) return f;
    if (f.status !== 'active') throw new CorralError('INVALID_STATE', `the migration of instance "${name}" is ${f.status}: only an active one switches to postcopy`, { name, status: f.status });
    mine.postcopy = true; // before QEMU is asked: an answer lost on the way may hide a switch
    try {
      await live.vm.migrateStartPostcopy();
    } catch (e) {
      if (e instanceof CorralError && e.code === 'QEMU_FAILED') mine.postcopy = false; // QEMU refused: no switch
      throw e;
    }
    this.d.log.warn({ instance: name }, 'the migration switched to postcopy: the destination runs the guest, this side never runs it again');
    return migrationFigures(await live.vm.queryMigrate());
  }

  /**
   * The destination of a migration switched to postcopy runs the guest once the switch has reached its QEMU (it
   * left inmigrate, paused, its disks taken over); the pages still missing come on demand. `finish` follows.
   */
  private async runInPostcopy(name: string): Promise<MigrationFigures> {
    const live = this.d.instances.live(name);
    const st = await outOfInmigrate(live.vm, name, `the switch to postcopy has not reached instance "${name}"`);
    if (!st.running) await this.d.instances.resume(name);
    return migrationFigures(await live.vm.queryMigrate());
  }

  /** query-migrate's figures; a source left paused by a failed or cancelled migration runs again. */
  async status(name: string): Promise<MigrationFigures> {
    const live = this.d.instances.live(name);
    const f = migrationFigures(await live.vm.queryMigrate());
    const out = migrationOutcome(f.status);
    const mine = this.outgoing.get(name);
    if (mine && (out === 'failed' || out === 'cancelled')) {
      this.outgoing.delete(name);
      await this.tls.release(name);
      const st = await live.vm.status();
      if (mine.postcopy) {
        // the destination ran the guest: this copy is stale and stays paused (core/migration-transport.ts)
        this.d.log.warn({ instance: name, status: f.status }, 'a migration switched to postcopy failed: the guest stays paused here, never resumed');
      } else if (mine.wasRunning && !st.running) {
        this.d.log.warn({ instance: name, status: st.status }, 'the migration failed after the guest was paused: it runs here again');
        await this.d.instances.resume(name);
      }
    }
    return f;
  }

  /**
   * Cancel an outgoing migration. One that QEMU completed is not undone here: its destination may run the guest
   * already (a controller resumes this side only once it removed the destination: `resume-source`).
   */
  async cancel(name: string): Promise<MigrationFigures> {
    const live = this.d.instances.live(name);
    const f = migrationFigures(await live.vm.queryMigrate());
    if (this.outgoing.get(name)?.postcopy) {
      throw new CorralError('INVALID_STATE', `the migration of instance "${name}" switched to postcopy (${f.status}): the destination runs the guest, so it cannot be cancelled (it completes on its own); this side stays paused`, { name, status: f.status });
    }
    // the mirrors go first (force-cancelled: the source's disks are untouched; a move still preparing is held from
    // starting them); a completed migration is not undone here: its destination may run the guest already
    const disks = (await this.d.disks?.cancel(name)) ?? false;
    // not started here yet (the controller is still setting up the destination, its pairs...): a cancel now would be
    // a no-op that the migration then outlives; saying so lets the caller ask again
    if (f.status === 'none' && !this.outgoing.has(name) && !disks) throw new CorralError('INVALID_STATE', `instance "${name}" is not being migrated from this host (not yet, or not at all): nothing to cancel now`, { name });
    if (f.status === 'completed') return f;
    if (f.status === 'none' && !this.outgoing.has(name)) {
      await this.tls.release(name); // (the mirrors' NBD clients are gone: the pair they used goes)
      return f;
    }
    await live.vm.migrateCancel();
    return this.status(name);
  }

  /** A source a controller ran again after its completed migration (resume-source): its migration's state goes. */
  async sourceResumed(name: string): Promise<void> {
    this.outgoing.delete(name);
    await this.tls.release(name);
  }

  async finish(name: string): Promise<{ side: 'destination' | 'source'; instance: InstanceView | null }> {
    if (this.marks.has(name)) {
      const live = this.d.instances.live(name);
      // the source says completed once it has sent the last of the state; this side may still be loading it
      const st = await outOfInmigrate(live.vm, name, `instance "${name}" has not arrived yet`);
      await this.d.disks?.arrived(name); // its NBD server stops before the guest runs
      const view = st.running ? this.d.instances.get(name) : await this.d.instances.resume(name);
      this.marks.remove(live.row);
      await this.tls.release(name);
      this.d.events.publish('instance.migrated-in', name, {});
      return { side: 'destination', instance: view };
    }
    const live = this.d.instances.live(name);
    const f = migrationFigures(await live.vm.queryMigrate());
    if (f.status !== 'completed') throw new CorralError('INVALID_STATE', `the migration of instance "${name}" is ${f.status}, not completed: it stays here`, { name, status: f.status });
    // (a source resumed since its migration completed runs the guest: it is no leftover to end)
    const st = await live.vm.status();
    if (st.status !== 'postmigrate') throw new CorralError('INVALID_STATE', `instance "${name}" is ${st.status} here, not waiting in postmigrate: it stays here`, { name, status: st.status });
    const spec = live.row.spec;
    this.d.disks?.assertCompleted(name, spec);
    this.outgoing.delete(name);
    await this.tls.release(name, true);
    await this.d.instances.delete(name, true, true);
    await this.d.disks?.movedAway(name, spec); // its local files go only now: the guest runs on the destination
    this.d.events.publish('instance.moved-away', name, { reason: 'live-migrated to another host' });
    return { side: 'source', instance: null };
  }
}
