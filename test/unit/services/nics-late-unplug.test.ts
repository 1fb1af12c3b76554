/**
 * A NIC whose live detach timed out (a guest still booting) stays in the records; when the guest lets it go
 * later (DEVICE_DELETED), the NIC service finishes the detach: netdev, tap, records, event.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { normalizeSpec } from '../../../src/core/spec.js';
import type { InstanceNic } from '../../../src/core/spec-schema.js';
import { NicService, type NetworkDirectory } from '../../../src/services/nics.js';
import type { InstanceHooks } from '../../../src/services/instance-hooks.js';
import type { InstanceService } from '../../../src/services/instances.js';
import type { InstanceRow } from '../../../src/store/store.js';
import { watchedVm } from './watched-vm.js';

const MiB = 1024 * 1024;

function nic(id: string, mac: string): InstanceNic {
  return { id, model: 'virtio-net', network: 'br0', mac, queues: 1 };
}

function setup() {
  const spec = normalizeSpec({ image: 'tiny', cpus: 1, memory: 128 * MiB }, '52:54:00:00:00:01');
  spec.nics = [nic('net0', '52:54:00:00:00:01'), nic('net1', '52:54:00:00:00:02')];
  const now = new Date().toISOString();
  let row: InstanceRow = {
    uuid: 'u-1', name: 'on', spec, state: 'running', accel: 'tcg', pid: 1, pidStart: 1, mac: '52:54:00:00:00:01',
    createdAt: now, startedAt: now, lastError: null, updatedAt: now,
  };
  const instances = {
    setNicPlanner: () => undefined,
    addLaunchContributor: () => undefined,
    withLock: <T>(_name: string, fn: () => Promise<T>) => fn(),
    rowOf: () => row,
    updateSpec: (_name: string, patch: Partial<InstanceRow['spec']>) => { row = { ...row, spec: { ...row.spec, ...patch } }; return row; },
  } as unknown as InstanceService;
  const deleted: string[] = [];
  const networks = {
    kindOf: () => 'bridge',
    deleteTap: async (ifname: string) => { deleted.push(ifname); },
    leases: () => [],
  } as unknown as NetworkDirectory;
  const events: Array<[string, Record<string, unknown>]> = [];
  const svc = new NicService({
    instances, networks, events: { publish: (type: string, _i: string, data: Record<string, unknown>) => { events.push([type, data]); } } as never,
    log: { info: () => undefined, warn: () => undefined },
  });
  return { svc, hooks: svc.hooks() as Required<InstanceHooks>, row: () => row, deleted, events, setState: (s: InstanceRow['state']) => { row = { ...row, state: s }; } };
}

async function until(cond: () => boolean): Promise<void> {
  for (let i = 0; i < 500 && !cond(); i++) await new Promise((r) => setTimeout(r, 10));
}

test('a NIC the guest releases after its detach timed out is detached then: netdev, tap, records, event', async () => {
  const t = setup();
  const w = watchedVm(['net0', 'net1']);
  await t.hooks.launched(t.row(), w.vm as never);
  w.emit('net1');
  await until(() => t.events.length > 0);
  assert.deepEqual(t.events, [['instance.nic.detached', { id: 'net1', mac: '52:54:00:00:00:02', live: true, finished: 'the guest released it after its detach timed out' }]]);
  assert.deepEqual(t.row().spec.nics.map((n) => n.id), ['net0']);
  assert.equal(w.sent.length, 1);
  assert.match(w.sent[0]!, /^netdev_del /);
  assert.equal(t.deleted.length, 1, 'its tap is removed');
});

test('after adoption too; a NIC the records no longer name, or one still plugged in, changes nothing', async () => {
  const t = setup();
  const w = watchedVm(['net0', 'net1']);
  await t.hooks.adopted(t.row(), w.vm as never);
  w.emit('net7'); // a detach that went as asked: the records no longer name it
  w.emit('vol-x'); // not a NIC
  w.emit('net1', false); // plugged in again since
  const before = t.row();
  await new Promise((r) => setTimeout(r, 50));
  assert.deepEqual(t.events, []);
  assert.deepEqual(w.sent, []);
  assert.equal(t.row(), before);
});

test('a stopped instance keeps its records: the event of a VM that is gone changes nothing', async () => {
  const t = setup();
  const w = watchedVm(['net0', 'net1']);
  await t.hooks.launched(t.row(), w.vm as never);
  t.setState('stopped');
  w.emit('net1');
  await new Promise((r) => setTimeout(r, 50));
  assert.deepEqual(t.events, []);
  assert.deepEqual(t.row().spec.nics.map((n) => n.id), ['net0', 'net1']);
});
