import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isCorralError } from '../../../src/core/errors.js';
import { isBackendRecord, validateBackend, validateSocketPath } from '../../../src/core/vhost-user.js';

const DATA = '/var/lib/corral';

function refused(value: unknown, why: RegExp): void {
  assert.throws(() => validateSocketPath('socket', value, DATA), (e: unknown) => isCorralError(e) && e.code === 'INVALID_SPEC' && e.details.field === 'socket' && why.test(e.message), String(value));
}

test('a socket path: absolute, normal form, no comma or control character, fits a unix socket', () => {
  assert.equal(validateSocketPath('socket', '/run/openvswitch/vhu0.sock', DATA), '/run/openvswitch/vhu0.sock');
  refused(undefined, /required/);
  refused('', /required/);
  refused('run/vhu.sock', /absolute path in normal form/);
  for (const p of ['/run/../etc/vhu.sock', '/run/./vhu.sock', '/run//vhu.sock', '/run/vhu/']) refused(p, /normal form/);
  refused('/run/a,server=on.sock', /comma or a control character/);
  refused('/run/vhu\n.sock', /comma or a control character/);
  refused(`/run/${'x'.repeat(110)}`, /at most 107/);
});

test('a socket in Corral\'s own data dir is refused: the daemon\'s, the monitors\', the storage daemons\' sockets', () => {
  refused(`${DATA}/run/0b7c9a52-6d3e-4a51-9a53-3f1d2b1e9c01/vu-data1.sock`, /inside Corral's data dir/);
  refused(`${DATA}/corral.sock`, /inside Corral's data dir/);
  assert.equal(validateSocketPath('socket', '/var/lib/corral-ovs/vhu.sock', `${DATA}/`), '/var/lib/corral-ovs/vhu.sock');
});

test('a registration: a DNS-label name and a socket; a stored record is believed only as validation makes it', () => {
  const b = validateBackend({ name: 'ovs0', socket: '/run/openvswitch/vhu0.sock' }, DATA, 'now');
  assert.deepEqual(b, { name: 'ovs0', socket: '/run/openvswitch/vhu0.sock', createdAt: 'now' });
  assert.throws(() => validateBackend({ name: 'OVS 0', socket: '/run/x.sock' }, DATA, 'now'), (e: unknown) => isCorralError(e) && e.details.field === 'name');
  assert.throws(() => validateBackend(null as never, DATA, 'now'), /must be an object/);
  assert.equal(isBackendRecord(b, DATA), true);
  assert.equal(isBackendRecord({ ...b, createdAt: null }, DATA), true);
  assert.equal(isBackendRecord({ ...b, socket: '/run/x,y.sock' }, DATA), false);
  assert.equal(isBackendRecord({ ...b, socket: `${DATA}/corral.sock` }, DATA), false);
  assert.equal(isBackendRecord({ ...b, extra: 1 }, DATA), false);
  assert.equal(isBackendRecord({ ...b, createdAt: 5 }, DATA), false);
  assert.equal(isBackendRecord('ovs0', DATA), false);
});
