/**
 * Live migration's failure safety on real guests (hosts in network namespaces sharing a pool: netns-cluster.ts), each
 * migration slowed down to 1 MiB/s so that it is caught half-way:
 * - the destination's agent killed (SIGKILL): the controller sees the destination lost and cancels, the migrate
 *   command fails with MIGRATION_FAILED, the guest runs on a1 (its console answers), and once a2's agent is started
 *   again nothing of the instance is left there (no QEMU, no record);
 * - the source's QEMU killed: the destination's QEMU goes too, no copy runs anywhere, the instance is crashed on a1
 *   (as after a host failure);
 * - the controller killed (SIGKILL) and started again: its recovery finds the one owner (a1: the migration is
 *   cancelled and rolled back, or a2 had it completed) and leaves exactly one running copy, on the host its row names,
 *   with the mark (migrating_to) cleared.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { SKIP_NO_TINY, signalAndWait, waitFor } from './harness.js';
import { NetnsCluster } from './netns-cluster.js';

const skip = SKIP_NO_TINY;
// the recovery sweeps every 2 s here (10 s by default)
const c = new NetnsCluster({}, { CORRAL_MIGRATION_RECOVERY_MS: '2000' });
const copiesOf = (name: string): Array<{ pid: number; host: string }> => c.copiesOf(name);
const where = (name: string): string => copiesOf(name).map((q) => q.host).sort().join(',');

before(async () => {
  if (skip) return;
  await c.start(['a1', 'a2']);
  await c.ok(['create', 'm1', '--image', 'tiny', '--memory', '128M', '--pool', 'shared', '--host', 'a1', '--start']);
  await c.host('a1').waitConsole('m1', /corral-tiny ready/);
});

after(async () => {
  await c.stop();
});

/** A migration of m1 to a2 at 1 MiB/s, once its stream runs (a QEMU on a2, the source's status active). */
async function slowMigration(): Promise<{ done: Promise<{ code: number; stdout: string; stderr: string }> }> {
  const done = c.ctl.cli(['migrate', 'm1', '--to', 'a2', '--bandwidth', '1M/s']);
  let ended = '';
  void done.then((r) => { ended = r.stderr; });
  await waitFor(async () => copiesOf('m1').some((q) => q.host === 'a2'), 60_000, 'the incoming QEMU on a2', () => `${ended}; ${c.ctl.log.slice(-3000)}`);
  await waitFor(async () => (await c.host('a1').api('GET', '/v1/instances/m1/migration')).body?.status === 'active', 60_000, 'the migration to stream', () => ended);
  return { done };
}

/** The row names one host and no migration any more. */
async function settled(name: string): Promise<string> {
  await waitFor(async () => (await c.rowOf(name))?.migrating_to === null, 60_000, `the migration mark of ${name} to go`, () => c.ctl.log.slice(-3000));
  return (await c.rowOf(name))!.host;
}

test('the destination\'s agent killed mid-way: the migration fails with its code, the guest runs on a1, and a2 keeps nothing of it once its agent is back', { skip, timeout: 300_000 }, async () => {
  const a1 = c.host('a1');
  const { done } = await slowMigration();
  await c.host('a2').kill9();
  const r = await done;
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /error: MIGRATION_FAILED: the migration of instance "m1" was cancelled: host a2 has not answered .*: it runs on host a1/);
  // the incoming QEMU ends when the source cuts the stream; its agent is not there to see it
  await waitFor(async () => where('m1') === 'a1', 30_000, 'the QEMU on a2 to end', () => where('m1'));
  assert.equal((await a1.ok('GET', '/v1/instances/m1')).state, 'running');
  assert.match(await a1.guest('m1', 'echo still-here-$((6*7))'), /still-here-42/);
  assert.equal(await settled('m1'), 'a1');
  const failed = (await c.eventsOf('m1')).filter((e) => e.type === 'instance.migration-failed').at(-1);
  assert.equal(failed?.data.code, 'MIGRATION_FAILED');

  const a2 = await c.startAgent('a2');
  await waitFor(async () => (await a2.api('GET', '/v1/instances/m1')).status === 404, 30_000, 'a2 to keep no record of m1');
  assert.equal(where('m1'), 'a1', 'no QEMU of m1 on a2');
  const abandoned = (await a2.events()).filter((e) => e.type === 'instance.migration-abandoned' && e.instance === 'm1');
  assert.equal(abandoned.length, 1, 'a2 says what it removed');
  assert.match(String(abandoned[0]!.data.reason), /migration is over/);
  await waitFor(async () => (await c.ok(['host', 'list'])).find((h: any) => h.name === 'a2')?.state === 'up', 30_000, 'a2 up again');
});

test('the source\'s QEMU killed mid-way: the destination\'s QEMU goes too, no copy runs anywhere, the instance is crashed on a1', { skip, timeout: 300_000 }, async () => {
  const a1 = c.host('a1');
  const a2 = c.host('a2');
  const { done } = await slowMigration();
  const source = copiesOf('m1').find((q) => q.host === 'a1')!;
  process.kill(source.pid, 'SIGKILL');
  const r = await done;
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /error: MIGRATION_FAILED: /);
  await waitFor(async () => copiesOf('m1').length === 0, 30_000, 'no QEMU of m1 anywhere', () => where('m1'));
  assert.equal(await settled('m1'), 'a1');
  await waitFor(async () => (await a2.api('GET', '/v1/instances/m1')).status === 404, 30_000, 'a2 to keep no record of m1');
  assert.equal((await a1.ok('GET', '/v1/instances/m1')).state, 'crashed');
  // it starts again from its shared disk, as after a host failure
  await c.ok(['start', 'm1']);
  await waitFor(async () => {
    const log = await a1.consoleLog('m1');
    return /corral-tiny ready/.test(log.slice(log.lastIndexOf('QEMU starting')));
  }, 120_000, 'm1 to boot again on a1');
  assert.equal(where('m1'), 'a1');
});

test('the controller killed mid-way and started again: its recovery leaves exactly one running copy, on the host its row names', { skip, timeout: 300_000 }, async () => {
  const { done } = await slowMigration();
  await signalAndWait(c.ctl.proc, 'SIGKILL');
  assert.notEqual((await done).code, 0, 'the command loses its controller');
  // the QEMUs go on migrating meanwhile; nobody drives them
  assert.equal(where('m1'), 'a1,a2');
  assert.equal((await c.rowOf('m1'))?.migrating_to, 'a2');
  await c.ctl.start();
  const host = await settled('m1');
  const recovered = (await c.eventsOf('m1')).filter((e) => e.type === 'instance.migration-recovered').at(-1);
  assert.ok(recovered, 'the recovery is one of the cluster\'s events');
  assert.equal(host, recovered.data.decision === 'rolled-back' ? 'a1' : 'a2', JSON.stringify(recovered.data));
  // (at 1 MiB/s the source still sends when the controller is back: the recovery cancels it first)
  if (recovered.data.decision === 'rolled-back') assert.equal(recovered.data.cancelled, true, JSON.stringify(recovered.data));
  await waitFor(async () => where('m1') === host, 30_000, `one QEMU of m1, on ${host}`, () => where('m1'));
  const d = c.host(host);
  assert.equal((await d.ok('GET', '/v1/instances/m1')).state, 'running');
  assert.match(await d.guest('m1', 'echo one-copy-$((6*7))'), /one-copy-42/);
  const other = c.host(host === 'a1' ? 'a2' : 'a1');
  await waitFor(async () => (await other.api('GET', '/v1/instances/m1')).status === 404, 30_000, 'no record on the other host');
  assert.equal(await c.hostOf('m1'), host);
});
