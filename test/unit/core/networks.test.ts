import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isCorralError } from '../../../src/core/errors.js';
import {
  bridgeMac, bridgeName, checkConflicts, cidrsOverlap, DEFAULT_NETWORK_RECORD, formatIpv4, isNetworkRecord, parseCidr, parseCidrLoose,
  parseIpv4, prefixMask, subnetPlan, validateIfname, validateNetwork, type HostRoutes, type NetworkRecord,
} from '../../../src/core/networks.js';

const NOW = '2025-01-01T00:00:00.000Z';

function code(fn: () => unknown, c: string, field?: string): void {
  assert.throws(fn, (e: unknown) => isCorralError(e) && e.code === c && (field === undefined || e.details?.field === field), `expected ${c}${field ? ` on ${field}` : ''}`);
}

const NO_HOST: HostRoutes = { routes: [], addresses: [] };
const net = (name: string, cidr: string, nat = true): NetworkRecord => validateNetwork({ name, kind: 'bridge', cidr, nat }, NOW);

test('IPv4 parsing: dotted quads only, no leading zeros', () => {
  assert.equal(parseIpv4('10.0.0.1'), 0x0a000001);
  assert.equal(parseIpv4('255.255.255.255'), 0xffffffff);
  for (const bad of ['10.0.0', '10.0.0.256', '010.0.0.1', '10.0.0.1.2', ' 10.0.0.1', '10.0.0.-1', '1e1.0.0.1', '']) assert.equal(parseIpv4(bad), null, bad);
  assert.equal(formatIpv4(0xc0a80101), '192.168.1.1');
  assert.equal(prefixMask(24), '255.255.255.0');
  assert.equal(prefixMask(8), '255.0.0.0');
  assert.equal(prefixMask(29), '255.255.255.248');
  assert.equal(prefixMask(0), '0.0.0.0');
});

test('cidr: IPv4, /8../29, a network address, not reserved; INVALID_SPEC on field cidr', () => {
  assert.deepEqual(parseCidr('cidr', '10.10.0.0/24'), { network: 0x0a0a0000, prefix: 24 });
  assert.deepEqual(parseCidr('cidr', '10.0.0.0/8'), { network: 0x0a000000, prefix: 8 });
  assert.deepEqual(parseCidr('cidr', '192.168.7.8/29'), { network: 0xc0a80708, prefix: 29 });
  for (const bad of ['10.10.0.1/24', '10.10.0.0/30', '10.0.0.0/7', '10.10.0.0', 'fd00::/64', '10.10.0.0/024', '10.10.0.0/24,x', 'a.b.c.d/24', '', '127.0.0.0/8', '169.254.0.0/16', '224.0.0.0/24', '240.0.0.0/8', '0.0.0.0/8']) {
    code(() => parseCidr('cidr', bad), 'INVALID_SPEC', 'cidr');
  }
  code(() => parseCidr('cidr', 42), 'INVALID_SPEC', 'cidr');
  assert.throws(() => parseCidr('cidr', '10.10.0.1/24'), /use 10\.10\.0\.0\/24/);
});

test('gateway is the first address; DHCP from gateway+9 to the last host, or from the second address in a tiny subnet', () => {
  const p24 = subnetPlan(parseCidr('cidr', '10.10.0.0/24'));
  assert.deepEqual(p24, { gateway: '10.10.0.1', dhcp: { start: '10.10.0.10', end: '10.10.0.254' }, mask: '255.255.255.0', broadcast: '10.10.0.255' });
  assert.deepEqual(subnetPlan(parseCidr('cidr', '10.0.0.0/8')).dhcp, { start: '10.0.0.10', end: '10.255.255.254' });
  assert.deepEqual(subnetPlan(parseCidr('cidr', '192.168.1.16/28')).dhcp, { start: '192.168.1.26', end: '192.168.1.30' });
  const p29 = subnetPlan(parseCidr('cidr', '192.168.1.8/29'));
  assert.equal(p29.gateway, '192.168.1.9');
  assert.deepEqual(p29.dhcp, { start: '192.168.1.10', end: '192.168.1.14' });
});

test('validateNetwork: bridge needs cidr, nat defaults on; user refuses cidr and nat; default cannot be created', () => {
  const b = validateNetwork({ name: 'lab', cidr: '10.10.0.0/24' }, NOW);
  assert.deepEqual(b, {
    name: 'lab', kind: 'bridge', cidr: '10.10.0.0/24', gateway: '10.10.0.1', dhcp: { start: '10.10.0.10', end: '10.10.0.254' },
    nat: true, dns: true, bridge: 'crl-lab', builtin: false, createdAt: NOW,
  });
  const iso = validateNetwork({ name: 'iso', kind: 'bridge', cidr: '10.20.0.0/16', nat: false }, NOW);
  assert.equal(iso.nat, false);
  assert.equal(iso.dns, false);
  const u = validateNetwork({ name: 'slirp2', kind: 'user' }, NOW);
  assert.equal(u.kind, 'user');
  assert.equal(u.cidr, null);
  assert.equal(u.bridge, null);
  code(() => validateNetwork({ name: 'x', kind: 'bridge' }, NOW), 'INVALID_SPEC', 'cidr');
  code(() => validateNetwork({ name: 'x', kind: 'user', cidr: '10.1.0.0/24' }, NOW), 'INVALID_SPEC', 'cidr');
  code(() => validateNetwork({ name: 'x', kind: 'user', nat: false }, NOW), 'INVALID_SPEC', 'nat');
  code(() => validateNetwork({ name: 'x', kind: 'vlan', cidr: '10.1.0.0/24' }, NOW), 'INVALID_SPEC', 'kind');
  code(() => validateNetwork({ name: 'x', cidr: '10.1.0.0/24', nat: 'yes' }, NOW), 'INVALID_SPEC', 'nat');
  for (const bad of ['../x', 'A', 'a_b', 'a b', '-a', 'a'.repeat(64), '', 'x\ny']) code(() => validateNetwork({ name: bad, cidr: '10.1.0.0/24' }, NOW), 'INVALID_SPEC', 'name');
  code(() => validateNetwork({ name: 'default', kind: 'user' }, NOW), 'ALREADY_EXISTS', 'name');
  code(() => validateNetwork(null as never, NOW), 'INVALID_SPEC');
});

test('bridge names: crl-NAME up to 15 characters, else crl- and 11 hex digits of sha256(NAME)', () => {
  assert.equal(bridgeName('lab'), 'crl-lab');
  assert.equal(bridgeName('a2345678901'), 'crl-a2345678901');
  const long = bridgeName('a23456789012');
  assert.match(long, /^crl-[0-9a-f]{11}$/);
  assert.equal(long.length, 15);
  assert.equal(long, 'crl-d7f620730ab', 'stable: sha256("a23456789012") starts d7f620730ab');
  assert.notEqual(bridgeName('a-very-long-network-1'), bridgeName('a-very-long-network-2'));
  assert.match(bridgeMac('lab'), /^02(:[0-9a-f]{2}){5}$/);
  assert.equal(bridgeMac('lab'), bridgeMac('lab'));
  assert.notEqual(bridgeMac('lab'), bridgeMac('lab2'));
});

test('interface names: at most 15 of a-z, 0-9, -', () => {
  assert.equal(validateIfname('ifname', 'crl-t-web1-0'), 'crl-t-web1-0');
  for (const bad of ['', 'a'.repeat(16), 'Tap0', 'tap_0', '-tap', 'tap 0', 'tap/0', 'tap0\n', 42]) code(() => validateIfname('ifname', bad), 'INVALID_SPEC', 'ifname');
});

test('overlap: with other networks, host routes and host addresses; NETWORK_CONFLICT names what', () => {
  assert.ok(cidrsOverlap(parseCidrLoose('10.0.0.0/8')!, parseCidrLoose('10.10.0.0/24')!));
  assert.ok(!cidrsOverlap(parseCidrLoose('10.10.0.0/24')!, parseCidrLoose('10.10.1.0/24')!));
  const a = net('a', '10.10.0.0/24');
  checkConflicts(net('b', '10.10.1.0/24'), [a], NO_HOST);
  assert.throws(() => checkConflicts(net('b', '10.10.0.0/16'), [a], NO_HOST), (e: unknown) => isCorralError(e) && e.code === 'NETWORK_CONFLICT' && e.status === 409 && e.details.network === 'a' && e.details.field === 'cidr');
  assert.throws(() => checkConflicts(net('b', '10.10.0.128/25'), [a], NO_HOST), /overlaps network "a"/);
  const host: HostRoutes = {
    routes: [{ dst: 'default', dev: 'eth0' }, { dst: '192.168.0.0/16', dev: 'eth0' }, { dst: '172.16.5.7', dev: 'wg0' }, { dst: '10.10.0.0/24', dev: 'crl-a' }],
    addresses: [{ ifname: 'eth0', address: '192.168.1.20/24' }, { ifname: 'lo', address: '127.0.0.1/8' }, { ifname: 'dummy0', address: '10.99.0.5/32' }, { ifname: 'crl-a', address: '10.10.0.1/24' }],
  };
  checkConflicts(net('b', '10.20.0.0/24'), [a], host);
  assert.throws(() => checkConflicts(net('b', '192.168.4.0/24'), [a], host), /route to 192\.168\.0\.0\/16 \(dev eth0\)/);
  assert.throws(() => checkConflicts(net('b', '172.16.5.0/29'), [a], host), /route to 172\.16\.5\.7/);
  assert.throws(() => checkConflicts(net('b', '10.99.0.0/16'), [a], host), /address 10\.99\.0\.5\/32 on dummy0/);
  // routes and addresses on known networks' bridges are theirs: compared as networks, not as host routes
  assert.throws(() => checkConflicts(net('b', '10.10.0.0/24'), [a], host), /network "a"/);
  // this network's own bridge, left from an earlier try, does not count
  checkConflicts(net('c', '10.30.0.0/24'), [], { routes: [{ dst: '10.30.0.0/24', dev: 'crl-c' }], addresses: [{ ifname: 'crl-c', address: '10.30.0.1/24' }] });
  // but a stale Corral bridge of no known network does
  assert.throws(() => checkConflicts(net('c', '10.40.0.0/24'), [], { routes: [], addresses: [{ ifname: 'crl-old', address: '10.40.0.1/24' }] }), /crl-old/);
  // user networks have nothing to overlap
  checkConflicts(validateNetwork({ name: 'u', kind: 'user' }, NOW), [a], host);
});

test('two names with one bridge (hash prefix collision) conflict', () => {
  const a = { ...net('a', '10.10.0.0/24'), bridge: 'crl-same' };
  const b = { ...net('b', '10.20.0.0/24'), bridge: 'crl-same' };
  code(() => checkConflicts(b, [a], NO_HOST), 'NETWORK_CONFLICT', 'name');
});

test('records: whole ones pass, broken ones do not; default is built in', () => {
  assert.ok(isNetworkRecord(net('a', '10.10.0.0/24')));
  assert.ok(isNetworkRecord(validateNetwork({ name: 'u', kind: 'user' }, NOW)));
  assert.ok(isNetworkRecord(DEFAULT_NETWORK_RECORD));
  assert.equal(DEFAULT_NETWORK_RECORD.builtin, true);
  assert.ok(!isNetworkRecord({ ...net('a', '10.10.0.0/24'), dhcp: null }));
  assert.ok(!isNetworkRecord({ ...net('a', '10.10.0.0/24'), kind: 'vlan' }));
  assert.ok(!isNetworkRecord(null));
});
