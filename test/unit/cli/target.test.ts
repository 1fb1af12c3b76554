/**
 * `corral --target HOST` (before or after the command) and CORRAL_TARGET: the x-corral-target header on every
 * request, the console's websocket too; none without them; a target that no header could carry is a usage error.
 * A controller's union list (rows with `host`, `unreachable`) shows a HOST column and a warning line per lost host.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { imageTable, type ImageRecord } from '../../../src/cli/images.js';
import { volumeTable } from '../../../src/cli/volumes.js';
import { networkTable } from '../../../src/cli/networks.js';
import { IMAGE, runCli, useFakeApi } from './fake-api.js';

const fake = useFakeApi();

/** The target header of the last request to `url`. */
function targetOfLast(url: string, method = 'GET'): unknown {
  const r = [...fake.api.requests].reverse().find((x) => x.method === method && x.url === url);
  assert.ok(r, `no ${method} ${url}`);
  return r.headers['x-corral-target'];
}

test('--target and CORRAL_TARGET send the x-corral-target header; none without them', async () => {
  for (const [args, env, want] of [
    [['--target', 'a1', 'image', 'list', '--json'], {}, 'a1'],
    [['image', 'list', '--target', 'a2', '--json'], {}, 'a2'],
    [['image', 'list', '--json'], { CORRAL_TARGET: 'a3' }, 'a3'],
    [['--target', 'a1', 'image', 'list', '--json'], { CORRAL_TARGET: 'a3' }, 'a1'],
    [['image', 'list', '--json'], {}, undefined],
    [['image', 'list', '--json'], { CORRAL_TARGET: ' ' }, undefined],
  ] as const) {
    const r = await runCli([...args], { ...fake.env, ...env });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(targetOfLast('/v1/images'), want, `${args.join(' ')} ${JSON.stringify(env)}`);
  }
});

test('the console websocket carries the target too', async () => {
  const r = await runCli(['--target', 'a1', 'console', 'web1', '--linger', '300'], fake.env, 'uname -a\n');
  assert.equal(r.code, 0, r.stderr);
  assert.equal(targetOfLast('/v1/instances/web1/console', 'UPGRADE'), 'a1');
});

test('a target no header can carry is a usage error, and nothing is sent', async () => {
  const before = fake.api.requests.length;
  for (const bad of ['', 'a 1', 'hôte']) {
    const r = await runCli(['--target', bad, 'image', 'list', '--json'], fake.env);
    assert.equal(r.code, 1);
    assert.equal(JSON.parse(r.stderr).error.code, 'USAGE', r.stderr);
  }
  assert.equal(fake.api.requests.length, before);
});

test('a union list shows a HOST column, and a warning line for each host that could not be asked', async () => {
  const r = await runCli(['volume', 'list'], fake.env);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stderr, 'warning: host a3 could not be asked for its volumes, which are not listed: it is unreachable\n');
  const lines = r.stdout.trimEnd().split('\n');
  assert.match(lines[0]!, /^NAME\s+HOST\s+FORMAT\s+SIZE\s+ALLOCATED\s+BACKING\s+ATTACHED\s+CREATED$/);
  assert.match(lines[1]!, /^data1\s+a1\s+qcow2\s/);
  assert.match(lines[2]!, /^data2\s+a2\s+raw\s.*\sweb1\s/);
  // --json prints the reply as it is, and says nothing on stderr
  const j = await runCli(['volume', 'list', '--json'], fake.env);
  assert.equal(j.stderr, '');
  assert.deepEqual(JSON.parse(j.stdout).unreachable, [{ host: 'a3', reason: 'it is unreachable' }]);
});

test('tables: HOST second when rows carry it, as they were when none does', () => {
  const image = IMAGE as ImageRecord;
  assert.match(imageTable([image]).split('\n')[0]!, /^NAME\s+KIND\s+FORMAT/);
  assert.match(imageTable([{ ...image, host: 'a1' }, image]), /^NAME\s+HOST\s+KIND.*\ntiny\s+a1\s+kernel\s.*\ntiny\s+-\s+kernel\s/);
  const net = { name: 'default', kind: 'user', cidr: null, gateway: null, nat: true, bridge: null, dns: false, builtin: true, createdAt: null };
  assert.match(networkTable([{ ...net, host: 'a2' }] as never), /^NAME\s+HOST\s+KIND.*\ndefault\s+a2\s+user\s/);
  assert.doesNotMatch(volumeTable([]), /HOST/);
});
