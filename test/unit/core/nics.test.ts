import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CorralError, invalidSpec, isCorralError } from '../../../src/core/errors.js';
import { forwardClashes, hostfwd, macFor, MAX_NICS, nextNicId, parseForward, planNic, tapName, type InstanceNic, type NicHost } from '../../../src/core/nics.js';

const UUID = '0b7c9a52-6d3e-4a51-9a53-3f1d2b1e9c01';
const host = (o: Partial<NicHost> = {}): NicHost => ({
  networkKind: (n) => {
    if (n === 'default') return 'user';
    if (n === 'lan') return 'bridge';
    throw Object.assign(new Error(`network "${n}" not found`), { code: 'NETWORK_NOT_FOUND' });
  },
  vhostNet: false,
  isSocket: (p) => p === '/run/vhu.sock',
  vhostUserBackend: (name) => {
    const socket = ({ ovs0: '/run/vhu.sock', idle: '/run/none.sock' } as Record<string, string>)[name];
    if (!socket) throw invalidSpec('backend', `no vhost-user back end "${name}"`);
    return { name, socket };
  },
  reserveAddress: () => '10.10.0.10',
  ...o,
});

function code(fn: () => unknown, c: string, field?: string): void {
  assert.throws(fn, (e: unknown) => isCorralError(e) && e.code === c && (field === undefined || e.details?.field === field), `expected ${c}`);
}

test('default NIC: virtio-net on the user network, MAC stable and in 52:54:00', () => {
  const nic = planNic(UUID, [], {}, host(), new Set());
  assert.deepEqual(nic, { id: 'net0', model: 'virtio-net', network: 'default', mac: macFor(UUID), queues: 1 });
  assert.match(nic.mac, /^52:54:00(:[0-9a-f]{2}){3}$/);
  assert.equal(planNic(UUID, [], {}, host(), new Set()).mac, nic.mac, 'the same instance gets the same MAC');
  const second = planNic(UUID, [nic], { model: 'e1000', network: 'lan' }, host(), new Set([nic.mac]));
  assert.equal(second.id, 'net1');
  assert.notEqual(second.mac, nic.mac);
});

test('MACs: a collision with one in use takes the next candidate', () => {
  const first = macFor(UUID, 1);
  const other = macFor(UUID, 1, new Set([first]));
  assert.notEqual(other, first);
  assert.match(other, /^52:54:00:/);
  code(() => planNic(UUID, [], { mac: first }, host(), new Set([first])), 'ALREADY_EXISTS', 'mac');
  code(() => planNic(UUID, [], { mac: '01:00:5e:00:00:01' }, host(), new Set()), 'INVALID_SPEC', 'mac');
  code(() => planNic(UUID, [], { mac: 'zz' }, host(), new Set()), 'INVALID_SPEC', 'mac');
  assert.equal(planNic(UUID, [], { mac: '52:54:00:AA:BB:CC' }, host(), new Set()).mac, '52:54:00:aa:bb:cc');
});

test('models: unknown refused; vhost-net needs a bridge network and /dev/vhost-net', () => {
  code(() => planNic(UUID, [], { model: 'ne2000' }, host(), new Set()), 'INVALID_SPEC', 'model');
  code(() => planNic(UUID, [], { model: 'vhost-net' }, host({ vhostNet: true }), new Set()), 'INVALID_SPEC', 'model');
  code(() => planNic(UUID, [], { model: 'vhost-net', network: 'lan' }, host(), new Set()), 'DEVICE_UNAVAILABLE', 'model');
  const v = planNic(UUID, [], { model: 'vhost-net', network: 'lan', queues: 4 }, host({ vhostNet: true }), new Set());
  assert.deepEqual([v.model, v.network, v.queues], ['vhost-net', 'lan', 4]);
  assert.throws(() => planNic(UUID, [], { network: 'nope' }, host(), new Set()), /not found/);
  code(() => planNic(UUID, [], { network: '../etc' }, host(), new Set()), 'INVALID_SPEC', 'network');
});

test('queues: only virtio models, only off user-mode networking, 1..16', () => {
  code(() => planNic(UUID, [], { model: 'e1000', network: 'lan', queues: 2 }, host(), new Set()), 'INVALID_SPEC', 'queues');
  code(() => planNic(UUID, [], { queues: 2 }, host(), new Set()), 'INVALID_SPEC', 'queues');
  code(() => planNic(UUID, [], { network: 'lan', queues: 17 }, host(), new Set()), 'INVALID_SPEC', 'queues');
  assert.equal(planNic(UUID, [], { network: 'lan', queues: 2 }, host(), new Set()).queues, 2);
});

test('vhost-user-net: a registered back end that listens, no network, no address', () => {
  const n = planNic(UUID, [], { model: 'vhost-user-net', backend: 'ovs0', queues: 2 }, host(), new Set());
  assert.deepEqual([n.network, n.backend, n.socket, n.queues, n.address], [null, 'ovs0', '/run/vhu.sock', 2, undefined]);
  code(() => planNic(UUID, [], { model: 'vhost-user-net', backend: 'idle' }, host(), new Set()), 'DEVICE_UNAVAILABLE', 'backend');
  code(() => planNic(UUID, [], { model: 'vhost-user-net', backend: 'nope' }, host(), new Set()), 'INVALID_SPEC', 'backend');
  code(() => planNic(UUID, [], { model: 'vhost-user-net' }, host(), new Set()), 'INVALID_SPEC', 'backend');
  code(() => planNic(UUID, [], { model: 'vhost-user-net', backend: '/run/vhu.sock' }, host(), new Set()), 'INVALID_SPEC', 'backend');
  code(() => planNic(UUID, [], { model: 'vhost-user-net', backend: 'ovs0', network: 'lan' }, host(), new Set()), 'INVALID_SPEC', 'network');
  code(() => planNic(UUID, [], { backend: 'ovs0' }, host(), new Set()), 'INVALID_SPEC', 'backend');
  // a socket path in the request is no field of it any more: the API's schema refuses it as unknown
  code(() => planNic(UUID, [], { model: 'vhost-user-net', ...({ socket: '/run/vhu.sock' } as object) }, host(), new Set()), 'INVALID_SPEC', 'backend');
});

test('a NIC on a bridge network gets a fixed address, reserved last; a user-network NIC none', () => {
  let asked = 0;
  const h = host({ reserveAddress: (network) => { asked++; assert.equal(network, 'lan'); return '10.10.0.11'; } });
  assert.equal(planNic(UUID, [], { network: 'lan' }, h, new Set()).address, '10.10.0.11');
  assert.equal(planNic(UUID, [], {}, h, new Set()).address, undefined);
  assert.equal(asked, 1);
  // a request refused for another reason reserves nothing
  code(() => planNic(UUID, [], { network: 'lan', forwards: ['tcp:2222:22'] }, h, new Set()), 'INVALID_SPEC', 'forwards');
  assert.equal(asked, 1);
  // none left: the reservation's own error comes through
  const full = host({ reserveAddress: () => { throw new CorralError('INSUFFICIENT_RESOURCES', 'network "lan" has no free address', { field: 'network' }); } });
  code(() => planNic(UUID, [], { network: 'lan' }, full, new Set()), 'INSUFFICIENT_RESOURCES', 'network');
});

test('sriov: a PF and an optional VLAN 1..4094', () => {
  const n = planNic(UUID, [], { model: 'sriov', pf: '0000:3b:00.0', vlan: 100 }, host(), new Set());
  assert.deepEqual([n.network, n.sriov], [null, { pf: '0000:3b:00.0', vlan: 100 }]);
  code(() => planNic(UUID, [], { model: 'sriov' }, host(), new Set()), 'INVALID_SPEC', 'pf');
  code(() => planNic(UUID, [], { model: 'sriov', pf: '0000:3b:00.0', vlan: 5000 }, host(), new Set()), 'INVALID_SPEC', 'vlan');
  code(() => planNic(UUID, [], { pf: '0000:3b:00.0' }, host(), new Set()), 'INVALID_SPEC', 'pf');
});

test('port forwards: parsed, only on user networks, clashes found', () => {
  assert.deepEqual(parseForward('udp:127.0.0.1:5353:53'), { proto: 'udp', hostAddr: '127.0.0.1', hostPort: 5353, guestPort: 53 });
  assert.equal(hostfwd(parseForward('udp:127.0.0.1:5353:53')), 'udp:127.0.0.1:5353-:53');
  for (const bad of ['22', 'tcp:0:22', 'tcp:70000:22', 'sctp:1:2', 'tcp:host:1:2', 'tcp:2222:2,hostfwd=x', 'tcp:256.0.0.1:2222:22', 'tcp::2222:22']) {
    code(() => parseForward(bad), 'INVALID_SPEC', 'forwards');
  }
  code(() => planNic(UUID, [], { network: 'lan', forwards: ['2222:22'] }, host(), new Set()), 'INVALID_SPEC', 'forwards');
  const a = planNic(UUID, [], { forwards: ['2222:22'] }, host(), new Set());
  const b = planNic(UUID, [], { forwards: ['tcp:127.0.0.1:2222:22'] }, host(), new Set());
  assert.match(forwardClashes(b, [{ instance: 'web1', nic: a }]) ?? '', /tcp port 2222 is already forwarded to instance "web1"/);
  assert.equal(forwardClashes(planNic(UUID, [], { forwards: ['udp:2222:22'] }, host(), new Set()), [{ instance: 'web1', nic: a }]), null);
});

test('port forwards listen on 127.0.0.1 unless the spec names an address', () => {
  assert.deepEqual(parseForward('tcp:2222:22'), { proto: 'tcp', hostAddr: '127.0.0.1', hostPort: 2222, guestPort: 22 });
  assert.deepEqual(parseForward('8080:80'), { proto: 'tcp', hostAddr: '127.0.0.1', hostPort: 8080, guestPort: 80 });
  assert.equal(hostfwd(parseForward('2222:22')), 'tcp:127.0.0.1:2222-:22');
  assert.deepEqual(parseForward('tcp:0.0.0.0:2222:22'), { proto: 'tcp', hostAddr: '0.0.0.0', hostPort: 2222, guestPort: 22 });
  assert.equal(hostfwd(parseForward('tcp:0.0.0.0:2222:22')), 'tcp:0.0.0.0:2222-:22');
  assert.equal(parseForward('udp:192.0.2.7:5353:53').hostAddr, '192.0.2.7');
  // every address (0.0.0.0, or empty in an older record) overlaps any one address; two single addresses do not
  const on = (addr: string): InstanceNic => ({ ...planNic(UUID, [], { forwards: ['2222:22'] }, host(), new Set()), forwards: [{ proto: 'tcp', hostAddr: addr, hostPort: 2222, guestPort: 22 }] });
  assert.match(forwardClashes(on('0.0.0.0'), [{ instance: 'w', nic: on('192.0.2.7') }]) ?? '', /already forwarded/);
  assert.match(forwardClashes(on('127.0.0.1'), [{ instance: 'w', nic: on('') }]) ?? '', /already forwarded/);
  assert.equal(forwardClashes(on('127.0.0.1'), [{ instance: 'w', nic: on('192.0.2.7') }]), null);
});

test('port forwards from a privileged host port are refused', () => {
  for (const spec of ['tcp:22:22', '80:80', 'udp:127.0.0.1:53:53', 'tcp:0.0.0.0:1023:22', 'tcp:1:2']) {
    assert.throws(() => parseForward(spec), (e: any) => e.code === 'INVALID_SPEC' && e.details?.field === 'forwards' && /privileged/.test(e.message), spec);
  }
  assert.equal(parseForward('tcp:1024:22').hostPort, 1024);
  assert.equal(parseForward('tcp:2222:80').guestPort, 80); // the guest side may be any port
  code(() => planNic(UUID, [], { forwards: ['2222:22', '443:443'] }, host(), new Set()), 'INVALID_SPEC', 'forwards');
});

test('ids and taps: next free id, tap names fit IFNAMSIZ', () => {
  const nics = [{ id: 'net0' }, { id: 'net2' }] as InstanceNic[];
  assert.equal(nextNicId(nics), 'net1');
  assert.equal(tapName(UUID, 'net1'), 'ct0b7c9a52n1');
  assert.ok(tapName(UUID, 'net7').length <= 15);
  let many: InstanceNic[] = [];
  for (let i = 0; i < MAX_NICS; i++) many = [...many, planNic(UUID, many, {}, host(), new Set(many.map((n) => n.mac)))];
  code(() => planNic(UUID, many, {}, host(), new Set()), 'INVALID_SPEC', 'nics');
});
