/**
 * Evacuation and rebalancing through a controller, on real guests: three agents, each in a network namespace of its
 * own (netns-cluster.ts), sharing one directory as their shared pool; a3 is in maintenance throughout, so nothing may
 * ever go there. Three small guests on the shared pool run on a1, with a stopped one on the shared pool and a
 * stopped one on a1's local disk. `corral host evacuate a1` puts a1 in maintenance, live-migrates the three to a2
 * (the same boot, no QEMU left on a1), moves the stopped shared one's record, and leaves the local one, saying so
 * (exit 1); run again once that is gone, it has nothing left to do. Then a1 takes work again: with the guests all
 * on a2 and a1 empty, `pool rebalance --dry-run` proposes moving one to a1 and moves nothing, and `pool rebalance`
 * moves it (it runs on a1, the same boot).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import pgLib from 'pg';
import { SKIP_NO_TINY } from './harness.js';
import { runCli, type CliResult } from './cluster-harness.js';
import { NetnsCluster, bootId } from './netns-cluster.js';

const skip = SKIP_NO_TINY;
const c = new NetnsCluster();
const GUESTS = ['e1', 'e2', 'e3'];
const boots = new Map<string, string>();

/** The CLI through the controller, with time for migrations under TCG on a busy machine. */
const slow = (args: string[]): Promise<CliResult> => runCli(args, c.ctl.cliEnv(), 600_000);
const json = (r: CliResult): any => JSON.parse(r.stdout);
const qemusOn = (host: string): number[] => c.qemus().filter((q) => q.host === host).map((q) => q.pid);

/** The data of a host's cluster events of one type, oldest first. */
async function hostEvents(host: string, type: string): Promise<any[]> {
  const db = new pgLib.Client({ connectionString: c.pg.url });
  await db.connect();
  try {
    return (await db.query('SELECT data FROM events WHERE host = $1 AND type = $2 ORDER BY id', [host, type])).rows.map((r) => r.data);
  } finally {
    await db.end();
  }
}

before(async () => {
  if (skip) return;
  await c.start(['a1', 'a2', 'a3']);
  await c.ok(['host', 'maintenance', 'a3', 'on']);
  for (const [k, name] of GUESTS.entries()) {
    await c.ok(['create', name, '--image', 'tiny', '--memory', `${96 + 16 * k}M`, '--pool', 'shared', '--host', 'a1', '--start']);
  }
  await c.ok(['create', 'st1', '--image', 'tiny', '--memory', '64M', '--pool', 'shared', '--host', 'a1']);
  await c.ok(['create', 'loc1', '--image', 'tiny', '--memory', '64M', '--host', 'a1']);
  for (const name of GUESTS) {
    await c.host('a1').waitConsole(name, /corral-tiny ready/, 180_000);
    boots.set(name, await bootId(c.host('a1'), name));
  }
});

after(async () => {
  await c.stop();
});

test('evacuate a1: in maintenance, the running guests live-migrate to a2, the stopped shared one moves, the local one is left (exit 1)', { skip, timeout: 900_000 }, async () => {
  const r = await slow(['host', 'evacuate', 'a1', '--json']);
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, /EVACUATION_INCOMPLETE/);
  const res = json(r);
  assert.deepEqual([res.host, res.maintenance, res.migrated, res.moved, res.left], ['a1', true, 3, 1, 1], r.stdout);
  const by = Object.fromEntries(res.instances.map((i: any) => [i.instance, i]));
  for (const name of GUESTS) {
    assert.equal(by[name].outcome, 'migrated');
    assert.equal(by[name].to, 'a2', 'a3 is in maintenance: a2 is the only host to go to');
  }
  assert.deepEqual([by.st1.outcome, by.st1.to], ['moved', 'a2']);
  assert.equal(by.loc1.outcome, 'left');
  assert.equal(by.loc1.code, 'NOT_MIGRATABLE');
  assert.match(by.loc1.reason, /local pool/);

  const hosts = await c.ok(['host', 'list']);
  assert.equal(hosts.find((h: any) => h.name === 'a1').state, 'maintenance', 'a1 stays in maintenance');
  for (const name of GUESTS) {
    assert.equal(await c.hostOf(name), 'a2');
    assert.deepEqual(c.copiesOf(name).map((q) => q.host), ['a2'], `${name}: one QEMU, on a2`);
    assert.equal(await bootId(c.host('a2'), name), boots.get(name), `${name}: the same boot: it was never restarted`);
    assert.equal((await c.host('a1').api('GET', `/v1/instances/${name}`)).status, 404, `a1 forgot ${name}`);
  }
  assert.deepEqual(qemusOn('a1'), [], 'no QEMU is left on a1');
  // the stopped one: recorded on a2 as it was on a1 (its uuid), not running, forgotten on a1
  assert.equal(await c.hostOf('st1'), 'a2');
  const st1 = await c.host('a2').ok('GET', '/v1/instances/st1');
  assert.equal(st1.state, 'stopped');
  assert.equal((await c.host('a1').api('GET', '/v1/instances/st1')).status, 404);
  assert.equal(await c.hostOf('loc1'), 'a1');
  // the host's events say what happened
  const evacuating = await hostEvents('a1', 'host.evacuating');
  const evacuated = await hostEvents('a1', 'host.evacuated');
  assert.deepEqual(evacuating.map((d) => d.instances), [5]);
  assert.equal(evacuated.length, 1);
  assert.deepEqual([evacuated[0].migrated, evacuated[0].moved, evacuated[0].left], [3, 1, 1]);
  assert.deepEqual(evacuated[0].leftBehind, [{ instance: 'loc1', code: 'NOT_MIGRATABLE' }]);

  // once what was left is gone, the same command finds nothing to do and succeeds
  await c.ok(['delete', 'loc1']);
  const again = await slow(['host', 'evacuate', 'a1']);
  assert.equal(again.code, 0, again.stderr);
  assert.match(again.stdout, /a1 evacuated: 0 live-migrated, 0 moved stopped, 0 left; it stays in maintenance/);
  assert.equal((await c.ok(['host', 'list'])).find((h: any) => h.name === 'a1').state, 'maintenance');
});

test('rebalance: the guests all on a2 and a1 empty: a dry run proposes one move to a1 and moves nothing; the run moves it', { skip, timeout: 900_000 }, async () => {
  await c.ok(['delete', 'st1']); // (a stopped instance reserves its room too: only the three guests count)
  await c.ok(['host', 'maintenance', 'a1', 'off']);

  const dry = await slow(['pool', 'rebalance', '--dry-run']);
  assert.equal(dry.code, 0, dry.stderr);
  assert.match(dry.stdout, /^move e\d \(1 vCPU, \d+ MiB\) a2 -> a1: a2 .* -> .*; a1 0\.0% -> /m);
  assert.match(dry.stdout, /dry run: 1 move proposed, nothing moved/);
  const plan = json(await slow(['pool', 'rebalance', '--dry-run', '--json']));
  assert.equal(plan.moves.length, 1, JSON.stringify(plan));
  const m = plan.moves[0];
  assert.deepEqual([m.from, m.to, m.outcome], ['a2', 'a1', 'proposed']);
  assert.ok(m.after.from.share < m.before.from.share && m.after.to.share > m.before.to.share);
  assert.ok(plan.spreadAfter < plan.spreadBefore);
  for (const name of GUESTS) assert.equal(await c.hostOf(name), 'a2', 'a dry run moves nothing');
  assert.deepEqual(qemusOn('a1'), []);

  const run = await slow(['pool', 'rebalance', '--json']);
  assert.equal(run.code, 0, run.stderr);
  const done = json(run);
  assert.equal(done.moves.length, 1, run.stdout);
  assert.deepEqual([done.moves[0].instance, done.moves[0].from, done.moves[0].to, done.moves[0].outcome], [m.instance, 'a2', 'a1', 'migrated']);
  assert.equal(await c.hostOf(m.instance), 'a1');
  assert.deepEqual(c.copiesOf(m.instance).map((q) => q.host), ['a1'], 'it runs on a1, and only there');
  assert.equal(await bootId(c.host('a1'), m.instance), boots.get(m.instance), 'the same boot');
  for (const name of GUESTS.filter((n) => n !== m.instance)) assert.equal(await c.hostOf(name), 'a2');
  assert.deepEqual(c.qemus().filter((q) => q.host === 'a3'), [], 'nothing ever went to a3, in maintenance');

  // now nothing would make it more even
  const after = json(await slow(['pool', 'rebalance', '--dry-run', '--json']));
  assert.deepEqual(after.moves, []);
});
