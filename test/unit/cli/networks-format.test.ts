import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DEFAULT_NETWORK_RECORD, validateNetwork } from '../../../src/core/networks.js';
import { networkDetails, networkTable, type NetworkJson } from '../../../src/cli/networks.js';
import { nicStatsTable, nicTable } from '../../../src/cli/nics.js';
import { vhostUserTable } from '../../../src/cli/vhost-user.js';

const NOW = '2025-01-01T00:00:00.000Z';
const lab = validateNetwork({ name: 'lab', cidr: '10.10.0.0/24' }, NOW);
const iso = validateNetwork({ name: 'iso', cidr: '10.20.0.0/29', nat: false }, NOW);

test('network list: a table, dashes for what user networks lack', () => {
  const lines = networkTable([DEFAULT_NETWORK_RECORD, lab, iso]).split('\n');
  assert.match(lines[0] ?? '', /^NAME\s+KIND\s+CIDR\s+GATEWAY\s+NAT\s+BRIDGE$/);
  assert.match(lines[1] ?? '', /^default\s+user\s+-\s+-\s+yes\s+-$/);
  assert.match(lines[2] ?? '', /^lab\s+bridge\s+10\.10\.0\.0\/24\s+10\.10\.0\.1\s+yes\s+crl-lab$/);
  assert.match(lines[3] ?? '', /^iso\s+bridge\s+10\.20\.0\.0\/29\s+10\.20\.0\.1\s+no\s+crl-iso$/);
});

test('network show: key: value lines, then the leases as a table', () => {
  const shown: NetworkJson = {
    ...lab,
    status: { bridge: { name: 'crl-lab', exists: true, up: true, addresses: ['10.10.0.1/24'], ports: ['tap1'] }, dnsmasq: { pid: 77, running: true } },
    leases: [{ mac: '52:54:00:aa:bb:01', ip: '10.10.0.23', hostname: null, expires: '2025-01-01T01:00:00.000Z' }],
  };
  const text = networkDetails(shown);
  assert.match(text, /^dhcp\.start:\s+10\.10\.0\.10$/m);
  assert.match(text, /^nat:\s+yes$/m);
  assert.match(text, /^status\.bridge\.up:\s+yes$/m);
  assert.match(text, /^status\.dnsmasq\.pid:\s+77$/m);
  assert.match(text, /^leases:\n\s+MAC\s+IP\s+HOSTNAME\s+EXPIRES\n\s+52:54:00:aa:bb:01\s+10\.10\.0\.23\s+-\s+2025-01-01T01:00:00\.000Z$/m);
  assert.match(networkDetails({ ...lab, leases: [] }), /^leases: -$/m);
  assert.doesNotMatch(networkDetails(lab), /leases/);
});

test('vhost-user list: name, socket, whether something listens, the NICs on it', () => {
  const lines = vhostUserTable([
    { name: 'ovs0', socket: '/run/openvswitch/vhu0.sock', createdAt: null, listening: true, usedBy: ['web1/net1', 'db1/net2'] },
    { name: 'spare', socket: '/run/spare.sock', createdAt: null, listening: false, usedBy: [] },
  ]).split('\n');
  assert.match(lines[0] ?? '', /^NAME\s+SOCKET\s+LISTENING\s+USED BY$/);
  assert.match(lines[1] ?? '', /^ovs0\s+\/run\/openvswitch\/vhu0\.sock\s+yes\s+web1\/net1 db1\/net2$/);
  assert.match(lines[2] ?? '', /^spare\s+\/run\/spare\.sock\s+no\s+-$/);
});

test('nic list: a bridge NIC shows its fixed address, a vhost-user NIC its back end', () => {
  const lines = nicTable([
    { id: 'net0', model: 'virtio-net', network: 'lab', mac: '52:54:00:00:00:01', queues: 1, address: '10.10.0.10', tap: 'ct0b7c9a52n0', ip: null },
    { id: 'net1', model: 'vhost-user-net', network: null, mac: '52:54:00:00:00:02', queues: 2, backend: 'ovs0', socket: '/run/vhu0.sock', tap: null, ip: null },
    { id: 'net2', model: 'vhost-user-net', network: null, mac: '52:54:00:00:00:03', queues: 1, socket: '/run/old.sock', tap: null, ip: null },
  ]).split('\n');
  assert.match(lines[1] ?? '', /^net0\s+virtio-net\s+52:54:00:00:00:01\s+1\s+10\.10\.0\.10\s+lab, tap ct0b7c9a52n0$/);
  assert.match(lines[2] ?? '', /^net1\s+vhost-user-net\s+52:54:00:00:00:02\s+2\s+-\s+vhost-user ovs0 \(\/run\/vhu0\.sock\)$/);
  assert.match(lines[3] ?? '', /^net2\s+vhost-user-net\s+52:54:00:00:00:03\s+1\s+-\s+socket \/run\/old\.sock$/);
});

test('corral stats\' NICs: counters as the guest sees them, who counted them, and no figures (not zeros) where nobody did', () => {
  const base = { model: 'virtio-net', rxPackets: 10, txPackets: 5 };
  const lines = nicStatsTable({ name: 'vm', nics: [
    { ...base, nic: 'net0', network: 'lab', mac: '52:54:00:00:00:01', source: 'tap', rxBytes: 2048, txBytes: 512 },
    { ...base, nic: 'net1', network: 'default', mac: '52:54:00:00:00:02', source: 'guest-agent', rxBytes: 3 * 2 ** 20, txBytes: 100 },
    { nic: 'net2', model: 'e1000', network: 'default', mac: '52:54:00:00:00:03', source: null, rxBytes: null, rxPackets: null, txBytes: null, txPackets: null },
  ] }).split('\n');
  assert.equal(lines[0], 'NICs (as the guest sees them)');
  assert.match(lines[1] ?? '', /^NIC\s+NETWORK\s+RX\s+RX PACKETS\s+TX\s+TX PACKETS\s+SOURCE$/);
  assert.match(lines[2] ?? '', /^net0\s+lab\s+2(\.0)? KiB\s+10\s+512 B\s+5\s+tap$/);
  assert.match(lines[3] ?? '', /^net1\s+default\s+3(\.0)? MiB\s+10\s+100 B\s+5\s+guest agent \(reported by the guest\)$/);
  assert.match(lines[4] ?? '', /^net2\s+default\s+-\s+-\s+-\s+-\s+no figures/);
  assert.equal(nicStatsTable({ name: 'vm', nics: [] }), 'NICs: none');
});
