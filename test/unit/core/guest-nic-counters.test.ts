/**
 * The guest agent's interface counters (guest-network-get-interfaces' statistics): read defensively, and a NIC
 * matched to the guest interface by its MAC (the device itself when a VLAN or bridge interface carries it too).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { guestNicByMac, parseGuestNicCounters } from '../../../src/core/guest-nic-counters.js';

const stats = (rx: number, tx: number) => ({ 'rx-bytes': rx, 'rx-packets': Math.ceil(rx / 100), 'rx-errs': 0, 'rx-dropped': 0, 'tx-bytes': tx, 'tx-packets': Math.ceil(tx / 100), 'tx-errs': 0, 'tx-dropped': 0 });

test('the interfaces with a MAC and whole counters; anything else a guest says is left out', () => {
  const got = parseGuestNicCounters([
    { name: 'eth0', 'hardware-address': '52:54:00:AB:CD:01', statistics: stats(5000, 700) },
    { name: 'eth1', 'hardware-address': '52:54:00:ab:cd:02' }, // an older agent: no statistics
    { name: 'eth2', 'hardware-address': 'not-a-mac', statistics: stats(1, 1) },
    { name: 'eth3', 'hardware-address': '52:54:00:ab:cd:03', statistics: { ...stats(100, 100), 'rx-bytes': -1 } },
    { name: 'eth4', 'hardware-address': '52:54:00:ab:cd:04', statistics: { ...stats(100, 100), 'tx-bytes': '9' } },
    { 'hardware-address': '52:54:00:ab:cd:05', statistics: stats(1, 1) },
    null, 'eth6',
  ]);
  assert.deepEqual(got, [{ name: 'eth0', mac: '52:54:00:ab:cd:01', rxBytes: 5000, rxPackets: 50, txBytes: 700, txPackets: 7 }], 'MACs lower-cased as Corral stores them');
  assert.deepEqual(parseGuestNicCounters({ error: 'x' }), []);
  assert.equal(parseGuestNicCounters(Array.from({ length: 100 }, (_, i) => ({ name: `e${i}`, 'hardware-address': '52:54:00:00:00:01', statistics: stats(1, 1) }))).length, 64);
});

test('a NIC is the guest interface with its MAC; of several (a VLAN or bridge on it), the one with the most bytes', () => {
  const ifaces = parseGuestNicCounters([
    { name: 'lo', 'hardware-address': '00:00:00:00:00:00', statistics: stats(1, 1) },
    { name: 'eth0.10', 'hardware-address': '52:54:00:00:00:01', statistics: stats(300, 200) },
    { name: 'eth0', 'hardware-address': '52:54:00:00:00:01', statistics: stats(5000, 700) },
    { name: 'br0', 'hardware-address': '52:54:00:00:00:01', statistics: stats(4000, 600) },
    { name: 'eth1', 'hardware-address': '52:54:00:00:00:02', statistics: stats(10, 20) },
  ]);
  assert.equal(guestNicByMac(ifaces, '52:54:00:00:00:01')?.name, 'eth0');
  assert.equal(guestNicByMac(ifaces, '52:54:00:00:00:02')?.name, 'eth1');
  assert.equal(guestNicByMac(ifaces, '52:54:00:00:00:09'), undefined, 'a NIC the guest does not show (its driver not loaded)');
});
