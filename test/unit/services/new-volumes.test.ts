/**
 * The volumes a copy or an import makes (copies.ts NewVolumes, madeOrRemoved, VolumeStore.fromImage) with real
 * qcow2 files: made standalone with the source's data and attached to the new instance; a failure after them
 * leaves no volume, no staging folder and no instance folder; a daemon that died before the instance was recorded
 * drops them at its next start (dropUnrecorded), and keeps those of a recorded instance.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isCorralError } from '../../../src/core/errors.js';
import { NewVolumes, dropUnrecorded, madeOrRemoved } from '../../../src/services/copies.js';
import type { EventBus } from '../../../src/services/events.js';
import { VolumeService } from '../../../src/services/volumes.js';
import { VolumeStore } from '../../../src/storage/volumes.js';
import { SKIP_NO_QEMU_IMG } from '../fixtures.js';

const dirs: string[] = [];
after(() => { for (const d of dirs) rmSync(d, { recursive: true, force: true }); });

function setup(): { dataDir: string; volumes: VolumeService; src: string } {
  const dataDir = mkdtempSync(join(tmpdir(), 'corral-newvols-'));
  dirs.push(dataDir);
  const volumes = new VolumeService(new VolumeStore(dataDir), { publish: () => undefined } as unknown as EventBus);
  // a source image with a backing file and data written in both layers: the new volume must hold it all
  const base = join(dataDir, 'base.qcow2');
  execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', base, '8M']);
  execFileSync('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0x11 0 64k', base]);
  const src = join(dataDir, 'src.qcow2');
  execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', '-F', 'qcow2', '-b', base, src]);
  execFileSync('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0x22 1M 64k', src]);
  return { dataDir, volumes, src };
}

const visible = (dir: string): string[] => (existsSync(dir) ? readdirSync(dir).sort() : []);

test('a new volume is a standalone qcow2 with the source\'s data (its backing\'s too), attached to the new instance', { skip: SKIP_NO_QEMU_IMG }, async () => {
  const { volumes, src } = setup();
  const vols = new NewVolumes(volumes, 'web2', 'uuid-web2');
  await vols.make('web2-data', src, 'qcow2');
  const r = volumes.store.record('web2-data');
  assert.equal(r.attachedTo, 'web2');
  assert.equal(r.backing, null);
  const info = JSON.parse(execFileSync('qemu-img', ['info', '--output=json', '-f', 'qcow2', r.path], { encoding: 'utf8' }));
  assert.equal(info['backing-filename'], undefined);
  assert.equal(info['virtual-size'], 8 * 1024 * 1024);
  assert.match(execFileSync('qemu-img', ['compare', '-f', 'qcow2', '-F', 'qcow2', r.path, src], { encoding: 'utf8' }), /identical/);
  // a name taken: ALREADY_EXISTS, the volume there untouched
  await assert.rejects(vols.make('web2-data', src, 'qcow2'), (e: unknown) => isCorralError(e) && e.code === 'ALREADY_EXISTS');
  assert.equal(volumes.store.record('web2-data').attachedTo, 'web2');
});

test('a failure after volumes were made removes them with the instance\'s folder', { skip: SKIP_NO_QEMU_IMG }, async () => {
  const { dataDir, volumes, src } = setup();
  const dir = join(dataDir, 'instances', 'new-uuid');
  const vols = new NewVolumes(volumes, 'web3', 'uuid-web3');
  let released = false;
  await assert.rejects(madeOrRemoved(dir, vols, () => { released = true; }, async () => {
    mkdirSync(dir, { recursive: true });
    await vols.make('web3-a', src, 'qcow2');
    await vols.make('web3-b', src, 'qcow2');
    assert.deepEqual(volumes.list().map((v) => [v.name, v.attachedTo]), [['web3-a', 'web3'], ['web3-b', 'web3']]);
    throw new Error('the step after them failed');
  }), /the step after them failed/);
  assert.ok(released, 'the image claim is released');
  assert.deepEqual(volumes.list(), []);
  assert.deepEqual(visible(volumes.store.dir), [], 'no volume folder, no staging folder');
  assert.ok(!existsSync(dir));
});

test('a daemon that died between the volumes and the instance\'s record drops them at its next start; a recorded instance keeps its own', { skip: SKIP_NO_QEMU_IMG }, async () => {
  const { dataDir, volumes, src } = setup();
  const cut = new NewVolumes(volumes, 'web4', 'uuid-web4');
  await cut.make('web4-a', src, 'qcow2');
  const done = new NewVolumes(volumes, 'web5', 'uuid-web5');
  await done.make('web5-a', src, 'qcow2');
  assert.equal(volumes.store.record('web5-a').madeFor, 'uuid-web5');
  // web4's copy never recorded its instance (the daemon was killed there); web5's was recorded but not settled
  const again = new VolumeService(new VolumeStore(dataDir), { publish: () => undefined } as unknown as EventBus);
  const dropped = await dropUnrecorded(again, new Set(['uuid-web5', 'uuid-other']));
  assert.deepEqual(dropped, ['volume web4-a (made for an instance never recorded)']);
  assert.deepEqual(again.list().map((v) => [v.name, v.attachedTo, v.madeFor]), [['web5-a', 'web5', undefined]]);
  assert.deepEqual(visible(again.store.dir), ['web5-a']);
  // a settled volume carries no mark: nothing to drop, even with no instance recorded at all
  assert.deepEqual(await dropUnrecorded(again, new Set()), []);
  // and settle after a record removes the mark (what copy and import do)
  const ok = new NewVolumes(again, 'web6', 'uuid-web6');
  await ok.make('web6-a', src, 'qcow2');
  await ok.settle();
  assert.equal(again.store.record('web6-a').madeFor, undefined);
  assert.deepEqual(await dropUnrecorded(again, new Set()), []);
});
