/** Fixed addresses of bridge NICs: reserved for new NICs, handed to dnsmasq, given to NICs stored without one. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isCorralError } from '../../../src/core/errors.js';
import { validateNetwork, type NetworkRecord } from '../../../src/core/networks.js';
import type { InstanceNic } from '../../../src/core/nics.js';
import type { InstanceSpec } from '../../../src/core/spec.js';
import type { Lease } from '../../../src/network/dnsmasq.js';
import type { InstanceRow } from '../../../src/store/store.js';
import { NicAddresses } from '../../../src/services/nic-addresses.js';

const NOW = '2025-01-01T00:00:00.000Z';
const NETS: Record<string, NetworkRecord> = {
  lab: validateNetwork({ name: 'lab', kind: 'bridge', cidr: '10.10.0.0/24' }, NOW),
  tiny: validateNetwork({ name: 'tiny', kind: 'bridge', cidr: '192.168.7.0/29' }, NOW), // .2 .. .6
  slirp: validateNetwork({ name: 'slirp', kind: 'user' }, NOW),
};

const nic = (id: string, network: string | null, mac: string, address?: string): InstanceNic => ({ id, model: 'virtio-net', network, mac, queues: 1, ...(address ? { address } : {}) });

function row(name: string, nics: InstanceNic[]): InstanceRow {
  return { uuid: `uuid-${name}`, name, spec: { nics } as InstanceSpec, state: 'stopped', accel: null, pid: null, pidStart: null, mac: nics[0]?.mac ?? '', createdAt: NOW, startedAt: null, lastError: null, updatedAt: NOW };
}

function world(rows: InstanceRow[], leases: Record<string, Lease[]> = {}, inFlight: InstanceNic[] = []): { a: NicAddresses; rows: InstanceRow[]; logs: string[] } {
  const logs: string[] = [];
  const a = new NicAddresses({
    instances: {
      listRows: () => rows,
      updateSpec: (name, patch) => {
        const i = rows.findIndex((r) => r.name === name);
        rows[i] = { ...rows[i]!, spec: { ...rows[i]!.spec, ...patch } };
        return rows[i]!;
      },
    },
    networks: { record: (n) => NETS[n]!, leases: (n) => leases[n] ?? [] },
    log: { info: (_o, m) => logs.push(m ?? ''), warn: (_o, m) => logs.push(`warn ${m ?? ''}`) },
    inFlight: () => inFlight,
    kindOf: (n) => NETS[n]?.kind ?? null,
  });
  return { a, rows, logs };
}

const lease = (mac: string, ip: string, expires: string | null = null): Lease => ({ mac, ip, hostname: null, expires });

test('reserve: the lowest address no NIC holds, stored or in flight, nor another machine leases', () => {
  const { a } = world(
    [row('web1', [nic('net0', 'lab', '52:54:00:00:00:01', '10.10.0.10')]), row('web2', [nic('net0', 'slirp', '52:54:00:00:00:02')])],
    { lab: [lease('52:54:00:99:99:99', '10.10.0.12'), lease('52:54:00:99:99:98', '10.10.0.13', '2000-01-01T00:00:00.000Z')] },
    [nic('net1', 'lab', '52:54:00:00:00:03', '10.10.0.11')],
  );
  // .12 is leased to a machine that is no NIC (until its lease runs out); .13's lease ran out long ago
  assert.equal(a.reserve('lab'), '10.10.0.13');
  assert.deepEqual(a.reservationsOn('lab'), [{ mac: '52:54:00:00:00:01', ip: '10.10.0.10' }, { mac: '52:54:00:00:00:03', ip: '10.10.0.11' }]);
  assert.deepEqual(a.reservationsOn('slirp'), []);
});

test('reserve: a full network is INSUFFICIENT_RESOURCES naming it', () => {
  const nics = [2, 3, 4, 5, 6].map((n) => nic(`net${n}`, 'tiny', `52:54:00:00:00:0${n}`, `192.168.7.${n}`));
  const { a } = world([row('full', nics)]);
  assert.throws(() => a.reserve('tiny'), (e: unknown) => isCorralError(e) && e.code === 'INSUFFICIENT_RESOURCES' && e.details.network === 'tiny');
});

test('ensure: a NIC stored without an address keeps the one its lease gave it when free, else the next free one', () => {
  const { a, rows, logs } = world(
    [
      row('old1', [nic('net0', 'lab', '52:54:00:00:00:01'), nic('net1', 'slirp', '52:54:00:00:00:0f')]),
      row('old2', [nic('net0', 'lab', '52:54:00:00:00:02')]),
      row('new1', [nic('net0', 'lab', '52:54:00:00:00:03', '10.10.0.10')]),
    ],
    { lab: [lease('52:54:00:00:00:01', '10.10.0.57'), lease('52:54:00:00:00:02', '10.10.0.10')] },
  );
  a.ensureAll();
  assert.equal(rows[0]!.spec.nics[0]!.address, '10.10.0.57', 'its lease, free');
  assert.equal(rows[0]!.spec.nics[1]!.address, undefined, 'a user-network NIC holds none');
  assert.equal(rows[1]!.spec.nics[0]!.address, '10.10.0.11', 'its lease is new1\'s address: the next free one');
  assert.equal(rows[2]!.spec.nics[0]!.address, '10.10.0.10', 'untouched');
  assert.equal(logs.length, 2);
  // nothing to do: nothing stored again
  const before = rows.slice();
  a.ensureAll();
  assert.ok(rows.every((r, i) => r === before[i]));
});

test('ensure: an address outside the network\'s range, or one another NIC holds too, is replaced', () => {
  const { a, rows } = world([
    row('a', [nic('net0', 'lab', '52:54:00:00:00:01', '10.10.0.10')]),
    row('b', [nic('net0', 'lab', '52:54:00:00:00:02', '10.10.0.10'), nic('net1', 'lab', '52:54:00:00:00:03', '10.20.0.10'), nic('net2', 'lab', '52:54:00:00:00:04', '10.10.0.11')]),
  ]);
  const b = a.ensure(rows[1]!);
  assert.deepEqual(b.spec.nics.map((n) => n.address), ['10.10.0.12', '10.10.0.13', '10.10.0.11']);
  assert.equal(rows[0]!.spec.nics[0]!.address, '10.10.0.10');
});

test('ensureAll: one instance that cannot get an address is logged; the others get theirs', () => {
  const full = [2, 3, 4, 5, 6].map((n) => nic(`net${n}`, 'tiny', `52:54:00:00:00:0${n}`, `192.168.7.${n}`));
  const { a, rows, logs } = world([row('full', full), row('late', [nic('net0', 'tiny', '52:54:00:00:00:10')]), row('ok', [nic('net0', 'lab', '52:54:00:00:00:11')])]);
  a.ensureAll();
  assert.equal(rows[1]!.spec.nics[0]!.address, undefined);
  assert.equal(rows[2]!.spec.nics[0]!.address, '10.10.0.10');
  assert.ok(logs.includes('warn cannot give a NIC a fixed address'));
});
