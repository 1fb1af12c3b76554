/**
 * A host's side of local disks in a live migration (services/migration-disks.ts) with real files (qemu-img) and a
 * stand-in QEMU that records its QMP calls: the source's facts, its mirrors (an NBD client node and blockdev-mirror
 * per disk), a graceful completion only after the switch-over, a cancel that abandons them, and the guards (no RAM
 * migration before the mirrors are ready, no files forgotten before they completed); the destination's new disks
 * (the overlay over its image, the volume attached), its NBD exports, and what a given-up migration removes.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CorralError } from '../../../src/core/errors.js';
import type { InstanceSpec } from '../../../src/core/spec.js';
import { createImage, snapshotOp } from '../../../src/storage/volumes-img.js';
import { createOverlay, imgInfo } from '../../../src/qemu/img.js';
import { ImageStore } from '../../../src/storage/images.js';
import { VolumeStore } from '../../../src/storage/volumes.js';
import type { EventBus } from '../../../src/services/events.js';
import { ImageTransfer } from '../../../src/services/image-transfer.js';
import { MigrationDiskService } from '../../../src/services/migration-disks.js';
import { freePort } from '../../../src/services/migration.js';
import type { InstanceService } from '../../../src/services/instances.js';
import { VolumeService } from '../../../src/services/volumes.js';
import type { JobInfo } from '../../../src/vm/driver.js';
import { SKIP_NO_QEMU_IMG } from '../fixtures.js';

const skip = SKIP_NO_QEMU_IMG;
const dirs: string[] = [];
after(() => { for (const d of dirs) rmSync(d, { recursive: true, force: true }); });

/** A QEMU that records its calls; its mirrors are ready at once, a cancel concludes them (forced: with an error). */
class RecordingVm {
  calls: Array<[string, unknown]> = [];
  running = true;
  jobs = new Map<string, JobInfo>();
  private rec(c: string, a?: unknown): void { this.calls.push([c, a]); }
  async status() { return { status: this.running ? 'running' : 'postmigrate', running: this.running }; }
  async blockdevAdd(a: Record<string, unknown>) { this.rec('blockdev-add', a); }
  async blockdevDel(n: string) { this.rec('blockdev-del', n); }
  async blockdevMirror(a: Record<string, unknown>) {
    this.rec('blockdev-mirror', a);
    this.jobs.set(String(a['job-id']), { id: String(a['job-id']), type: 'mirror', status: 'ready', 'current-progress': 100, 'total-progress': 100 });
  }
  async blockJobCancel(id: string, force: boolean) {
    this.rec('block-job-cancel', { id, force });
    const j = this.jobs.get(id)!;
    j.status = 'concluded';
    if (force) j.error = 'Operation canceled';
  }
  async jobDismiss(id: string) { this.rec('job-dismiss', id); this.jobs.delete(id); }
  async queryJobs() { return [...this.jobs.values()].map((j) => ({ ...j })); }
  async nbdServerStart(a: Record<string, unknown>) { this.rec('nbd-server-start', a); }
  async blockExportAdd(a: Record<string, unknown>) { this.rec('block-export-add', a); }
  async nbdServerStop() { this.rec('nbd-server-stop'); }
  named(c: string): unknown[] { return this.calls.filter(([x]) => x === c).map(([, a]) => a); }
}

async function setup() {
  const dataDir = mkdtempSync(join(tmpdir(), 'corral-migdisks-'));
  dirs.push(dataDir);
  const bus = { publish: () => undefined } as unknown as EventBus;
  const images = new ImageStore(dataDir);
  const staging = images.stage('base');
  await createImage(join(staging, 'disk.qcow2'), 'qcow2', 32 * 1024 * 1024);
  images.commit(staging, { name: 'base', kind: 'disk', format: 'qcow2', disk: join(images.pathOf('base'), 'disk.qcow2'), virtualSize: 32 * 1024 * 1024, createdAt: 'now', source: 'import' });
  const volumes = new VolumeService(new VolumeStore(dataDir), bus);
  const vm = new RecordingVm();
  const uuid = '11111111-2222-3333-4444-555555555555';
  const spec = { image: 'base', rootPool: 'local', disks: [{ volume: 'data', bus: 'virtio-blk' }] } as unknown as InstanceSpec;
  const rows = new Map<string, { name: string; uuid: string; state: string; spec: InstanceSpec }>();
  const root = join(dataDir, 'instances', uuid, 'root.qcow2');
  const instances = {
    rowOf: (n: string) => {
      const r = rows.get(n);
      if (!r) throw new CorralError('INSTANCE_NOT_FOUND', `instance "${n}" not found`);
      return r;
    },
    paths: () => ({ disk: root }),
    live: (n: string) => ({ row: instances.rowOf(n), vm }),
  };
  const transfer = new ImageTransfer({ images, events: bus, removeImage: (n) => images.remove(n), log: { warn: () => undefined } });
  const svc = new MigrationDiskService({ dataDir, instances: instances as unknown as InstanceService, volumes, images, transfer, freePort, log: { warn: () => undefined }, pollMs: 1 });
  return { dataDir, images, volumes, vm, uuid, spec, rows, root, svc };
}

test('the source: facts, one NBD node and mirror per disk, ready; completed gracefully only after the switch-over; its volume goes once moved away', { skip }, async () => {
  const { images, volumes, vm, uuid, spec, rows, root, svc } = await setup();
  mkdirSync(join(root, '..'), { recursive: true });
  await createOverlay(root, images.get('base').disk, 'qcow2', 64 * 1024 * 1024);
  await volumes.create('data', '16M', 'raw');
  rows.set('g1', { name: 'g1', uuid, state: 'running', spec });

  const facts = await svc.facts('g1');
  assert.deepEqual(facts.disks.map((d) => [d.id, d.format, d.virtualSize, d.sync]), [['disk0', 'qcow2', 64 * 1024 * 1024, 'top'], ['vol-data', 'raw', 16 * 1024 * 1024, 'full']]);
  assert.equal(facts.image?.name, 'base');
  assert.match(facts.image?.digest ?? '', /^[0-9a-f]{64}$/);
  await assert.rejects(svc.assertReady('g1', spec), /mirrors are not started/);

  const f = await svc.mirror('g1', { host: '10.0.0.12', port: 4000, speed: 1024 });
  assert.equal(f.status, 'ready');
  assert.deepEqual(vm.named('blockdev-add').map((a) => (a as { server: unknown; export: string }).export), ['disk0-fmt', 'vol-data-fmt']);
  assert.deepEqual(vm.named('blockdev-mirror').map((a) => { const m = a as Record<string, unknown>; return [m.device, m.target, m.sync, m.speed]; }), [['disk0-fmt', 'mig-nbd0', 'top', 1024], ['vol-data-fmt', 'mig-nbd1', 'full', 1024]]);
  await svc.assertReady('g1', spec);
  await assert.rejects(svc.mirror('g1', { host: '10.0.0.12', port: 4000 }), /being mirrored already/);
  assert.throws(() => svc.assertCompleted('g1', spec), /were not completed on the destination/);

  await assert.rejects(svc.complete('g1'), /still runs here/);
  vm.running = false; // the switch-over: paused in postmigrate
  const done = await svc.complete('g1');
  assert.equal(done.bytes, 200);
  assert.deepEqual(vm.named('block-job-cancel'), [{ id: 'mig-job0', force: false }, { id: 'mig-job1', force: false }], 'a graceful end: the targets consistent');
  assert.deepEqual(vm.named('job-dismiss'), ['mig-job0', 'mig-job1']);
  assert.deepEqual(vm.named('blockdev-del'), ['mig-nbd0', 'mig-nbd1']);
  svc.assertCompleted('g1', spec);

  // (the instance's delete detaches its volumes, then the files go)
  volumes.store.setAttached('data', null);
  await svc.movedAway('g1', spec);
  assert.throws(() => volumes.store.record('data'), /does not exist/);
});

test('the source: a cancel abandons the mirrors (forced), or keeps them from starting; the status says cancelled and its files are never forgotten', { skip }, async () => {
  const { images, volumes, vm, uuid, spec, rows, root, svc } = await setup();
  mkdirSync(join(root, '..'), { recursive: true });
  await createOverlay(root, images.get('base').disk, 'qcow2', null);
  await volumes.create('data', '16M');
  rows.set('g1', { name: 'g1', uuid, state: 'running', spec });
  await svc.mirror('g1', { host: '10.0.0.12', port: 4000 });
  await svc.cancel('g1');
  assert.deepEqual(vm.named('block-job-cancel'), [{ id: 'mig-job0', force: true }, { id: 'mig-job1', force: true }]);
  assert.deepEqual(vm.named('blockdev-del'), ['mig-nbd0', 'mig-nbd1']);
  assert.equal((await svc.mirrorStatus('g1')).status, 'cancelled');
  await assert.rejects(svc.assertReady('g1', spec), /mirrors are cancelled/);
  assert.throws(() => svc.assertCompleted('g1', spec), /stay here/);
  // a cancel that comes after the migration asked for the facts, before its mirrors begin: they never do
  await svc.facts('g1');
  await svc.cancel('g1');
  const before = vm.calls.length;
  assert.equal((await svc.mirror('g1', { host: '10.0.0.12', port: 4000 })).status, 'cancelled');
  assert.equal(vm.calls.length, before, 'no NBD node, no mirror');
  // and the next migration starts afresh: its facts forget an old cancel
  await svc.facts('g1');
  assert.equal((await svc.mirror('g1', { host: '10.0.0.12', port: 4000 })).status, 'ready');
  await svc.cancel('g1');
  // a volume with internal snapshots: a mirror would not copy them
  await volumes.snapshot('data', 's1');
  await assert.rejects(svc.facts('g1'), (e: CorralError) => e.code === 'NOT_MIGRATABLE' && /volume data has internal snapshots/.test(e.message));
  // and a root disk with an instance snapshot in it, just the same
  await volumes.deleteSnapshot('data', 's1');
  await snapshotOp(root, '-c', 'before');
  await assert.rejects(svc.facts('g1'), (e: CorralError) => e.code === 'NOT_MIGRATABLE' && /root disk has internal snapshots/.test(e.message));
});

test('the destination: new disks (the overlay over its image, the volume attached), NBD exports; a given-up move removes them', { skip }, async () => {
  const { dataDir, images, volumes, vm, uuid, spec, rows, svc } = await setup();
  const disks = [{ id: 'disk0', format: 'qcow2', virtualSize: 64 * 1024 * 1024 }, { id: 'vol-data', format: 'qcow2', virtualSize: 8 * 1024 * 1024 }];
  const made = await svc.prepareIncoming('g1', uuid, spec, disks);
  assert.equal(made.length, 2);
  const root = join(dataDir, 'instances', uuid, 'root.qcow2');
  const info = await imgInfo(root, 'qcow2');
  assert.equal(info['virtual-size'], 64 * 1024 * 1024);
  assert.equal(info['full-backing-filename'], images.get('base').disk, 'the overlay is over this host\'s copy of the image');
  assert.deepEqual([volumes.store.record('data').virtualSize, volumes.store.record('data').attachedTo], [8 * 1024 * 1024, 'g1']);

  rows.set('g1', { name: 'g1', uuid, state: 'paused', spec });
  const nbd = await svc.exportDisks('g1', '127.0.0.1');
  assert.equal(nbd?.host, '127.0.0.1');
  assert.deepEqual(vm.named('nbd-server-start'), [{ addr: { type: 'inet', data: { host: '127.0.0.1', port: String(nbd?.port) } } }]);
  assert.deepEqual(vm.named('block-export-add').map((a) => (a as { 'node-name': string; writable: boolean }).writable && (a as { 'node-name': string })['node-name']), ['disk0-fmt', 'vol-data-fmt']);

  await svc.abortIncoming('g1');
  assert.ok(existsSync(root) && volumes.store.record('data'), 'nothing goes while the instance is recorded here (its delete comes first)');
  rows.delete('g1');
  await svc.abortIncoming('g1');
  assert.ok(!existsSync(join(dataDir, 'instances', uuid)), 'the folder is gone');
  assert.throws(() => volumes.store.record('data'), /does not exist/);
  assert.ok(images.tryGet('base'), 'the image it had stays');

  // a name taken here: refused before anything is made
  await volumes.create('data', '1M');
  await assert.rejects(svc.prepareIncoming('g2', '21111111-2222-3333-4444-555555555555', spec, disks), (e: CorralError) => e.code === 'NOT_MIGRATABLE' && /"data"/.test(e.message));
  assert.ok(!existsSync(join(dataDir, 'instances', '21111111-2222-3333-4444-555555555555')));
});

test('the destination: an arrived guest keeps its disks; the NBD server stops before it runs', { skip }, async () => {
  const { volumes, vm, uuid, spec, rows, svc } = await setup();
  await svc.prepareIncoming('g1', uuid, spec, [{ id: 'disk0', format: 'qcow2', virtualSize: 32 * 1024 * 1024 }, { id: 'vol-data', format: 'raw', virtualSize: 1024 * 1024 }]);
  rows.set('g1', { name: 'g1', uuid, state: 'paused', spec });
  await svc.exportDisks('g1', '127.0.0.1');
  await svc.arrived('g1');
  assert.deepEqual(vm.named('nbd-server-stop'), [undefined]);
  rows.delete('g1');
  await svc.abortIncoming('g1'); // a late abort after the arrival changes nothing
  assert.equal(volumes.store.record('data').format, 'raw');
});
