import { test } from 'node:test';
import assert from 'node:assert/strict';
import { inRange, isReservation, pickAddress } from '../../../src/core/addresses.js';
import { isCorralError } from '../../../src/core/errors.js';
import { validateNetwork } from '../../../src/core/networks.js';

const NOW = '2025-01-01T00:00:00.000Z';
const lab = validateNetwork({ name: 'lab', kind: 'bridge', cidr: '10.10.0.0/24' }, NOW); // range 10.10.0.10 .. 10.10.0.254
const tiny = validateNetwork({ name: 'tiny', kind: 'bridge', cidr: '192.168.7.0/29' }, NOW); // range .2 .. .6

test('the lowest free address of the DHCP range; reserved ones skipped', () => {
  assert.equal(pickAddress(lab, new Set()), '10.10.0.10');
  assert.equal(pickAddress(lab, new Set(['10.10.0.10', '10.10.0.11', '10.10.0.13'])), '10.10.0.12');
  assert.equal(pickAddress(tiny, new Set(['192.168.7.2'])), '192.168.7.3');
});

test('an address another machine holds a live lease on is taken only when nothing else is free', () => {
  assert.equal(pickAddress(lab, new Set(['10.10.0.10']), new Set(['10.10.0.11', '10.10.0.12'])), '10.10.0.13');
  assert.equal(pickAddress(tiny, new Set(['192.168.7.2', '192.168.7.3', '192.168.7.4']), new Set(['192.168.7.5', '192.168.7.6'])), '192.168.7.5');
});

test('a full range: INSUFFICIENT_RESOURCES naming the network and its range', () => {
  const all = new Set(['2', '3', '4', '5', '6'].map((n) => `192.168.7.${n}`));
  assert.throws(() => pickAddress(tiny, all), (e: unknown) => isCorralError(e) && e.code === 'INSUFFICIENT_RESOURCES' && e.status === 409
    && e.details.network === 'tiny' && e.details.field === 'network' && /network "tiny" has no free address: all 5 of its range 192\.168\.7\.2-192\.168\.7\.6/.test(e.message));
  assert.throws(() => pickAddress(validateNetwork({ name: 'u', kind: 'user' }, NOW), new Set()), /no address range/);
});

test('inRange: in the DHCP range and written as Corral writes addresses', () => {
  assert.equal(inRange(lab, '10.10.0.10'), true);
  assert.equal(inRange(lab, '10.10.0.254'), true);
  for (const ip of ['10.10.0.9', '10.10.0.1', '10.10.0.255', '10.10.1.10', '10.10.0.010', '10.10.0.10 ', 'x']) assert.equal(inRange(lab, ip), false, ip);
});

test('isReservation: a unicast MAC in lower case and a dotted quad, nothing more', () => {
  assert.equal(isReservation({ mac: '52:54:00:12:34:56', ip: '10.10.0.10' }), true);
  for (const r of [
    { mac: '52:54:00:12:34:56', ip: '10.10.0.10,10.10.0.11' },
    { mac: '52:54:00:12:34:56', ip: '10.10.0.300' },
    { mac: '52:54:00:12:34:5', ip: '10.10.0.10' },
    { mac: '52:54:00:12:34:56\n', ip: '10.10.0.10' },
    { mac: '52:54:00:AB:34:56', ip: '10.10.0.10' },
    { mac: '33:33:00:00:00:01', ip: '10.10.0.10' },
  ]) assert.equal(isReservation(r), false, JSON.stringify(r));
});
