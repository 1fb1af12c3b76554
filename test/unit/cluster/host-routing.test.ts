/**
 * Which of a controller's requests are one host's (sent to the target's agent) and which the cluster's; the target
 * header's parsing; and the union of the hosts' lists a controller answers without a target (fake store and
 * agents): each item with its host, in host order, and every host that could not be asked named with why.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { hasDotSegment, PER_HOST_PREFIXES, perHostPath, unionListKey } from '../../../src/cluster/host-routing.js';
import { targetHost, unionList, type PerHostDeps } from '../../../src/cluster/controller-per-host.js';
import type { HostRow, HostState } from '../../../src/cluster/cluster-store.js';
import { CorralError } from '../../../src/core/errors.js';
import { TARGET_HEADER, targetOf } from '../../../src/core/target.js';
import { pathRule } from '../../../src/api/roles.js';

test('a host\'s own paths: images, volumes, networks, vhost-user back ends and the host, below them too', () => {
  assert.deepEqual([...PER_HOST_PREFIXES], ['images', 'volumes', 'networks', 'host', 'vhost-user']);
  for (const p of ['/v1/images', '/v1/images/tiny', '/v1/images/build-tiny', '/v1/volumes?x=1', '/v1/volumes/v1/snapshots/s1/revert', '/v1/networks/lan',
    '/v1/host', '/v1/host/devices', '/v1/host/sriov/0000:03:00.0', '/v1/vhost-user', '/v1/vhost-user/dpdk0']) {
    assert.equal(perHostPath(p), true, p);
  }
  // the controller's own: the cluster's instances, pool, events, tokens, audit, hosts; and anything else
  for (const p of ['/v1/instances', '/v1/instances/web1/disks', '/v1/pool', '/v1/events', '/v1/tokens', '/v1/audit', '/v1/hosts', '/v1/hosts/a1',
    '/v1/cluster/join-tokens', '/openapi.json', '/v1', '/', '/v2/images', '/v1/imagesx', 'v1/images', '/v1/Images']) {
    assert.equal(perHostPath(p), false, p);
  }
});

test('without a target, only a GET (or HEAD) of the image, volume or network list is answered over the hosts', () => {
  assert.equal(unionListKey('GET', '/v1/images'), 'images');
  assert.equal(unionListKey('HEAD', '/v1/volumes'), 'volumes');
  assert.equal(unionListKey('GET', '/v1/networks?x=1'), 'networks');
  for (const [m, p] of [['POST', '/v1/images'], ['GET', '/v1/images/tiny'], ['GET', '/v1/host'], ['GET', '/v1/vhost-user'], ['GET', '/v1/host/devices'], ['DELETE', '/v1/volumes'], ['GET', '/v1/volumes/']]) {
    assert.equal(unionListKey(m!, p!), null, `${m} ${p}`);
  }
});

test('a path with a segment a URL resolves away is never forwarded, nor taken for a route\'s parameter', () => {
  for (const p of ['/v1/volumes/..', '/v1/volumes/%2e%2e/x', '/v1/volumes/%2E.', '/v1/images/.', '/v1/images/%2e?x=1']) assert.equal(hasDotSegment(p), true, p);
  for (const p of ['/v1/volumes/v1', '/v1/volumes/a..b', '/v1/images/...', '/v1/volumes/%2e%2e%2e']) assert.equal(hasDotSegment(p), false, p);
  assert.equal(pathRule('DELETE', '/v1/volumes/x/snapshots/%2e%2e'), null);
  assert.equal(pathRule('POST', '/v1/instances/%2E%2e/start'), null);
  assert.equal(pathRule('DELETE', '/v1/volumes/x/snapshots/s1')?.rule.role, 'operator');
});

test('the target header: a host name, or none; an empty, bad or repeated one is INVALID_SPEC on "target"', () => {
  assert.equal(TARGET_HEADER, 'x-corral-target');
  assert.equal(targetOf({}), undefined);
  assert.equal(targetOf({ 'x-corral-target': 'a1' }), 'a1');
  for (const bad of ['', ' ', 'A1', 'a1, a2', 'a_1', 'x'.repeat(64)]) {
    assert.throws(() => targetOf({ 'x-corral-target': bad }), (e: CorralError) => e.code === 'INVALID_SPEC' && e.details.field === 'target', JSON.stringify(bad));
  }
  assert.throws(() => targetOf({ 'x-corral-target': ['a1', 'a2'] }), /target: "a1, a2" is not a DNS label/);
});

function host(name: string, state: HostState = 'up'): HostRow {
  return {
    name, state, uuid: '00000000-0000-4000-8000-000000000000', address: `https://127.0.0.1:1`, certSerial: '', certFingerprint: '', labels: {}, maintenance: state === 'maintenance',
    sharedPool: null, reserved: { cpus: 0, memory: 0, instances: 0 }, fencedAt: null, fenceReason: null, capacity: null, allocation: null, agentVersion: null,
    joinedAt: '', lastHeartbeat: null, heartbeatAgeMs: null,
  } as HostRow;
}

/** A store of these hosts and agents that answer from `replies` (by host name), recording what each was asked. */
function fakes(hosts: HostRow[], replies: Record<string, { status: number; body: unknown } | Error>): PerHostDeps & { asked: string[] } {
  const asked: string[] = [];
  return {
    asked,
    store: { getHost: async (n) => hosts.find((h) => h.name === n) ?? null, listHosts: async () => hosts },
    agents: {
      call: async (h, method, path) => {
        asked.push(`${h.name} ${method} ${path}`);
        const r = replies[h.name]!;
        if (r instanceof Error) throw r;
        return { status: r.status, contentType: 'application/json', body: Buffer.from(JSON.stringify(r.body)) };
      },
      stream: async () => { throw new Error('not streamed here'); },
      relay: async () => { throw new Error('not relayed here'); },
    },
  };
}

test('the union: each host\'s items with its host, in host order; lost, failing and odd hosts named with why, never asked when not up', async () => {
  const d = fakes([host('a1'), host('a2', 'maintenance'), host('a3', 'unreachable'), host('a4'), host('a5', 'fenced'), host('a6')], {
    a1: { status: 200, body: { volumes: [{ name: 'v1' }, { name: 'v2' }] } },
    a2: { status: 200, body: { volumes: [{ name: 'v1', host: 'spoofed' }] } },
    a4: { status: 500, body: { error: { code: 'NO_SPACE', message: 'the disk is full' } } },
    a6: new CorralError('HOST_UNAVAILABLE', 'host "a6" (https://127.0.0.1:1) cannot be reached: ECONNREFUSED'),
  });
  const u = await unionList(d, 'volumes', '/v1/volumes');
  assert.deepEqual(u.volumes, [{ name: 'v1', host: 'a1' }, { name: 'v2', host: 'a1' }, { name: 'v1', host: 'a2' }]);
  assert.deepEqual(u.unreachable, [
    { host: 'a3', reason: 'it is unreachable' },
    { host: 'a4', reason: 'the disk is full' },
    { host: 'a5', reason: 'it is fenced' },
    { host: 'a6', reason: 'host "a6" (https://127.0.0.1:1) cannot be reached: ECONNREFUSED' },
  ]);
  assert.deepEqual(d.asked.sort(), ['a1 GET /v1/volumes', 'a2 GET /v1/volumes', 'a4 GET /v1/volumes', 'a6 GET /v1/volumes']);
  const none = await unionList(fakes([], {}), 'images', '/v1/images');
  assert.deepEqual(none, { images: [], unreachable: [] });
  const odd = await unionList(fakes([host('b1')], { b1: { status: 200, body: { other: [] } } }), 'images', '/v1/images');
  assert.deepEqual(odd, { images: [], unreachable: [{ host: 'b1', reason: 'its answer has no "images" list' }] });
});

test('a target: HOST_NOT_FOUND when the cluster has no such host, HOST_UNAVAILABLE when it is unreachable or fenced', async () => {
  const { store } = fakes([host('a1'), host('a2', 'maintenance'), host('a3', 'unreachable'), host('a5', 'fenced')], {});
  assert.equal((await targetHost(store, 'a1')).name, 'a1');
  assert.equal((await targetHost(store, 'a2')).name, 'a2');
  await assert.rejects(targetHost(store, 'a9'), (e: CorralError) => e.code === 'HOST_NOT_FOUND' && /no host named "a9" in the cluster/.test(e.message));
  for (const [n, state] of [['a3', 'unreachable'], ['a5', 'fenced']]) {
    await assert.rejects(targetHost(store, n!), (e: CorralError) => e.code === 'HOST_UNAVAILABLE' && e.details.state === state && e.message.includes(`is ${state}`));
  }
});
