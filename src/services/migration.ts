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
 * Local disks (a root overlay on the local pool, volumes) move too (migration-disks.ts): the destination makes them
 * before its QEMU starts and exports them over NBD; the source's RAM migration starts only once every mirror is
 * ready, a cancel abandons the mirrors, and the source's files go only after its mirrors completed and the guest
 * runs on the destination.
 */
import { createServer, isIP } from 'node:net';
import { Value } from '@sinclair/typebox/value';
import { CorralError } from '../core/errors.js';
import { assertMigratable, migrateUri, migrationFigures, migrationOptions, migrationOutcome, parseMigrateUri, qemuMigrationSettings, type MigrationFigures } from '../core/migration.js';
import { InstanceSpecSchema } from '../core/spec-schema.js';
import type { InstanceSpec } from '../core/spec.js';
import type { EventBus } from './events.js';
import type { InstanceService, InstanceView } from './instances.js';
import type { MigrationDiskService } from './migration-disks.js';

/** how long a destination may take to load the last of the state after the source completed */
const ARRIVAL_MS = 30_000;

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
  /** the instances this host receives (their QEMU waits in -incoming until the guest has come) */
  private readonly incomingNames = new Set<string>();
  /** the instances this host sends: whether the guest ran when the migration began */
  private readonly outgoing = new Map<string, { wasRunning: boolean }>();

  /** `disks`: local disks that move with the instance (migration-disks.ts); without it only shared-pool instances move */
  constructor(private readonly d: { instances: InstanceService; events: EventBus; log: { warn: (o: object, m: string) => void }; disks?: MigrationDiskService }) {}

  async incoming(name: string, body: { uuid?: unknown; spec?: unknown; address?: unknown; disks?: unknown }): Promise<{ uri: string; instance: InstanceView; nbd?: { host: string; port: number } }> {
    if (typeof body.address !== 'string' || isIP(body.address) === 0) throw new CorralError('INVALID_SPEC', `address: the IP address this host receives the migration on, got ${JSON.stringify(body.address)}`, { field: 'address' });
    if (typeof body.uuid !== 'string' || !/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/.test(body.uuid)) throw new CorralError('INVALID_SPEC', 'uuid: the instance\'s uuid on its source host', { field: 'uuid' });
    if (!Value.Check(InstanceSpecSchema, body.spec)) throw new CorralError('INVALID_SPEC', 'spec: the instance\'s whole configuration as its source host has it', { field: 'spec' });
    const spec = body.spec as InstanceSpec;
    assertMigratable(name, spec);
    // local disks are made here first, new and empty (the incoming QEMU opens them), then exported for the mirrors
    if (!this.d.disks && body.disks !== undefined) throw new CorralError('NOT_MIGRATABLE', 'this host cannot receive local disks', { name });
    await this.d.disks?.prepareIncoming(name, body.uuid, spec, body.disks);
    const instance = await this.d.instances.createIncoming(name, body.uuid, spec).catch(async (e: unknown) => {
      await this.d.disks?.abortIncoming(name);
      throw e;
    });
    this.incomingNames.add(name);
    try {
      const vm = this.d.instances.live(name).vm;
      const nbd = (await this.d.disks?.exportDisks(name, body.address)) ?? null;
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
      this.incomingNames.delete(name);
      await this.d.instances.delete(name, true, true).catch(() => undefined);
      await this.d.disks?.abortIncoming(name);
      throw e;
    }
  }

  async start(name: string, body: { uri?: unknown; maxDowntimeMs?: unknown; bandwidth?: unknown; autoConverge?: unknown }): Promise<MigrationFigures> {
    const { uri } = parseMigrateUri(body.uri);
    const o = migrationOptions(body);
    const live = this.d.instances.live(name);
    if (live.row.state !== 'running') throw new CorralError('NOT_MIGRATABLE', `instance "${name}" is ${live.row.state}: only a running instance is live-migrated`, { name, state: live.row.state });
    if (this.incomingNames.has(name)) throw new CorralError('NOT_MIGRATABLE', `instance "${name}" is being migrated to this host`, { name });
    assertMigratable(name, live.row.spec);
    await this.d.disks?.assertReady(name, live.row.spec);
    const before = migrationFigures(await live.vm.queryMigrate()).status;
    if (before !== 'none' && migrationOutcome(before) === null) throw new CorralError('NOT_MIGRATABLE', `instance "${name}" is being migrated already (${before})`, { name });
    const s = qemuMigrationSettings(o);
    await live.vm.migrateSetCapabilities(s.capabilities);
    await live.vm.migrateSetParameters(s.parameters);
    this.outgoing.set(name, { wasRunning: true });
    await live.vm.migrate(uri);
    this.d.events.publish('instance.migration-started', name, { uri, ...o });
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
      const st = await live.vm.status();
      if (mine.wasRunning && !st.running) {
        this.d.log.warn({ instance: name, status: st.status }, 'the migration failed after the guest was paused: it runs here again');
        await this.d.instances.resume(name);
      }
    }
    return f;
  }

  /**
   * Cancel an outgoing migration. One QEMU completed but whose destination never ran (it failed to take the guest
   * over: the controller says so by cancelling) runs here again: the guest was never live anywhere else.
   */
  async cancel(name: string): Promise<MigrationFigures> {
    const live = this.d.instances.live(name);
    const f = migrationFigures(await live.vm.queryMigrate());
    if (f.status === 'completed') {
      this.outgoing.delete(name);
      if (!(await live.vm.status()).running) await this.d.instances.resume(name);
      await this.d.disks?.cancel(name);
      return f;
    }
    await this.d.disks?.cancel(name);
    await live.vm.migrateCancel();
    return this.status(name);
  }

  async finish(name: string): Promise<{ side: 'destination' | 'source'; instance: InstanceView | null }> {
    if (this.incomingNames.has(name)) {
      const live = this.d.instances.live(name);
      // the source says completed once it has sent the last of the state; this side may still be loading it
      let st = await live.vm.status();
      for (const until = Date.now() + ARRIVAL_MS; st.status === 'inmigrate' && Date.now() < until;) {
        await new Promise((r) => setTimeout(r, 50));
        st = await live.vm.status();
      }
      if (st.status === 'inmigrate') throw new CorralError('INVALID_STATE', `instance "${name}" has not arrived yet (QEMU is still in inmigrate after ${ARRIVAL_MS / 1000} s)`, { name });
      await this.d.disks?.arrived(name); // its NBD server stops before the guest runs
      this.incomingNames.delete(name);
      const view = st.running ? this.d.instances.get(name) : await this.d.instances.resume(name);
      this.d.events.publish('instance.migrated-in', name, {});
      return { side: 'destination', instance: view };
    }
    const live = this.d.instances.live(name);
    const f = migrationFigures(await live.vm.queryMigrate());
    if (f.status !== 'completed') throw new CorralError('INVALID_STATE', `the migration of instance "${name}" is ${f.status}, not completed: it stays here`, { name, status: f.status });
    const spec = live.row.spec;
    this.d.disks?.assertCompleted(name, spec);
    this.outgoing.delete(name);
    await this.d.instances.delete(name, true, true);
    await this.d.disks?.movedAway(name, spec); // its local files go only now: the guest runs on the destination
    this.d.events.publish('instance.moved-away', name, { reason: 'live-migrated to another host' });
    return { side: 'source', instance: null };
  }
}
