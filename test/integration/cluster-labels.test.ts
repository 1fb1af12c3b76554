/**
 * Host labels through a controller, with the real CLI: agents join with `--label` (a bad one is refused before the
 * join token is spent), `corral host label` sets, overwrites and removes them (`KEY-`; a bad one changes nothing),
 * `host list` and `host show` show them, and `corral create --host-label` lands only on a host that carries them,
 * or is NO_HOST_FITS naming what each host lacks. A single daemon (an agent's own API) refuses `hostLabels`, as it
 * refuses `host` and `group`: only a controller places.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { Daemon, SKIP_NO_TINY, newDataDir, waitFor } from './harness.js';
import { Controller, freePort, runCli } from './cluster-harness.js';
import { startPostgres, type TestPostgres } from '../unit/postgres.js';

const skip = SKIP_NO_TINY;
let pg: TestPostgres;
let ctl: Controller;
const agents = new Map<string, Daemon>();

async function agent(name: string, joinArgs: string[]): Promise<Daemon> {
  const d = new Daemon(newDataDir(), [...joinArgs, '--name', name, '--listen', `127.0.0.1:${await freePort()}`], { CORRAL_HEARTBEAT_MS: '500' }, { command: 'agent' });
  agents.set(`${name}-${agents.size}`, d);
  return d;
}

async function newToken(): Promise<string> {
  const r = await ctl.cli(['cluster', 'join-token', '--json']);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout).token;
}

/** A CLI call that must succeed, with --json: its output parsed. */
const ok = (args: string[]): Promise<any> => ctl.json(args);

/** A CLI call that must fail, with --json: its error. */
async function refused(args: string[]): Promise<any> {
  const r = await ctl.cli([...args, '--json']);
  assert.equal(r.code, 1, `${args.join(' ')} must fail: ${r.stdout}`);
  return JSON.parse(r.stderr).error;
}

const labelsOf = async (): Promise<Record<string, Record<string, string>>> =>
  Object.fromEntries((await ok(['host', 'list'])).map((h: any) => [h.name, h.labels]));

before(async () => {
  if (skip) return;
  pg = await startPostgres();
  ctl = new Controller(pg.url, await freePort());
  const init = await runCli(['cluster', 'init', '--database', pg.url, '--json'], {});
  assert.equal(init.code, 0, init.stderr);
  await ctl.start();
});

after(async () => {
  for (const a of agents.values()) await a.destroy();
  await ctl?.destroy();
  await pg?.stop();
});

test('agents join with their labels; a bad label is refused before the token is spent; --label goes with --join', { skip, timeout: 180_000 }, async () => {
  const usage = await runCli(['agent', '--label', 'zone=a'], {});
  assert.equal(usage.code, 1);
  assert.match(usage.stderr, /USAGE: --label goes with --join/);

  const a1 = await agent('a1', ['--join', ctl.url, '--token', await newToken(), '--label', 'zone=a', '--label', 'disk=ssd']);
  await a1.start();
  const t2 = await newToken();
  const bad = await agent('a2', ['--join', ctl.url, '--token', t2, '--label', 'Zone=b']);
  await assert.rejects(bad.start(), /daemon exited 1/);
  assert.match(bad.log, /INVALID_SPEC: label: "Zone" is not a label key/);
  const a2 = await agent('a2', ['--join', ctl.url, '--token', t2]);
  await a2.start();
  await waitFor(async () => (await ok(['host', 'list'])).every((h: any) => h.state === 'up'), 30_000, 'both hosts to be up');
  assert.deepEqual(await labelsOf(), { a1: { zone: 'a', disk: 'ssd' }, a2: {} });
  const text = (await ctl.cli(['host', 'list'])).stdout.split('\n');
  assert.match(text[0]!, /\sLABELS$/);
  assert.match(text[1]!, /^a1\s.*\sdisk=ssd,zone=a$/);
  assert.match(text[2]!, /^a2\s.*\s-$/);
});

test('corral host label sets, overwrites and removes labels; create --host-label lands where they are, or names what each host lacks', { skip, timeout: 240_000 }, async () => {
  const a2 = await ok(['host', 'label', 'a2', 'zone=b', 'rack=r1']);
  assert.deepEqual(a2.labels, { zone: 'b', rack: 'r1' });
  assert.match((await ctl.cli(['host', 'show', 'a2'])).stdout, /^labels:\s+rack=r1,zone=b$/m);

  const l1 = await ok(['create', 'l1', '--image', 'tiny', '--memory', '64M', '--host-label', 'zone=b']);
  assert.equal(l1.host, 'a2');
  const l2 = await ok(['create', 'l2', '--image', 'tiny', '--memory', '64M', '--host-label', 'zone=a', '--host-label', 'disk=ssd']);
  assert.equal(l2.host, 'a1');
  const none = await refused(['create', 'x1', '--image', 'tiny', '--memory', '64M', '--host-label', 'zone=c']);
  assert.equal(none.code, 'NO_HOST_FITS');
  assert.deepEqual(none.hosts, ['a1 lacks the label zone=c', 'a2 lacks the label zone=c']);
  assert.match(none.message, /no host can take 1 vCPU and 64 MiB with the host label zone=c/);

  // a host's labels are its own: the instance made with them stays; new creates see the change
  assert.deepEqual((await ok(['host', 'label', 'a2', 'zone-', 'rack=r2'])).labels, { rack: 'r2' });
  const gone = await refused(['create', 'x1', '--image', 'tiny', '--memory', '64M', '--host-label', 'zone=b']);
  assert.deepEqual(gone.hosts, ['a1 lacks the label zone=b', 'a2 lacks the label zone=b']);
  assert.deepEqual((await ok(['list'])).instances.map((i: any) => [i.name, i.host]), [['l1', 'a2'], ['l2', 'a1']], 'nothing half-made');

  // bad labels, an unknown host: refused, and nothing changes
  for (const args of [['a2', 'rack=r3', 'Bad=x'], ['a2', 'rack=r3', 'zone=a b'], ['a2', 'rack=r3', `zone=${'x'.repeat(64)}`]]) {
    const e = await refused(['host', 'label', ...args]);
    assert.equal(e.code, 'INVALID_SPEC', JSON.stringify(e));
    assert.equal(e.field, 'labels');
  }
  assert.match((await refused(['host', 'label', 'a2', 'rack'])).message, /neither KEY=VALUE \(set a label\) nor KEY- \(remove one\)/);
  assert.equal((await refused(['host', 'label', 'nosuch', 'zone=a'])).code, 'HOST_NOT_FOUND');
  const badCreate = await refused(['create', 'x1', '--image', 'tiny', '--host-label', 'zone=a/b']);
  assert.deepEqual([badCreate.code, badCreate.field], ['INVALID_SPEC', 'hostLabels']);
  assert.deepEqual(await labelsOf(), { a1: { zone: 'a', disk: 'ssd' }, a2: { rack: 'r2' } });
  assert.equal((await ok(['list'])).instances.length, 2);

  // a single daemon (here an agent's own API) does not place: hostLabels is an unknown field there, as host is
  const a1 = [...agents.values()].find((d) => d.extraArgs.includes('a1') && d.proc?.exitCode === null)!;
  for (const field of ['host', 'hostLabels']) {
    const r = await a1.api('POST', '/v1/instances', { name: 'y1', image: 'tiny', [field]: field === 'host' ? 'a1' : { zone: 'a' } });
    assert.equal(r.status, 400);
    assert.deepEqual([r.body.error.code, r.body.error.field], ['INVALID_SPEC', field]);
  }

  for (const n of ['l1', 'l2']) await ok(['delete', n]);
});
