/**
 * Live migration through a controller, shared pool only: two agents, each in a network namespace of its own
 * (netns-cluster.ts), share one directory as their shared pool. A guest counting on its console moves from a1 to a2
 * and goes on: the same boot id, its counter continues, what it wrote before (in RAM and on its disk) reads back, its
 * QEMU is on a2 and none on a1, with QEMU's figures. A cancel leaves it running on a1; a stopped instance and a
 * destination without room are refused, nothing moved (local disks: cluster-migrate-local.test.ts).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { SKIP_NO_TINY, waitFor } from './harness.js';
import { NetnsCluster, bootId as bootIdOf, lastTick, startCounter } from './netns-cluster.js';

const skip = SKIP_NO_TINY;
const c = new NetnsCluster();
const hosts = c.hosts;
const ok = (args: string[]): Promise<any> => c.ok(args);
const copiesOf = (name: string): Array<{ pid: number; host: string }> => c.copiesOf(name);
const hostOf = (name: string): Promise<string | undefined> => c.hostOf(name);
const eventsOf = (name: string): Promise<Array<{ type: string; data: any }>> => c.eventsOf(name);
const bootId = (d: Parameters<typeof bootIdOf>[0]): Promise<string> => bootIdOf(d, 'm1');

before(async () => {
  if (skip) return;
  await c.start(['a1', 'a2']);
  await ok(['create', 'm1', '--image', 'tiny', '--memory', '128M', '--pool', 'shared', '--host', 'a1', '--start']);
  await c.host('a1').waitConsole('m1', /corral-tiny ready/);
});

after(async () => {
  await c.stop();
});

test('a single daemon refuses migrate; a stopped instance and a destination without room are refused, nothing moved', { skip, timeout: 120_000 }, async () => {
  const daemon = await c.host('a1').api('POST', '/v1/instances/m1/migrate', {});
  assert.equal(daemon.body.error.code, 'NOT_A_CLUSTER');

  await ok(['create', 'loc1', '--image', 'tiny', '--memory', '64M', '--host', 'a1']);
  const local = await c.ctl.cli(['migrate', 'loc1', '--to', 'a2']);
  assert.notEqual(local.code, 0);
  assert.match(local.stderr, /NOT_MIGRATABLE: .*is stopped: only a running instance is live-migrated/);

  // a2 is filled by a placed (stopped) instance: what placement reserved counts, running or not
  const a2 = (await ok(['pool', 'show'])).hosts.find((h: any) => h.name === 'a2');
  const fill = Math.floor((a2.free.memory - 64 * 1024 * 1024) / (1024 * 1024));
  await ok(['create', 'fill', '--image', 'tiny', '--memory', `${fill}M`, '--host', 'a2']);
  const full = await c.ctl.cli(['migrate', 'm1', '--to', 'a2']);
  assert.match(full.stderr, /NO_HOST_FITS: .*a2 lacks memory/);
  const auto = await c.ctl.cli(['migrate', 'm1']);
  assert.match(auto.stderr, /NO_HOST_FITS/, 'the placer finds no other host either');
  assert.equal(await hostOf('m1'), 'a1');
  assert.deepEqual(copiesOf('m1').map((c) => c.host), ['a1']);
  const after = (await ok(['pool', 'show'])).hosts.find((h: any) => h.name === 'a2');
  assert.equal(after.allocated.memory, a2.allocated.memory + fill * 1024 * 1024, 'no reservation is left on a2');
  await ok(['delete', 'fill']);
  await ok(['delete', 'loc1']);
});

test('a cancelled migration leaves the guest running on a1, with nothing left on a2', { skip, timeout: 120_000 }, async () => {
  // 1 MiB/s: 128 MiB would take minutes, time enough to cancel
  const running = c.ctl.cli(['migrate', 'm1', '--to', 'a2', '--bandwidth', '1M/s']);
  let done: string | null = null;
  void running.then((r) => { done = r.stderr; });
  await waitFor(async () => copiesOf('m1').some((c) => c.host === 'a2'), 30_000, 'the incoming QEMU on a2', () => `${done ?? 'still running'}; ${c.ctl.log.slice(-3000)}`);
  await waitFor(async () => (await c.ctl.cli(['migrate', 'm1', '--cancel'])).code === 0, 30_000, 'the cancel to be taken');
  const r = await running;
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /MIGRATION_FAILED: .*was cancelled: it runs on host a1/);
  await waitFor(async () => copiesOf('m1').length === 1, 15_000, 'the incoming QEMU gone');
  assert.deepEqual(copiesOf('m1').map((c) => c.host), ['a1']);
  assert.equal(await hostOf('m1'), 'a1');
  assert.equal((await hosts.get('a1')!.ok('GET', '/v1/instances/m1')).state, 'running');
  assert.equal((await hosts.get('a2')!.api('GET', '/v1/instances/m1')).status, 404);
  assert.match(await hosts.get('a1')!.guest('m1', 'echo alive'), /alive/);
  const failed = (await eventsOf('m1')).find((e) => e.type === 'instance.migration-failed');
  assert.ok(failed, 'the failure is one of the cluster\'s events');
  assert.equal(failed.data.to, 'a2');
});

test('migrated from a1 to a2: the same boot, the counter goes on, data reads back, one QEMU on a2, QEMU\'s figures', { skip, timeout: 180_000 }, async () => {
  const a1 = hosts.get('a1')!;
  const a2 = hosts.get('a2')!;
  const boot = await bootId(a1);
  assert.match(await a1.guest('m1', 'echo corral-migrate-marker > /tmp/m && dd if=/tmp/m of=/dev/vda bs=512 seek=100 conv=fsync 2>/dev/null; sync; echo written'), /written/);
  await startCounter(a1, 'm1');
  await waitFor(async () => lastTick(await a1.consoleLog('m1')) >= 2, 20_000, 'the counter to run');

  const res = await ok(['migrate', 'm1', '--to', 'a2']);
  assert.equal(res.from, 'a1');
  assert.equal(res.to, 'a2');
  for (const k of ['totalMs', 'downtimeMs', 'setupMs', 'transferredBytes', 'passes']) assert.equal(typeof res[k], 'number', `${k} in ${JSON.stringify(res)}`);
  assert.ok(res.downtimeMs <= res.totalMs);
  const before = lastTick(await a1.consoleLog('m1').catch(() => ''));

  assert.equal(await hostOf('m1'), 'a2');
  await waitFor(async () => copiesOf('m1').length === 1, 15_000, 'the source QEMU gone');
  assert.deepEqual(copiesOf('m1').map((c) => c.host), ['a2']);
  assert.equal((await a1.api('GET', '/v1/instances/m1')).status, 404, 'a1 forgot it');
  assert.equal((await a2.ok('GET', '/v1/instances/m1')).state, 'running');
  assert.ok(readdirSync(join(c.shared, 'instances')).includes('m1'), 'its disk stays on the shared pool');

  assert.equal(await bootId(a2), boot, 'the same boot: it was never restarted');
  await waitFor(async () => lastTick(await a2.consoleLog('m1')) > Math.max(before, 0) + 1, 20_000, 'the counter to go on on a2');
  assert.match(await a2.guest('m1', 'cat /tmp/m; dd if=/dev/vda bs=512 skip=100 count=1 2>/dev/null | head -c 22; echo'), /corral-migrate-marker[\s\S]*corral-migrate-marker/);
  const migrated = (await eventsOf('m1')).find((e) => e.type === 'instance.migrated');
  assert.ok(migrated, 'the migration is one of the cluster\'s events');
  assert.equal(migrated.data.downtimeMs, res.downtimeMs);
});
