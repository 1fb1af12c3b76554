/** Operations on one instance are serialised; different instances proceed in parallel. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Daemon, SKIP_NO_TINY, useDaemon } from './harness.js';

const skip = SKIP_NO_TINY;
let d: Daemon;
useDaemon((x) => { d = x; });

test('two starts of one instance at once: one runs QEMU, the other is refused', { skip, timeout: 60_000 }, async () => {
  assert.equal((await d.api('POST', '/v1/instances', { name: 'p1', image: 'tiny' })).status, 201);
  const [a, b] = await Promise.all([d.api('POST', '/v1/instances/p1/start', {}), d.api('POST', '/v1/instances/p1/start', {})]);
  const statuses = [a.status, b.status].sort();
  assert.deepEqual(statuses, [200, 409], JSON.stringify([a.body, b.body]));
  const refused = a.status === 409 ? a : b;
  assert.equal(refused.body.error.code, 'INVALID_STATE');
  assert.equal(refused.body.error.state, 'running');
});

test('different instances start in parallel and all run', { skip, timeout: 90_000 }, async () => {
  const names = ['p2', 'p3', 'p4'];
  const created = await Promise.all(names.map((name) => d.api('POST', '/v1/instances', { name, image: 'tiny', memory: '128M', start: true })));
  for (const r of created) assert.equal(r.status, 201, JSON.stringify(r.body));
  const pids = new Set(created.map((r) => r.body.pid));
  assert.equal(pids.size, names.length);
  for (const name of names) await d.waitConsole(name, /corral-tiny ready/);
  const killed = await Promise.all([...names, 'p1'].map((n) => d.api('POST', `/v1/instances/${n}/kill`, {})));
  for (const r of killed) assert.equal(r.body.state, 'stopped');
});

test('creating the same name twice at once makes one instance', { skip }, async () => {
  const rs = await Promise.all([1, 2, 3].map(() => d.api('POST', '/v1/instances', { name: 'dup', image: 'tiny' })));
  assert.deepEqual(rs.map((r) => r.status).sort(), [201, 409, 409]);
  assert.equal(rs.find((r) => r.status === 409)!.body.error.code, 'ALREADY_EXISTS');
  const all = (await d.api('GET', '/v1/instances')).body.instances.filter((i: { name: string }) => i.name === 'dup');
  assert.equal(all.length, 1);
});
