import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Fastify from 'fastify';
import { deviceRoutes } from '../../../src/api/routes-devices.js';
import { isCorralError } from '../../../src/core/errors.js';
import { PassthroughService, type BindingsRecord } from '../../../src/services/passthrough.js';
import { copyPciFixture, fakeKernel } from './pci-fixture.js';

/** The passthrough service on a fake tree, with VF 0000:03:10.2 recorded as bound to an instance. */
function passthrough(): PassthroughService {
  const host = copyPciFixture();
  const dataDir = mkdtempSync(join(tmpdir(), 'corral-devapi-'));
  const uuid = '00000000-0000-4000-8000-000000000001';
  const rec: BindingsRecord = {
    uuid, name: 'vm', devices: [{
      kind: 'sriov-vf', id: 'net1', address: '0000:03:10.2', pf: '0000:03:00.0', vf: 1, mac: '52:54:00:aa:00:01', vlan: null,
      binding: { address: '0000:03:10.2', group: 31, members: [{ address: '0000:03:10.2', originalDriver: 'ixgbevf' }] }, complete: true,
    }],
  };
  mkdirSync(join(dataDir, 'instances', uuid), { recursive: true });
  writeFileSync(join(dataDir, 'instances', uuid, 'bindings.json'), JSON.stringify(rec));
  const instances = { addLaunchContributor: () => undefined, listRows: () => [] };
  return new PassthroughService({ instances: instances as never, dataDir, events: { publish: () => ({}) as never }, log: { warn: () => undefined }, sys: host.sys, dev: host.dev, ops: fakeKernel(host) });
}

test('GET /v1/host/devices and POST /v1/host/sriov on a fake tree, through the passthrough service', async () => {
  const app = Fastify();
  app.setErrorHandler((err: Error & { statusCode?: number }, _req, reply) => {
    if (isCorralError(err)) void reply.status(err.status).send(err.toJSON());
    else void reply.status(err.statusCode ?? 500).send({ error: { code: 'INVALID_SPEC', message: err.message } });
  });
  await app.register(deviceRoutes({ passthrough: passthrough() }));
  const list = await app.inject({ method: 'GET', url: '/v1/host/devices' });
  assert.equal(list.statusCode, 200);
  assert.equal((list.json() as { devices: unknown[] }).devices.length, 9);
  const ok = await app.inject({ method: 'POST', url: '/v1/host/sriov', payload: { pf: '03:00.0', vfs: 2 } });
  assert.equal(ok.statusCode, 200);
  assert.deepEqual((ok.json() as { vfs: Array<{ address: string }> }).vfs.map((v) => v.address), ['0000:03:10.0', '0000:03:10.2']);
  const st = await app.inject({ method: 'GET', url: '/v1/host/sriov/03:00.0' });
  assert.equal(st.statusCode, 200);
  assert.deepEqual((st.json() as { vfs: Array<{ free: boolean }> }).vfs.map((v) => v.free), [true, false], 'a VF given to an instance is not free');
  const busy = await app.inject({ method: 'POST', url: '/v1/host/sriov', payload: { pf: '03:00.0', vfs: 1 } });
  assert.equal(busy.statusCode, 409, 'a VF given to an instance blocks the change');
  assert.equal((busy.json() as { error: { code: string } }).error.code, 'DEVICE_IN_USE');
  assert.equal((await app.inject({ method: 'GET', url: '/v1/host/sriov/04:00.1' })).statusCode, 400);
  const tooMany = await app.inject({ method: 'POST', url: '/v1/host/sriov', payload: { pf: '03:00.0', vfs: 9 } });
  assert.equal(tooMany.statusCode, 400);
  assert.equal((tooMany.json() as { error: { field: string } }).error.field, 'vfs');
  const absent = await app.inject({ method: 'POST', url: '/v1/host/sriov', payload: { pf: '0000:09:00.0', vfs: 1 } });
  assert.equal(absent.statusCode, 404);
  assert.equal((absent.json() as { error: { code: string } }).error.code, 'PCI_DEVICE_NOT_FOUND');
  const bad = await app.inject({ method: 'POST', url: '/v1/host/sriov', payload: { pf: '../../x', vfs: 1 } });
  assert.equal(bad.statusCode, 400);
  await app.close();
});
