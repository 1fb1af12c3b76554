/**
 * A host's own resources through a controller, with the real CLI and two real agents: `corral --target HOST` (or
 * CORRAL_TARGET) sends image, volume, network and host commands to that host's agent and shows what it answers
 * (an image import's progress stream included); without a target, `image|volume|network list` is the union over
 * the hosts with a HOST column, and anything else is TARGET_REQUIRED naming the hosts. An unknown target is
 * HOST_NOT_FOUND, a lost host's HOST_UNAVAILABLE (and the union names it on stderr); roles are the agent route's;
 * the cluster's own commands refuse a target, and a single daemon (an agent's own socket) refuses any.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Daemon, SKIP_NO_TINY, newDataDir, waitFor } from './harness.js';
import { Controller, freePort, runCli, type CliResult } from './cluster-harness.js';
import { startPostgres, type TestPostgres } from '../unit/postgres.js';

const skip = SKIP_NO_TINY;
let pg: TestPostgres;
let ctl: Controller;
const agents: Record<string, Daemon> = {};

function ok(r: CliResult, what: string): any {
  assert.equal(r.code, 0, `${what}: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

function refused(r: CliResult, what: string): any {
  assert.equal(r.code, 1, `${what} must fail: ${r.stdout}`);
  return JSON.parse(r.stderr).error;
}

/** The CLI through the controller, --json. */
const json = async (args: string[], env: NodeJS.ProcessEnv = {}): Promise<CliResult> => runCli([...args, '--json'], { ...ctl.cliEnv(), ...env });

before(async () => {
  if (skip) return;
  pg = await startPostgres();
  ctl = new Controller(pg.url, await freePort(), { CORRAL_UNREACHABLE_AFTER_MS: '4000' });
  const init = await runCli(['cluster', 'init', '--database', pg.url, '--json'], {});
  assert.equal(init.code, 0, init.stderr);
  await ctl.start();
  for (const name of ['a1', 'a2']) {
    const token = ok(await ctl.cli(['cluster', 'join-token', '--json']), 'join-token').token;
    const a = new Daemon(newDataDir(), ['--join', ctl.url, '--token', token, '--name', name, '--listen', `127.0.0.1:${await freePort()}`], { CORRAL_HEARTBEAT_MS: '500' }, { command: 'agent' });
    agents[name] = a;
    await a.start();
  }
  await waitFor(async () => ok(await json(['host', 'list']), 'host list').every((h: any) => h.state === 'up'), 30_000, 'both hosts to be up');
});

after(async () => {
  for (const a of Object.values(agents)) await a.destroy();
  await ctl?.destroy();
  await pg?.stop();
});

test('--target sends image commands to that host, as its own API answers them; without one the list is every host\'s, with HOST', { skip, timeout: 180_000 }, async () => {
  const own = ok(await agents.a1!.cli(['image', 'list', '--json']), 'a1 image list on its own socket');
  assert.deepEqual(ok(await json(['--target', 'a1', 'image', 'list']), 'image list --target a1'), own);
  // after the command too, and from the environment
  assert.deepEqual(ok(await json(['image', 'list', '--target', 'a1']), 'image list after'), own);
  assert.deepEqual(ok(await json(['image', 'list'], { CORRAL_TARGET: 'a1' }), 'CORRAL_TARGET'), own);

  // an import through the controller: the job's progress lines are relayed; the image is made on a1 only
  const file = join(agents.a1!.dataDir, 'blank.raw');
  writeFileSync(file, Buffer.alloc(1024 * 1024));
  const made = ok(await json(['--target', 'a1', 'image', 'import', 'blank', file, '--format', 'raw']), 'image import --target a1');
  assert.deepEqual([made.name, made.format, made.virtualSize], ['blank', 'raw', 1024 * 1024]);
  assert.deepEqual(ok(await agents.a1!.cli(['image', 'list', '--json']), 'a1').images.map((i: any) => i.name).sort(), ['blank', 'tiny']);
  assert.deepEqual(ok(await agents.a2!.cli(['image', 'list', '--json']), 'a2').images.map((i: any) => i.name), ['tiny']);

  const all = ok(await json(['image', 'list']), 'image list');
  assert.deepEqual(all.images.map((i: any) => [i.host, i.name]), [['a1', 'blank'], ['a1', 'tiny'], ['a2', 'tiny']]);
  assert.deepEqual(all.unreachable, []);
  const text = await ctl.cli(['image', 'list']);
  assert.equal(text.code, 0, text.stderr);
  assert.equal(text.stderr, '');
  const lines = text.stdout.trimEnd().split('\n');
  assert.match(lines[0]!, /^NAME\s+HOST\s+KIND\s+FORMAT\s+SIZE/);
  assert.deepEqual(lines.slice(1).map((l) => l.split(/\s+/).slice(0, 2)), all.images.map((i: any) => [i.name, i.host]));

  // an unknown target; the cluster's own commands and a single daemon refuse one
  const unknown = refused(await json(['--target', 'nosuch', 'image', 'list']), 'unknown target');
  assert.equal(unknown.code, 'HOST_NOT_FOUND');
  assert.match(unknown.message, /no host named "nosuch" in the cluster/);
  const own2 = refused(await json(['--target', 'a1', 'list']), 'list --target');
  assert.deepEqual([own2.code, own2.field], ['INVALID_SPEC', 'target']);
  assert.match(own2.message, /GET \/v1\/instances is the cluster's, not one host's: drop --target/);
  const single = await agents.a1!.cli(['--target', 'a1', 'image', 'list', '--json']);
  assert.equal(single.code, 1);
  assert.equal(JSON.parse(single.stderr).error.code, 'NOT_A_CLUSTER');

  const deleted = refused(await json(['image', 'delete', 'blank']), 'image delete without a target');
  assert.equal(deleted.code, 'TARGET_REQUIRED');
  ok(await json(['--target', 'a1', 'image', 'delete', 'blank']), 'image delete --target a1');
  assert.deepEqual(ok(await json(['image', 'list']), 'image list').images.map((i: any) => [i.host, i.name]), [['a1', 'tiny'], ['a2', 'tiny']]);
});

test('a volume made with --target is on that host only; host show and networks; without a target a change is TARGET_REQUIRED naming the hosts', { skip, timeout: 180_000 }, async () => {
  const v1 = ok(await json(['--target', 'a2', 'volume', 'create', 'v1', '--size', '64M']), 'volume create --target a2');
  assert.deepEqual([v1.name, v1.virtualSize], ['v1', 64 * 1024 * 1024]);
  assert.deepEqual(ok(await agents.a2!.cli(['volume', 'list', '--json']), 'a2').volumes.map((v: any) => v.name), ['v1']);
  assert.deepEqual(ok(await agents.a1!.cli(['volume', 'list', '--json']), 'a1').volumes, []);
  assert.deepEqual(ok(await json(['volume', 'list']), 'volume list').volumes.map((v: any) => [v.host, v.name]), [['a2', 'v1']]);
  assert.match((await ctl.cli(['volume', 'list'])).stdout, /^NAME\s+HOST\s+FORMAT.*\nv1\s+a2\s+qcow2\s/);
  assert.equal(ok(await json(['--target', 'a2', 'volume', 'show', 'v1']), 'volume show').name, 'v1');
  assert.equal(refused(await json(['--target', 'a1', 'volume', 'show', 'v1']), 'volume show on a1').code, 'VOLUME_NOT_FOUND');
  // a name the URL would resolve away: the agent would be asked for another path than the role check saw
  const dots = refused(await json(['--target', 'a2', 'volume', 'delete', '..']), 'volume delete ..');
  assert.deepEqual([dots.code, dots.field], ['INVALID_SPEC', 'path']);

  const req = refused(await json(['volume', 'create', 'v2', '--size', '64M']), 'volume create without a target');
  assert.equal(req.code, 'TARGET_REQUIRED');
  assert.deepEqual(req.hosts, ['a1', 'a2']);
  assert.match(req.message, /^POST \/v1\/volumes is one host's, not the cluster's: say which with --target HOST .*; the hosts up now: a1, a2$/);

  // networks: the list is every host's default; a create needs a target, and nothing is made without one
  const nets = ok(await json(['network', 'list']), 'network list');
  assert.deepEqual(nets.networks.map((n: any) => [n.host, n.name]), [['a1', 'default'], ['a2', 'default']]);
  assert.match((await ctl.cli(['network', 'list'])).stdout.split('\n')[0]!, /^NAME\s+HOST\s+KIND/);
  const net = refused(await json(['network', 'create', 'n1', '--kind', 'user']), 'network create without a target');
  assert.deepEqual([net.code, net.hosts], ['TARGET_REQUIRED', ['a1', 'a2']]);
  assert.match((await ctl.cli(['network', 'create', 'n1', '--kind', 'user'])).stderr, /^error: TARGET_REQUIRED: POST \/v1\/networks is one host's.*the hosts up now: a1, a2$/m);
  assert.equal(ok(await json(['network', 'list']), 'network list').networks.length, 2);

  // the host's own facts: what its own socket says
  const shown = ok(await json(['--target', 'a2', 'host', 'show']), 'host show --target a2');
  const a2own = ok(await agents.a2!.cli(['host', 'show', '--json']), 'a2 host show');
  assert.deepEqual(Object.keys(shown).sort(), Object.keys(a2own).sort());
  assert.equal(refused(await json(['host', 'show']), 'host show without a target').code, 'TARGET_REQUIRED');
});

test('roles: a viewer lists through the controller but cannot make a volume on a host', { skip, timeout: 120_000 }, async () => {
  const viewer = ok(await json(['token', 'create', 'watcher', '--role', 'viewer']), 'token create');
  const as = { CORRAL_TOKEN: viewer.token };
  assert.deepEqual(ok(await json(['--target', 'a2', 'volume', 'list'], as), 'viewer: volume list').volumes.map((v: any) => v.name), ['v1']);
  const no = refused(await json(['--target', 'a2', 'volume', 'create', 'v3', '--size', '64M'], as), 'viewer: volume create');
  assert.deepEqual([no.code, no.required, no.role], ['FORBIDDEN', 'operator', 'viewer']);
  assert.match(no.message, /^POST \/v1\/volumes needs the operator role; the token "watcher" has the viewer role$/);
  assert.deepEqual(ok(await agents.a2!.cli(['volume', 'list', '--json']), 'a2').volumes.map((v: any) => v.name), ['v1'], 'nothing made');
  ok(await json(['--target', 'a2', 'volume', 'delete', 'v1']), 'volume delete');
});

test('a lost host: HOST_UNAVAILABLE with --target, and the union names it on stderr', { skip, timeout: 120_000 }, async () => {
  await agents.a2!.stop();
  await waitFor(async () => ok(await json(['host', 'show', 'a2']), 'host show a2').state === 'unreachable', 30_000, 'a2 to be unreachable');
  const lost = refused(await json(['--target', 'a2', 'volume', 'list']), 'volume list --target a2');
  assert.deepEqual([lost.code, lost.host, lost.state], ['HOST_UNAVAILABLE', 'a2', 'unreachable']);
  const all = ok(await json(['image', 'list']), 'image list');
  assert.deepEqual(all.images.map((i: any) => [i.host, i.name]), [['a1', 'tiny']]);
  assert.deepEqual(all.unreachable, [{ host: 'a2', reason: 'it is unreachable' }]);
  const text = await ctl.cli(['image', 'list']);
  assert.equal(text.code, 0, text.stderr);
  assert.equal(text.stderr, 'warning: host a2 could not be asked for its images, which are not listed: it is unreachable\n');
  assert.match(text.stdout, /^NAME\s+HOST\s.*\ntiny\s+a1\s/);
});
