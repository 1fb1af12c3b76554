/**
 * A host's side of live migrations that nobody drives (services/migration-recovery.ts, incoming-marks.ts), over the
 * fake hypervisor: the facts a recovering controller reads; a source resumed only from postmigrate; an incoming side
 * marked so that it outlives the agent (a restarted agent keeps a live one marked and paused, removes one whose QEMU
 * died, marks a QEMU still in inmigrate); what the heartbeat reports and what the cluster's answer removes; an
 * incoming instance cannot be resumed by hand, and a source that ran again is never ended as a leftover.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { instancePaths } from '../../../src/core/paths.js';
import { INCOMING_MARK } from '../../../src/services/incoming-marks.js';
import { MigrationService } from '../../../src/services/migration.js';
import { MigrationRecoveryService } from '../../../src/services/migration-recovery.js';
import { harness, type Harness } from './lifecycle-harness.js';

const quiet = { info: () => undefined, warn: () => undefined };

function services(h: Harness): { migration: MigrationService; recovery: MigrationRecoveryService } {
  const migration = new MigrationService({ instances: h.svc, events: h.events, log: quiet });
  return { migration, recovery: new MigrationRecoveryService({ instances: h.svc, migration, events: h.events, log: quiet }) };
}

const markFile = (h: Harness, name: string): string => join(instancePaths(h.dataDir, h.row(name).uuid).dir, INCOMING_MARK);
const eventsOf = (h: Harness, type: string): string[] => h.store.eventsSince(0, 10_000).filter((e) => e.type === type).map((e) => String(e.instance));

/** An instance started, then held as an incoming side: its QEMU in inmigrate, marked. */
async function incoming(h: Harness, s: ReturnType<typeof services>, name: string): Promise<void> {
  h.add(name);
  await h.svc.start(name);
  await h.svc.pause(name);
  h.driver.processOf(h.row(name).uuid)!.status = 'inmigrate';
  s.migration.marks.add(h.row(name), Date.now() - 1000);
}

/** An instance started, then migrated away by its QEMU (the fake's migration completes at once: postmigrate). */
async function handedOver(h: Harness, name: string): Promise<void> {
  h.add(name);
  await h.svc.start(name);
  await h.svc.live(name).vm.migrate('tcp:10.0.0.2:4444');
}

test('facts: what the QEMU says now, no QEMU for a stopped instance, INSTANCE_NOT_FOUND for none', async () => {
  const h = harness();
  const { recovery } = services(h);
  h.add('vm');
  await h.svc.start('vm');
  assert.deepEqual(await recovery.facts('vm'), { name: 'vm', uuid: h.row('vm').uuid, state: 'running', run: 'running', migration: 'none', incoming: false });
  await h.svc.stop('vm', 5);
  assert.deepEqual(await recovery.facts('vm'), { name: 'vm', uuid: h.row('vm').uuid, state: 'stopped', run: null, migration: 'none', incoming: false });
  await assert.rejects(recovery.facts('nope'), { code: 'INSTANCE_NOT_FOUND' });
  await handedOver(h, 'src');
  assert.deepEqual(await recovery.facts('src'), { name: 'src', uuid: h.row('src').uuid, state: 'paused', run: 'postmigrate', migration: 'completed', incoming: false });
});

test('resume-source: only a source waiting in postmigrate runs again; a running one, a paused one and an incoming side are refused', async () => {
  const h = harness();
  const s = services(h);
  await handedOver(h, 'src');
  const f = await s.recovery.resumeSource('src');
  assert.equal(f.run, 'running');
  assert.equal(h.state('src'), 'running');
  assert.deepEqual(eventsOf(h, 'instance.migration-resumed'), ['src']);
  await assert.rejects(s.recovery.resumeSource('src'), /running here, not a source waiting in postmigrate/);
  await h.svc.pause('src');
  await assert.rejects(s.recovery.resumeSource('src'), { code: 'INVALID_STATE' });
  await incoming(h, s, 'in1');
  await assert.rejects(s.recovery.resumeSource('in1'), /incoming side/);
  assert.equal(h.driver.processOf(h.row('in1').uuid)!.status, 'inmigrate');
});

test('an incoming side cannot be resumed by hand: QEMU would run it on arrival, which only a controller decides', async () => {
  const h = harness();
  const s = services(h);
  await incoming(h, s, 'in1');
  await assert.rejects(h.svc.resume('in1'), /receiving a live migration/);
  assert.ok(!h.driver.processOf(h.row('in1').uuid)!.calls.includes('cont'));
});

test('the finish of an incoming side resumes it and removes its mark; a source that is not in postmigrate is no leftover to end; a cancel does not undo a completed migration', async () => {
  const h = harness();
  const s = services(h);
  await incoming(h, s, 'in1');
  h.driver.processOf(h.row('in1').uuid)!.status = 'paused'; // the whole guest arrived
  const fin = await s.migration.finish('in1');
  assert.equal(fin.side, 'destination');
  assert.equal(h.state('in1'), 'running');
  assert.equal(existsSync(markFile(h, 'in1')), false);
  assert.equal(s.migration.marks.has('in1'), false);

  await handedOver(h, 'src');
  const c = await s.migration.cancel('src');
  assert.equal(c.status, 'completed');
  assert.equal(h.driver.processOf(h.row('src').uuid)!.status, 'postmigrate', 'a cancel never resumes a source whose destination may run');
  await s.recovery.resumeSource('src');
  await assert.rejects(s.migration.finish('src'), /running here, not waiting in postmigrate/);
  assert.equal(h.state('src'), 'running', 'the source that ran again is not ended');
});

test('a restarted agent: a live incoming side stays marked and paused, one whose QEMU died is removed, a QEMU in inmigrate not marked yet is marked', async () => {
  const h = harness();
  const s = services(h);
  await incoming(h, s, 'alive');
  await incoming(h, s, 'died');
  h.add('late');
  await h.svc.start('late');
  h.driver.processOf(h.row('late').uuid)!.status = 'inmigrate';
  await handedOver(h, 'src');

  const h2 = h.restart();
  h2.driver.processOf(h2.row('died').uuid)!.exit({ code: 1 }); // "load of migration failed"
  await h2.svc.reconcile();
  assert.equal(h2.state('alive'), 'paused', 'a QEMU in inmigrate is adopted as paused, not running');
  assert.equal(h2.state('late'), 'paused');
  assert.equal(h2.state('src'), 'paused', 'a source in postmigrate too');
  const s2 = services(h2);
  assert.deepEqual(await s2.recovery.init(), ['died']);
  assert.equal(h2.store.getInstance('died'), null);
  assert.deepEqual(eventsOf(h2, 'instance.migration-abandoned'), ['died']);
  assert.equal(s2.migration.marks.has('alive'), true);
  assert.equal(s2.migration.marks.has('late'), true);
  assert.ok(existsSync(markFile(h2, 'late')));
  assert.equal((await s2.recovery.facts('alive')).incoming, true);
  // the agent knows which side it is of from the marks and QEMU, not from the memory of the agent that died
  h2.driver.processOf(h2.row('alive').uuid)!.status = 'paused';
  assert.equal((await s2.migration.finish('alive')).side, 'destination');
  assert.equal(h2.state('alive'), 'running');
});

test('the heartbeat\'s leftovers: incoming sides and sources in postmigrate; the cluster\'s answer removes them, not an incoming side made after the beat', async () => {
  const h = harness();
  const s = services(h);
  await incoming(h, s, 'in1');
  await handedOver(h, 'src');
  h.add('plain');
  await h.svc.start('plain');
  await h.svc.pause('plain');
  const marks = await s.recovery.leftovers();
  assert.deepEqual(marks.map((m) => `${m.name} ${m.side}`).sort(), ['in1 incoming', 'src outgoing']);
  assert.equal(marks.find((m) => m.name === 'in1')!.uuid, h.row('in1').uuid);

  await s.recovery.abandon(['in1', 'src', 'plain', 'nope'], Date.now() - 60_000);
  assert.ok(h.store.getInstance('in1'), 'made after the beat was built: another migration\'s');
  await s.recovery.abandon(['in1', 'src', 'plain', 'nope'], Date.now());
  assert.equal(h.store.getInstance('in1'), null);
  assert.equal(h.store.getInstance('src'), null);
  assert.ok(h.store.getInstance('plain'), 'a paused instance that no migration left stays');
  assert.deepEqual(eventsOf(h, 'instance.migration-abandoned').sort(), ['in1', 'src']);
  assert.equal(h.driver.live().length, 1);
});

test('a mark goes with its record, whoever deletes it (a controller\'s rollback deletes it through the instance API): a new instance of that name is no incoming side', async () => {
  const h = harness();
  const s = services(h);
  await incoming(h, s, 'in1');
  await h.svc.delete('in1', true, true);
  assert.equal(s.migration.marks.has('in1'), false);
  assert.deepEqual(await s.recovery.leftovers(), []);
  h.add('in1');
  await h.svc.start('in1');
  assert.equal((await s.recovery.facts('in1')).incoming, false);
  await s.recovery.abandon(['in1'], Date.now());
  assert.equal(h.state('in1'), 'running', 'not removed as a leftover');
});

test('the heartbeat\'s leftovers never hold the beat up: a paused QEMU whose monitor does not answer is left out of this beat', async () => {
  const h = harness();
  await handedOver(h, 'src');
  const { recovery } = services(h);
  const release = h.driver.processOf(h.row('src').uuid)!.hold('query-status');
  // (it answers while the monitor's answer is still held back)
  assert.deepEqual(await recovery.leftovers(), []);
  release();
  assert.deepEqual((await recovery.leftovers()).map((m) => m.side), ['outgoing']);
});
