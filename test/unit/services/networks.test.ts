/** NetworkService against a fake host: every failure of a create is undone, delete and restore, taps. */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isCorralError } from '../../../src/core/errors.js';
import type { AddressReservation } from '../../../src/core/addresses.js';
import { NetworkStore } from '../../../src/network/store.js';
import { NetworkService } from '../../../src/services/networks.js';
import { FakeNetworkHost } from '../../../src/network/fake-host.js';

const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** What a tap's guest may send as, in network a (10.1.0.0/24: addresses 10.1.0.10 .. 10.1.0.254). */
const as = (n: number, owner = `web/net${n}`): { mac: string; ip: string; owner: string } => ({ mac: `52:54:00:00:00:${(10 + n).toString(16).padStart(2, '0')}`, ip: `10.1.0.${10 + n}`, owner });

interface Env { svc: NetworkService; host: FakeNetworkHost; store: NetworkStore; events: string[]; dataDir: string }

function fresh(inUse?: (n: string) => string[]): Env {
  const dataDir = mkdtempSync(join(tmpdir(), 'corral-networks-'));
  dirs.push(dataDir);
  const host = new FakeNetworkHost();
  const store = new NetworkStore(dataDir);
  const events: string[] = [];
  const svc = new NetworkService({
    store, host, inUse,
    events: { publish: (type: string) => { events.push(type); return { id: events.length, type, instance: null, data: {}, time: '' } as never; } },
    log: { info: () => undefined, warn: () => undefined },
  });
  return { svc, host, store, events, dataDir };
}

async function rejects(p: Promise<unknown>, code: string, field?: string): Promise<void> {
  await assert.rejects(p, (e: unknown) => isCorralError(e) && e.code === code && (field === undefined || e.details.field === field));
}

/** Nothing of the network left: no record or folder, no bridge, no dnsmasq, firewall as before. */
function nothingLeft(e: Env, name: string, firewall: string[]): void {
  assert.equal(existsSync(e.store.pathOf(name)), false, 'no folder');
  assert.deepEqual(readdirSync(e.store.dir).filter((n) => n.includes(name)), [], 'no staging folder');
  assert.equal([...e.host.bridges.values()].includes(name), false, 'no bridge');
  assert.equal(e.host.dhcp.has(e.store.filesOf(name).leases), false, 'no dnsmasq');
  assert.deepEqual(e.host.firewall, firewall, 'firewall as before');
}

test('create a bridge network: bridge, firewall, record, dnsmasq; list and get', async () => {
  const e = fresh();
  const rec = await e.svc.create({ name: 'lab', kind: 'bridge', cidr: '10.10.0.0/24' });
  assert.equal(rec.bridge, 'crl-lab');
  assert.deepEqual(e.host.calls, ['routes', 'ensureBridge', 'loadFirewall', 'startDhcp']);
  assert.deepEqual(e.host.firewall, ['lab']);
  assert.deepEqual(e.svc.list().map((n) => n.name), ['default', 'lab']);
  const got = await e.svc.get('lab');
  assert.equal(got.status?.bridge.exists, true);
  assert.equal(got.status?.dnsmasq.running, true);
  assert.deepEqual(got.leases, []);
  const def = await e.svc.get('default');
  assert.equal(def.status, null);
  assert.equal(def.kind, 'user');
  assert.deepEqual(e.events, ['network.created']);
  await rejects(e.svc.create({ name: 'lab', cidr: '10.99.0.0/24' }), 'ALREADY_EXISTS', 'name');
  await rejects(e.svc.create({ name: 'lab2', cidr: '10.10.0.0/16' }), 'NETWORK_CONFLICT', 'cidr');
  await rejects(e.svc.create({ name: 'lab2', cidr: '192.168.1.0/25' }), 'NETWORK_CONFLICT', 'cidr');
  await rejects(e.svc.get('nope'), 'NETWORK_NOT_FOUND');
  await rejects(e.svc.get('../etc'), 'INVALID_SPEC', 'name');
});

for (const step of ['ensureBridge', 'loadFirewall', 'startDhcp'] as const) {
  test(`a create failing at ${step} leaves nothing and restores the firewall`, async () => {
    const e = fresh();
    await e.svc.create({ name: 'a', cidr: '10.1.0.0/24' });
    e.host.failAt = step;
    e.host.failCount = 1;
    await assert.rejects(e.svc.create({ name: 'b', cidr: '10.2.0.0/24' }), new RegExp(`fake ${step} failure`));
    nothingLeft(e, 'b', ['a']);
    assert.equal(e.host.bridges.size, 1);
    assert.deepEqual(e.svc.list().map((n) => n.name), ['default', 'a']);
    // and the name can be used afterwards
    await e.svc.create({ name: 'b', cidr: '10.2.0.0/24' });
    assert.deepEqual(e.host.firewall, ['a', 'b']);
  });
}

test('user networks: a record only, nothing on the host', async () => {
  const e = fresh();
  const u = await e.svc.create({ name: 'u1', kind: 'user' });
  assert.equal(u.kind, 'user');
  assert.deepEqual(e.host.calls, []);
  await e.svc.delete('u1');
  assert.deepEqual(e.host.calls, []);
  assert.equal(existsSync(e.store.pathOf('u1')), false);
});

test('default: cannot be created or deleted; NIC helpers refuse taps on user networks', async () => {
  const e = fresh();
  await rejects(e.svc.create({ name: 'default', kind: 'user' }), 'ALREADY_EXISTS', 'name');
  await rejects(e.svc.delete('default'), 'INVALID_SPEC', 'name');
  assert.equal(e.svc.bridgeOf('default'), null);
  assert.equal(e.svc.record('default').builtin, true);
  await rejects(e.svc.ensureTap('default', 'tap0', as(0)), 'INVALID_SPEC', 'network');
  assert.equal(e.svc.leaseFor('default', '52:54:00:00:00:01'), null);
});

test('delete: refused while instances use it (NETWORK_IN_USE naming them), else everything goes', async () => {
  const users: Record<string, string[]> = { a: ['web1', 'db1'] };
  const e = fresh((n) => users[n] ?? []);
  await e.svc.create({ name: 'a', cidr: '10.1.0.0/24' });
  await e.svc.create({ name: 'b', cidr: '10.2.0.0/24', nat: false });
  await assert.rejects(e.svc.delete('a'), (err: unknown) =>
    isCorralError(err) && err.code === 'NETWORK_IN_USE' && err.status === 409 && /web1, db1/.test(err.message) && JSON.stringify(err.details.instances) === '["web1","db1"]');
  assert.equal(e.svc.bridgeOf('a'), 'crl-a');
  users.a = [];
  await e.svc.delete('a');
  nothingLeft(e, 'a', ['b']);
  await rejects(e.svc.delete('a'), 'NETWORK_NOT_FOUND');
  e.svc.setInUse(() => ['vm9']);
  await rejects(e.svc.delete('b'), 'NETWORK_IN_USE');
});

test('a delete that fails half-way can be repeated', async () => {
  const e = fresh();
  await e.svc.create({ name: 'a', cidr: '10.1.0.0/24' });
  e.host.failAt = 'deleteBridge';
  e.host.failCount = 1;
  await assert.rejects(e.svc.delete('a'), /fake deleteBridge failure/);
  assert.ok(e.svc.record('a'));
  await e.svc.delete('a');
  nothingLeft(e, 'a', []);
});

test('restore: re-creates bridges and firewall, starts or adopts dnsmasq; one failure does not stop the others', async () => {
  const e = fresh();
  await e.svc.create({ name: 'a', cidr: '10.1.0.0/24' });
  await e.svc.create({ name: 'b', cidr: '10.2.0.0/24', nat: false });
  await e.svc.create({ name: 'u', kind: 'user' });
  const pidA = e.host.dhcp.get(e.store.filesOf('a').leases);
  // a host reboot: everything gone but the records; dnsmasq of a still there (daemon restart)
  e.host.bridges.clear();
  e.host.firewall = [];
  e.host.dhcp.delete(e.store.filesOf('b').leases);
  e.host.calls = [];
  assert.deepEqual(await e.svc.restore(), []);
  assert.deepEqual([...e.host.bridges.keys()].sort(), ['crl-a', 'crl-b']);
  assert.deepEqual(e.host.firewall, ['a', 'b']);
  assert.equal(e.host.dhcp.get(e.store.filesOf('a').leases), pidA, 'adopted, not started twice');
  assert.ok(e.host.dhcp.has(e.store.filesOf('b').leases));
  // a failing bridge is reported, the other network still restored
  e.host.bridges.clear();
  e.host.failAt = 'ensureBridge';
  e.host.failCount = 1;
  const failed = await e.svc.restore();
  assert.deepEqual(failed.map((f) => f.network), ['a']);
  assert.ok(e.host.bridges.has('crl-b'));
});

test('restore with no bridge network touches nothing on the host', async () => {
  const e = fresh();
  await e.svc.create({ name: 'u', kind: 'user' });
  assert.deepEqual(await e.svc.restore(), []);
  assert.deepEqual(e.host.calls, []);
});

test('ensureTap, deleteTap, taps, leaseFor for the NIC service', async () => {
  const e = fresh();
  await e.svc.create({ name: 'a', cidr: '10.1.0.0/24' });
  await e.svc.ensureTap('a', 'ct-web1-0', as(0));
  await e.svc.ensureTap('a', 'ct-web1-1', as(1), { queues: 4 });
  assert.deepEqual(e.host.taps.get('ct-web1-0'), { bridge: 'crl-a', multiQueue: false });
  assert.deepEqual(e.host.taps.get('ct-web1-1'), { bridge: 'crl-a', multiQueue: true });
  assert.deepEqual((await e.svc.taps('ct-web1')).map((t) => t.ifname), ['ct-web1-0', 'ct-web1-1']);
  assert.deepEqual((await e.svc.get('a')).status?.bridge.ports, ['ct-web1-0', 'ct-web1-1']);
  await rejects(e.svc.ensureTap('a', 'Bad_Tap', as(2)), 'INVALID_SPEC', 'ifname');
  await rejects(e.svc.ensureTap('a', 'tap-name-too-long', as(2)), 'INVALID_SPEC', 'ifname');
  await rejects(e.svc.ensureTap('a', 'tap0', as(2), { queues: 0 }), 'INVALID_SPEC', 'queues');
  await rejects(e.svc.ensureTap('nope', 'tap0', as(2)), 'NETWORK_NOT_FOUND');
  // the bridge vanished behind Corral's back: made again before the tap joins it
  e.host.bridges.clear();
  await e.svc.ensureTap('a', 'ct-web2-0', as(2));
  assert.ok(e.host.bridges.has('crl-a'));
  // a dnsmasq that died is started again; a running one is kept
  const pid = e.host.dhcp.get(e.store.filesOf('a').leases);
  await e.svc.ensureTap('a', 'ct-web2-1', as(3));
  assert.equal(e.host.dhcp.get(e.store.filesOf('a').leases), pid);
  e.host.dhcp.clear();
  await e.svc.ensureTap('a', 'ct-web2-2', as(4));
  assert.ok(e.host.dhcp.has(e.store.filesOf('a').leases));
  await e.svc.deleteTap('ct-web1-0');
  await e.svc.deleteTap('ct-web1-0');
  assert.equal(e.host.taps.has('ct-web1-0'), false);
  e.host.leaseText.set(e.store.filesOf('a').leases, [{ mac: '52:54:00:aa:bb:01', ip: '10.1.0.23', hostname: 'web1', expires: null }]);
  assert.deepEqual(e.svc.leaseFor('a', '52:54:00:AA:BB:01'), { mac: '52:54:00:aa:bb:01', ip: '10.1.0.23', hostname: 'web1', expires: null });
  assert.equal(e.svc.leaseFor('a', '52:54:00:aa:bb:02'), null);
  assert.deepEqual(e.svc.leases('a').map((l) => l.ip), ['10.1.0.23']);
  assert.deepEqual(e.svc.leases('default'), []);
});

test('layer-2 filter: a tap\'s rules are loaded before it is made and go after it; a failed load makes no tap', async () => {
  const e = fresh();
  await e.svc.create({ name: 'a', cidr: '10.1.0.0/24' });
  e.host.calls = [];
  await e.svc.ensureTap('a', 'ct1n0', as(0));
  assert.deepEqual(e.host.calls.slice(-2), ['loadL2Filter', 'createTap'], 'rules first, then the tap');
  await e.svc.ensureTap('a', 'ct1n1', as(1));
  assert.deepEqual(e.host.l2.map((t) => [t.ifname, t.mac, t.ip]), [['ct1n0', '52:54:00:00:00:0a', '10.1.0.10'], ['ct1n1', '52:54:00:00:00:0b', '10.1.0.11']]);
  // the same tap again (a restart of its instance): one binding, the new one
  await e.svc.ensureTap('a', 'ct1n1', as(5));
  assert.deepEqual(e.host.l2.map((t) => t.ip), ['10.1.0.10', '10.1.0.15']);
  await e.svc.deleteTap('ct1n0');
  assert.deepEqual(e.host.l2.map((t) => t.ifname), ['ct1n1']);
  assert.deepEqual(e.svc.boundTaps().map((t) => t.ifname), ['ct1n1']);
  // an address outside the network's range, or a multicast MAC: refused, nothing made
  await rejects(e.svc.ensureTap('a', 'ct1n2', { ...as(2), ip: '10.1.0.5' }), 'INVALID_SPEC', 'address');
  await rejects(e.svc.ensureTap('a', 'ct1n2', { ...as(2), ip: '10.9.0.20' }), 'INVALID_SPEC', 'address');
  await rejects(e.svc.ensureTap('a', 'ct1n2', { ...as(2), mac: '01:00:5e:00:00:01' }), 'INVALID_SPEC', 'address');
  e.host.failAt = 'loadL2Filter';
  e.host.failCount = 1;
  await assert.rejects(e.svc.ensureTap('a', 'ct1n2', as(2)), /fake loadL2Filter failure/);
  assert.equal(e.host.taps.has('ct1n2'), false, 'no tap without its rules');
  assert.deepEqual(e.svc.boundTaps().map((t) => t.ifname), ['ct1n1']);
  // after a daemon restart: the rules of exactly the taps that are on the host
  const again = new NetworkService({ store: e.store, host: e.host, events: { publish: () => ({}) as never }, log: { info: () => undefined, warn: () => undefined } });
  await again.setTaps([{ ...as(1), ifname: 'ct1n1' }, { ...as(3), ifname: 'ct9n0' }]);
  assert.deepEqual(e.host.l2.map((t) => t.ifname), ['ct1n1']);
});

test('dnsmasq gets each NIC\'s fixed address; when they change it is restarted at the next tap', async () => {
  let hosts: AddressReservation[] = [{ mac: '52:54:00:00:00:0a', ip: '10.1.0.10' }];
  const e = fresh();
  e.svc.setReservations((n) => (n === 'a' ? hosts : []));
  await e.svc.create({ name: 'a', cidr: '10.1.0.0/24' });
  const leases = e.store.filesOf('a').leases;
  assert.deepEqual(e.host.dhcpHosts.get(leases), hosts);
  const pid = e.host.dhcp.get(leases);
  await e.svc.ensureTap('a', 'ct1n0', as(0));
  assert.equal(e.host.dhcp.get(leases), pid, 'the same reservations: adopted');
  // a reservation outside the range or not an address never reaches dnsmasq
  hosts = [...hosts, { mac: '52:54:00:00:00:0b', ip: '10.1.0.11' }, { mac: '52:54:00:00:00:0c', ip: '10.2.0.12' }, { mac: '52:54:00:00:00:0d', ip: '10.1.0.13,10.1.0.14' }];
  await e.svc.ensureTap('a', 'ct1n1', as(1));
  assert.notEqual(e.host.dhcp.get(leases), pid, 'restarted');
  assert.deepEqual(e.host.dhcpHosts.get(leases)?.map((h) => h.ip), ['10.1.0.10', '10.1.0.11']);
});

test('a hand-edited record is not believed', async () => {
  const e = fresh();
  await e.svc.create({ name: 'a', cidr: '10.1.0.0/24' });
  const file = join(e.store.pathOf('a'), 'network.json');
  const rec = e.svc.record('a');
  writeFileSync(file, JSON.stringify({ ...rec, bridge: 'eth0' }));
  await rejects(e.svc.get('a'), 'NETWORK_NOT_FOUND');
  writeFileSync(file, JSON.stringify({ ...rec, createdAt: 'whenever' }));
  assert.equal(e.svc.record('a').createdAt, 'whenever');
});
