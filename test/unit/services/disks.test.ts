/**
 * The disk service's volume rules, against a fake instance service and real qemu-img: a volume with clones is
 * never attached nor started under them, a start's image-lock failure names the holder, and a resize of an
 * attached volume is qemu-img while the instance is stopped and QMP block_resize while it runs.
 */
import { QmpControl } from '../../../src/qemu/vm-control.js';
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CorralError } from '../../../src/core/errors.js';
import type { DiskBus } from '../../../src/core/disks.js';
import type { InstanceState } from '../../../src/core/state.js';
import { DiskService } from '../../../src/services/disks.js';
import type { InstanceHooks } from '../../../src/services/instance-hooks.js';
import type { InstanceService } from '../../../src/services/instances.js';
import { VolumeService } from '../../../src/services/volumes.js';
import type { EventBus } from '../../../src/services/events.js';
import type { InstanceRow } from '../../../src/store/store.js';
import { VolumeStore } from '../../../src/storage/volumes.js';
import { SKIP_NO_QEMU_IMG } from '../fixtures.js';
import { watchedVm } from './watched-vm.js';

const MiB = 1024 * 1024;
const skip = SKIP_NO_QEMU_IMG;

const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** The few InstanceService methods the disk service calls; QMP commands are recorded (block_resize done with qemu-img). */
class FakeInstances {
  rows = new Map<string, InstanceRow>();
  qmp: Array<[string, Record<string, unknown> | undefined]> = [];
  constructor(private volumes: VolumeStore) {}
  addLaunchContributor(): void {}
  withLock<T>(_name: string, fn: () => Promise<T>): Promise<T> {
    return fn();
  }
  rowOf(name: string): InstanceRow {
    const r = this.rows.get(name);
    if (!r) throw new CorralError('INSTANCE_NOT_FOUND', `instance "${name}" does not exist`);
    return r;
  }
  listRows(): InstanceRow[] {
    return [...this.rows.values()];
  }
  paths(): { runDir: string } {
    return { runDir: '/nonexistent/run' };
  }
  updateSpec(name: string, patch: Partial<InstanceRow['spec']>): void {
    Object.assign(this.rowOf(name).spec, patch);
  }
  live(name: string): { row: InstanceRow; pid: number; vm: QmpControl } {
    const row = this.rowOf(name);
    return {
      row, pid: 1, vm: new QmpControl({
        execute: async (cmd: string, args?: Record<string, unknown>) => {
          this.qmp.push([cmd, args]);
          if (cmd === 'block_resize') {
            const v = this.volumes.records().find((x) => `vol-${x.name}-fmt` === args?.['node-name'])!;
            execFileSync('qemu-img', ['resize', '-q', '-f', v.format, v.path, String(args?.size)]);
          }
          return {};
        },
      } as never),
    };
  }
  add(name: string, state: InstanceState, disks: Array<{ volume: string; bus: DiskBus }> = []): InstanceRow {
    const row = { name, uuid: `uuid-${name}`, state, spec: { disks, rootBus: 'virtio-blk', cpus: 1, maxMemory: null } } as unknown as InstanceRow;
    this.rows.set(name, row);
    for (const d of disks) this.volumes.setAttached(d.volume, name);
    return row;
  }
}

function setup(): { disks: DiskService; store: VolumeStore; inst: FakeInstances; hooks: InstanceHooks; events: Array<[string, Record<string, unknown>]> } {
  const dataDir = mkdtempSync(join(tmpdir(), 'corral-disks-'));
  dirs.push(dataDir);
  const store = new VolumeStore(dataDir);
  const events: Array<[string, Record<string, unknown>]> = [];
  const bus = { publish: (type: string, _i: string | null, data: Record<string, unknown> = {}) => events.push([type, data]) } as unknown as EventBus;
  const inst = new FakeInstances(store);
  const disks = new DiskService({ instances: inst as unknown as InstanceService, volumes: new VolumeService(store, bus), events: bus, log: { warn: () => undefined } });
  return { disks, store, inst, hooks: disks.hooks(), events };
}

async function refused(p: Promise<unknown> | (() => unknown), code: string): Promise<CorralError> {
  let caught: unknown;
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (e) {
    caught = e;
  }
  assert.ok(caught instanceof CorralError, `expected ${code}, got ${String(caught)}`);
  assert.equal(caught.code, code, caught.message);
  return caught;
}

test('a volume with clones cannot be attached: VOLUME_IN_USE naming the clones, nothing changes', { skip }, async () => {
  const { disks, store, inst } = setup();
  await store.create('base', '16M');
  await store.clone('base', 'copy');
  inst.add('vm1', 'stopped');
  const e = await refused(disks.attach('vm1', 'base'), 'VOLUME_IN_USE');
  assert.match(e.message, /volume "base" cannot be attached: clones copy depend on it/);
  assert.deepEqual(e.details.clones, ['copy']);
  assert.equal(store.record('base').attachedTo, null);
  assert.deepEqual(inst.rowOf('vm1').spec.disks, []);
  // the clone itself can be attached and written
  await disks.attach('vm1', 'copy');
  assert.equal(store.record('copy').attachedTo, 'vm1');
});

test('a start with an attached volume that has clones is refused, naming them', { skip }, async () => {
  const { store, inst, hooks } = setup();
  await store.create('base', '16M');
  await store.clone('base', 'copy'); // made before the volume was attached, as Corral allowed before
  const row = inst.add('vm1', 'starting', [{ volume: 'base', bus: 'virtio-blk' }]);
  const e = await refused(() => hooks.beforeLaunch!(row, 'tcg'), 'VOLUME_IN_USE');
  assert.match(e.message, /volume "base" cannot be written by instance "vm1": clones copy depend on it/);
  await store.remove('copy');
  await hooks.beforeLaunch!(row, 'tcg');
});

test('a start that QEMU fails on a volume\'s image lock is VOLUME_IN_USE naming the instance that holds it', { skip }, async () => {
  const { store, inst, hooks } = setup();
  await store.create('data', '16M');
  inst.add('holder', 'running', [{ volume: 'data', bus: 'virtio-blk' }]);
  const row = inst.add('vm2', 'starting', []);
  row.spec.disks.push({ volume: 'data', bus: 'virtio-blk' }); // a volume record attached to "holder" (made by hand)
  const qemu = new CorralError('QEMU_FAILED', `qemu-system-x86_64: -blockdev {"driver":"qcow2","node-name":"vol-data-fmt","file":{"driver":"file","filename":"/x"}}: Failed to get "write" lock`);
  const e = hooks.startFailed!(row, qemu);
  assert.ok(e instanceof CorralError && e.code === 'VOLUME_IN_USE', String(e));
  assert.match(e.message, /volume "data" cannot be opened by instance "vm2": its image is held by instance "holder"/);
  const other = new CorralError('QEMU_FAILED', 'something else');
  assert.equal(hooks.startFailed!(row, other), other);
});

test('resize of a volume attached to a stopped instance: qemu-img; to a running one: live, never shrinking', { skip }, async () => {
  const { disks, store, inst, events } = setup();
  await store.create('cold', '16M');
  await store.create('hot', '16M');
  inst.add('off', 'stopped', [{ volume: 'cold', bus: 'virtio-blk' }]);
  inst.add('on', 'running', [{ volume: 'hot', bus: 'virtio-blk' }]);

  assert.equal((await disks.resizeVolume('cold', '32M')).virtualSize, 32 * MiB);
  assert.equal((await disks.resizeVolume('cold', '8M', true)).virtualSize, 8 * MiB);
  assert.deepEqual(inst.qmp, []);

  const grown = await disks.resizeVolume('hot', '48M');
  assert.equal(grown.virtualSize, 48 * MiB);
  assert.deepEqual(inst.qmp, [['block_resize', { 'node-name': 'vol-hot-fmt', size: 48 * MiB }]]);
  assert.equal(store.record('hot').virtualSize, 48 * MiB);
  assert.deepEqual(events.at(-1), ['volume.resized', { volume: 'hot', size: 48 * MiB, live: true, instance: 'on' }]);

  const shrink = await refused(disks.resizeVolume('hot', '16M', true), 'VOLUME_IN_USE');
  assert.match(shrink.message, /cannot be shrunk while instance "on" is running: .*stop the instance first/);
  await refused(disks.resizeVolume('hot', '16M'), 'INVALID_SPEC');
  await refused(disks.resizeVolume('hot', '1000'), 'INVALID_SPEC');
  assert.equal(inst.qmp.length, 1);
  assert.equal(store.record('hot').virtualSize, 48 * MiB);
});

test('live resize on a bus that cannot tell the guest (ide, sata, vhost-user-blk) is refused; stopped, it is done', { skip }, async () => {
  const { disks, store, inst } = setup();
  await store.create('emu', '16M');
  await store.create('vu', '16M');
  inst.add('on', 'running', [{ volume: 'emu', bus: 'ide' }, { volume: 'vu', bus: 'vhost-user-blk' }]);
  const e = await refused(disks.resizeVolume('emu', '32M'), 'INVALID_SPEC');
  assert.match(e.message, /on ide, which cannot tell a running guest of a new size; stop instance "on" first/);
  const vu = await refused(disks.resizeVolume('vu', '32M'), 'INVALID_SPEC');
  assert.match(vu.message, /on vhost-user-blk, whose storage daemon cannot tell a running guest of a new size; stop instance "on" first/);
  assert.equal(vu.details.field, 'bus');
  assert.deepEqual(inst.qmp, []);
  assert.equal(store.record('vu').virtualSize, 16 * MiB);
  inst.rowOf('on').state = 'stopped';
  assert.equal((await disks.resizeVolume('vu', '32M')).virtualSize, 32 * MiB);
  assert.equal((await disks.resizeVolume('emu', '32M')).virtualSize, 32 * MiB);
});

test('a disk the guest releases after its detach timed out is detached then: back end, records, volume, event', { skip }, async () => {
  const { store, inst, hooks, events } = setup();
  await store.create('late', '16M');
  await store.create('kept', '16M');
  const row = inst.add('on', 'running', [{ volume: 'late', bus: 'virtio-blk' }, { volume: 'kept', bus: 'virtio-blk' }]);
  const w = watchedVm(['vol-late', 'vol-kept']);
  await hooks.launched!(row, w.vm as never);
  w.emit('vol-late');
  const until = Date.now() + 5000;
  while (!events.some(([t]) => t === 'instance.disk.detached') && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
  assert.deepEqual(events.at(-1), ['instance.disk.detached', { volume: 'late', live: true, finished: 'the guest released it after its detach timed out' }]);
  assert.deepEqual(row.spec.disks.map((x) => x.volume), ['kept']);
  assert.equal(store.record('late').attachedTo, null);
  assert.equal(store.record('kept').attachedTo, 'on');
  assert.deepEqual(w.sent, ['blockdev-del vol-late-fmt']);
});

test('a DEVICE_DELETED of a disk the records no longer name (a detach that went as asked) changes nothing', { skip }, async () => {
  const { store, inst, hooks, events } = setup();
  await store.create('kept', '16M');
  const row = inst.add('on', 'running', [{ volume: 'kept', bus: 'virtio-blk' }]);
  const w = watchedVm(['vol-gone', 'vol-kept']);
  await hooks.launched!(row, w.vm as never);
  w.emit('vol-gone');
  await new Promise((r) => setTimeout(r, 50));
  assert.deepEqual(events, []);
  assert.deepEqual(w.sent, []);
  assert.equal(store.record('kept').attachedTo, 'on');
});
