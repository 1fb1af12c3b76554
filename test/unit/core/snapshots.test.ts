import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isCorralError } from '../../../src/core/errors.js';
import {
  assertMemorySnapshot, assertNameFree, assertSameMachine, diskRecords, machineDevices, machineMacs, diskSnapshotTransaction, parseDiskSnapshots, parseSnapshotFile,
  snapshotDeleteArgs, snapshotDisks, snapshotLoadArgs, snapshotMismatches, snapshotSaveArgs, validateSnapshotName, type DiskSnapshot, type SnapshotRecord,
} from '../../../src/core/snapshots.js';

function code(fn: () => unknown, c: string, re?: RegExp): void {
  assert.throws(fn, (e: unknown) => isCorralError(e) && e.code === c && (re === undefined || re.test(e.message)));
}

const vol = (volume: string, format: 'qcow2' | 'raw' = 'qcow2', bus: 'virtio-blk' | 'vhost-user-blk' = 'virtio-blk') => ({ volume, bus, path: `/v/${volume}/disk.${format}`, format });

test('names are DNS labels', () => {
  assert.equal(validateSnapshotName('before-upgrade'), 'before-upgrade');
  code(() => validateSnapshotName('Before_Upgrade'), 'INVALID_SPEC');
  code(() => validateSnapshotName(''), 'INVALID_SPEC');
  code(() => validateSnapshotName(7), 'INVALID_SPEC');
});

test('the disks: the root overlay then each qcow2 volume by its node; a raw or vhost-user volume refuses the snapshot naming it', () => {
  const disks = snapshotDisks('vm', '/i/root.qcow2', [vol('data')]);
  assert.deepEqual(disks.map((d) => [d.key, d.node, d.path]), [['root', 'disk0-fmt', '/i/root.qcow2'], ['data', 'vol-data-fmt', '/v/data/disk.qcow2']]);
  assert.throws(() => snapshotDisks('vm', '/r', [vol('data'), vol('scratch', 'raw')]), (e: unknown) => isCorralError(e) && e.code === 'UNSUPPORTED' && e.details.disk === 'scratch' && /raw/.test(e.message));
  assert.throws(() => snapshotDisks('vm', '/r', [vol('fast', 'qcow2', 'vhost-user-blk')]), (e: unknown) => isCorralError(e) && e.code === 'UNSUPPORTED' && e.details.disk === 'fast');
  code(() => assertMemorySnapshot('vm', [{ address: '0000:03:00.0' }]), 'UNSUPPORTED', /0000:03:00\.0/);
  assertMemorySnapshot('vm', []);
});

test('the QMP commands: one transaction over every node; the jobs name the root disk for the vmstate and every node as devices', () => {
  const disks = snapshotDisks('vm', '/r', [vol('data')]);
  assert.deepEqual(diskSnapshotTransaction(disks, 's1'), [
    { type: 'blockdev-snapshot-internal-sync', data: { device: 'disk0-fmt', name: 's1' } },
    { type: 'blockdev-snapshot-internal-sync', data: { device: 'vol-data-fmt', name: 's1' } },
  ]);
  assert.deepEqual(snapshotSaveArgs(disks, 's1'), { 'job-id': 'corral-snap-save', tag: 's1', vmstate: 'disk0-fmt', devices: ['disk0-fmt', 'vol-data-fmt'] });
  assert.deepEqual(snapshotLoadArgs(disks, 's1'), { 'job-id': 'corral-snap-load', tag: 's1', vmstate: 'disk0-fmt', devices: ['disk0-fmt', 'vol-data-fmt'] });
  assert.deepEqual(snapshotDeleteArgs(['vol-data-fmt'], 's1'), { 'job-id': 'corral-snap-delete', tag: 's1', devices: ['vol-data-fmt'] });
});

test('what qemu-img and QMP list is read into name, date and vmstate size; junk is skipped', () => {
  assert.deepEqual(parseDiskSnapshots([{ id: '1', name: 's1', 'vm-state-size': 5, 'date-sec': 10, 'date-nsec': 20 }, { id: '2' }, null]), [{ name: 's1', dateSec: 10, dateNsec: 20, vmStateSize: 5 }]);
  assert.deepEqual(parseDiskSnapshots(undefined), []);
});

const s1: DiskSnapshot = { name: 's1', dateSec: 100, dateNsec: 5, vmStateSize: 4096 };
const rec: SnapshotRecord = {
  name: 's1', createdAt: '2026-12-01T00:00:00.000Z', phase: 'ready', memory: true, frozen: false, instanceState: 'running', vmStateSize: 4096,
  disks: [{ disk: 'root', dateSec: 100, dateNsec: 5, vmStateSize: 4096 }, { disk: 'data', dateSec: 100, dateNsec: 5, vmStateSize: 0 }], cpus: 1, memoryBytes: 256,
};

test('a name taken by a record or by a disk\'s own internal snapshot is ALREADY_EXISTS', () => {
  code(() => assertNameFree('vm', 's1', [rec], new Map()), 'ALREADY_EXISTS', /already has a snapshot "s1"/);
  code(() => assertNameFree('vm', 's1', [], new Map([['data', [s1]]])), 'ALREADY_EXISTS', /volume "data"/);
  assertNameFree('vm', 's2', [rec], new Map([['root', [s1]]]));
});

test('the record of each disk comes from what it holds after the snapshot', () => {
  const disks = snapshotDisks('vm', '/r', [vol('data')]);
  assert.deepEqual(diskRecords('s1', disks, new Map([['root', [s1]], ['data', [{ ...s1, vmStateSize: 0 }]]])), rec.disks);
  code(() => diskRecords('s1', disks, new Map([['root', [s1]]])), 'INTERNAL', /volume "data"/);
});

test('a restore checks the record against the disks: lost, made again, vmstate changed, detached, attached since', () => {
  const ok = new Map([['root', [s1]], ['data', [{ ...s1, vmStateSize: 0 }]]]);
  assert.deepEqual(snapshotMismatches(rec, ['root', 'data'], ok), []);
  assert.deepEqual(snapshotMismatches(rec, ['root', 'data'], new Map([['root', []], ['data', [{ ...s1, vmStateSize: 0 }]]])), ['the root disk no longer holds it']);
  assert.match(snapshotMismatches(rec, ['root', 'data'], new Map([['root', [{ ...s1, dateSec: 200 }]], ['data', [{ ...s1, vmStateSize: 0 }]]]))[0]!, /root disk holds a snapshot of that name taken at another time/);
  assert.match(snapshotMismatches(rec, ['root', 'data'], new Map([['root', [{ ...s1, vmStateSize: 1 }]], ['data', [{ ...s1, vmStateSize: 0 }]]]))[0]!, /1 bytes of VM state, not 4096/);
  assert.deepEqual(snapshotMismatches(rec, ['root'], ok), ['volume "data" is no longer attached']);
  assert.deepEqual(snapshotMismatches(rec, ['root', 'data', 'logs'], ok), ['volume "logs" was attached after it was taken']);
});

test('a memory snapshot loads only into the same vCPUs, memory and devices; a disk-only one into any', () => {
  const shape = { cpus: 1, memory: 256, nics: [{ id: 'net0', model: 'virtio-net' }], hostdevs: [], agent: true };
  assertSameMachine('vm', rec, shape);
  code(() => assertSameMachine('vm', rec, { ...shape, cpus: 2 }), 'INVALID_STATE', /2 vCPUs now, 1 then/);
  assertSameMachine('vm', { ...rec, memory: false }, { ...shape, cpus: 2, memory: 512 });
  // the devices when taken: a NIC plugged since, or the display given since, would not load
  const taken = { ...rec, devices: machineDevices(shape) };
  assertSameMachine('vm', taken, shape);
  code(() => assertSameMachine('vm', taken, { ...shape, nics: [...shape.nics, { id: 'net1', model: 'e1000' }] }), 'INVALID_STATE', /NIC net1 \(e1000\) now, not then/);
  code(() => assertSameMachine('vm', taken, { ...shape, nics: [] }), 'INVALID_STATE', /NIC net0 \(virtio-net\) then, not now/);
  code(() => assertSameMachine('vm', taken, { ...shape, display: 'vnc' }), 'INVALID_STATE', /display vnc now, not then.*display none then, not now/);
  // a record from before the devices were kept is checked on vCPUs and memory only
  assertSameMachine('vm', rec, { ...shape, nics: [] });
});

test('a memory snapshot is not loaded into a NIC whose MAC changed since (a copy or an import): it would bring the old MAC back', () => {
  const shape = { cpus: 1, memory: 256, nics: [{ id: 'net0', model: 'virtio-net', mac: '52:54:00:AA:00:01' }], hostdevs: [], agent: true };
  const taken = { ...rec, devices: machineDevices(shape), macs: machineMacs(shape) };
  assert.deepEqual(taken.macs, { net0: '52:54:00:aa:00:01' });
  assertSameMachine('vm', taken, shape);
  const copy = { ...shape, nics: [{ ...shape.nics[0]!, mac: '52:54:00:bb:00:02' }] };
  code(() => assertSameMachine('vm', taken, copy), 'INVALID_STATE', /NIC net0 has MAC 52:54:00:bb:00:02 now, 52:54:00:aa:00:01 then/);
  // a disk-only snapshot holds no device state; a record from before the MACs were kept is not checked on them
  assertSameMachine('vm', { ...taken, memory: false }, copy);
  assertSameMachine('vm', { ...taken, macs: undefined }, copy);
});

test('snapshots.json: read back as written; anything else is CORRUPT_RECORD', () => {
  assert.deepEqual(parseSnapshotFile('vm', JSON.stringify({ snapshots: [rec] })), [rec]);
  code(() => parseSnapshotFile('vm', '{'), 'CORRUPT_RECORD');
  code(() => parseSnapshotFile('vm', JSON.stringify({ snapshots: [{ ...rec, phase: 'odd' }] })), 'CORRUPT_RECORD');
  code(() => parseSnapshotFile('vm', '[]'), 'CORRUPT_RECORD');
});
