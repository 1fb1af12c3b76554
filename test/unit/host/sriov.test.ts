import { test } from 'node:test';
import assert from 'node:assert/strict';
import { listVfs, pickFreeVf, setVfCount, setVfMac, sriovState, vfMacArgv } from '../../../src/host/sriov.js';
import { readPciDevice } from '../../../src/host/pci.js';
import { copyPciFixture, fakeKernel, thrown } from './pci-fixture.js';

test('setVfCount creates VFs that list with their addresses and drivers', () => {
  const host = copyPciFixture();
  const k = fakeKernel(host);
  const st = setVfCount(host.sys, '03:00.0', 2, { ops: k });
  assert.deepEqual(k.writes, [['bus/pci/devices/0000:03:00.0/sriov_numvfs', '2']]);
  assert.equal(st.numVfs, 2);
  assert.equal(st.totalVfs, 4);
  assert.equal(st.netdev, 'enp3s0f0');
  assert.deepEqual(st.vfs, [
    { index: 0, address: '0000:03:10.0', driver: 'ixgbevf', free: true },
    { index: 1, address: '0000:03:10.2', driver: 'ixgbevf', free: true },
  ]);
  assert.deepEqual(readPciDevice(host.sys, '03:10.2').sriov, { physfn: '0000:03:00.0' });
  assert.deepEqual(readPciDevice(host.sys, '03:00.0').sriov, { totalVfs: 4, numVfs: 2, vfs: ['0000:03:10.0', '0000:03:10.2'] });
  assert.deepEqual(listVfs(host.sys, '03:00.0', new Set(['0000:03:10.0'])).map((v) => v.free), [false, true]);
  assert.equal(pickFreeVf(host.sys, '03:00.0', new Set(['0000:03:10.0'])).address, '0000:03:10.2');
  assert.equal(thrown(() => pickFreeVf(host.sys, '03:00.0', new Set(['0000:03:10.0', '0000:03:10.2']))).code, 'INSUFFICIENT_RESOURCES');

  // non-zero -> non-zero writes 0 first (the fake kernel refuses otherwise, as the real one does)
  k.writes.length = 0;
  assert.equal(setVfCount(host.sys, '03:00.0', 4, { ops: k }).vfs.length, 4);
  assert.deepEqual(k.writes.map(([, v]) => v), ['0', '4']);
  // same count: nothing written
  k.writes.length = 0;
  setVfCount(host.sys, '03:00.0', 4, { ops: k });
  assert.deepEqual(k.writes, []);
  // a VF in use blocks a change
  assert.equal(thrown(() => setVfCount(host.sys, '03:00.0', 0, { ops: k, inUse: new Set(['0000:03:10.6']) })).code, 'DEVICE_IN_USE');
  assert.deepEqual(k.writes, []);
  assert.equal(setVfCount(host.sys, '03:00.0', 0, { ops: k }).vfs.length, 0);
});

test('refusals: above sriov_totalvfs, no SR-IOV, a VF as PF, bad count, absent device; nothing written', () => {
  const host = copyPciFixture();
  const k = fakeKernel(host);
  const e = thrown(() => setVfCount(host.sys, '03:00.0', 5, { ops: k }));
  assert.equal(e.code, 'INVALID_SPEC');
  assert.equal(e.details.field, 'vfs');
  assert.match(e.message, /at most 4 VFs.*asked for 5/);
  assert.equal(thrown(() => setVfCount(host.sys, '04:00.1', 1, { ops: k })).code, 'SRIOV_UNSUPPORTED');
  assert.equal(thrown(() => setVfCount(host.sys, '03:00.0', -1, { ops: k })).code, 'INVALID_SPEC');
  assert.equal(thrown(() => setVfCount(host.sys, '03:00.0', 1.5, { ops: k })).code, 'INVALID_SPEC');
  assert.equal(thrown(() => setVfCount(host.sys, '09:00.0', 1, { ops: k })).code, 'PCI_DEVICE_NOT_FOUND');
  assert.deepEqual(k.writes, []);
  setVfCount(host.sys, '03:00.0', 1, { ops: k });
  assert.equal(thrown(() => sriovState(host.sys, '03:10.0')).code, 'SRIOV_UNSUPPORTED');
});

test('VF MAC/VLAN: the ip argv, run through the injected exec', async () => {
  const host = copyPciFixture();
  assert.deepEqual(vfMacArgv('enp3s0f0', 1, 'AA:BB:CC:00:11:22', 100), ['ip', 'link', 'set', 'dev', 'enp3s0f0', 'vf', '1', 'mac', 'aa:bb:cc:00:11:22', 'vlan', '100']);
  assert.throws(() => vfMacArgv('enp3s0f0', 0, 'aa:bb:cc:00:11'), /mac/);
  assert.throws(() => vfMacArgv('enp3s0f0', 0, 'aa:bb:cc:00:11:22', 5000), /vlan/);
  assert.throws(() => vfMacArgv('x; rm -rf /', 0, 'aa:bb:cc:00:11:22'), /netdev/);
  const ran: string[][] = [];
  const argv = await setVfMac(host.sys, '03:00.0', 0, '52:54:00:12:34:56', { exec: async (a) => void ran.push(a) });
  assert.deepEqual(ran, [argv]);
  assert.deepEqual(argv, ['ip', 'link', 'set', 'dev', 'enp3s0f0', 'vf', '0', 'mac', '52:54:00:12:34:56']);
  await assert.rejects(setVfMac(host.sys, '03:00.0', 0, '52:54:00:12:34:56', { exec: async () => { throw new Error('RTNETLINK answers: Operation not supported'); } }), /not supported/);
});
