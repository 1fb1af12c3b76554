/**
 * Fault injection: the daemon is killed (SIGKILL, by itself, at a step named by CORRAL_CRASH_AT: see
 * src/host/crash-points.ts) in the middle of create, start, stop, disk attach and detach, delete, an instance snapshot,
 * volume create and image import; then it is started again and the invariants are checked: each operation either happened or did
 * not, no QEMU runs twice or unowned, every VM that ran still runs (with its console keeper, and no keeper of a
 * VM that ended), and no runtime dir, tap, staging folder,
 * instance folder, volume binding or file handed to corral-qemu is left that the records do not explain.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ConsoleSession, Daemon, SKIP_NO_TINY, useDaemon, waitFor } from './harness.js';
import { checkInvariants } from './invariants.js';

const skip = SKIP_NO_TINY;
const NS = `corral-crash-${process.pid}`;
let d: Daemon;
useDaemon((x) => { d = x; }, { netns: NS });

/** Run `op` against a daemon that kills itself at `step`, check it did, and start it again without the hook. */
async function crashAt(step: string, op: () => Promise<unknown>): Promise<void> {
  await d.stop();
  d.extraEnv.CORRAL_CRASH_AT = step;
  await d.start();
  const p = d.proc!;
  // not awaited: the crash cuts the connection, and a streamed reply cut midway may never end
  void op().catch(() => undefined);
  await waitFor(() => p.exitCode !== null || p.signalCode !== null, 60_000, `the daemon to reach ${step}`);
  assert.equal(p.signalCode, 'SIGKILL', `the daemon died at ${step} (it exited ${p.exitCode} instead): ${d.log.slice(-2000)}`);
  delete d.extraEnv.CORRAL_CRASH_AT;
  await d.start();
}

/** The invariants that hold after any crash and restart (invariants.ts). */
const invariants = (where: string): Promise<void> => checkInvariants(d, NS, where);

async function guestDisks(name: string): Promise<string> {
  const c = await ConsoleSession.open(d, name);
  try {
    return await c.run('sleep 1; echo "BLK=$(ls /sys/block | tr \'\\n\' ,)"', 30_000);
  } finally {
    await c.close();
  }
}

test('a daemon killed at any step of create, start, stop, attach, detach, delete and import leaves the old state or the new one', { skip, timeout: 900_000 }, async () => {
  await d.ok('POST', '/v1/networks', { name: 'crnet', kind: 'bridge', cidr: '10.94.0.0/24', nat: false }, 201);
  await invariants('at first');

  // create: before the row, nothing; after it, the instance
  await crashAt('create.overlay', () => d.api('POST', '/v1/instances', { name: 'c1', image: 'tiny', network: 'crnet' }));
  assert.equal((await d.api('GET', '/v1/instances/c1')).status, 404, 'a create cut before its row did not happen');
  await invariants('create.overlay');
  await crashAt('create.row', () => d.api('POST', '/v1/instances', { name: 'c2', image: 'tiny', network: 'crnet' }));
  assert.equal((await d.ok('GET', '/v1/instances/c2')).state, 'stopped', 'a create cut after its row happened');
  await invariants('create.row');

  // start: cut before QEMU, the start did not happen (its tap is gone); cut after, the VM is adopted, not doubled
  await crashAt('start.resources', () => d.api('POST', '/v1/instances/c2/start', {}));
  assert.equal((await d.ok('GET', '/v1/instances/c2')).state, 'stopped');
  await invariants('start.resources');
  await crashAt('start.spawned', () => d.api('POST', '/v1/instances/c2/start', {}));
  const c2 = await d.ok('GET', '/v1/instances/c2');
  assert.equal(c2.state, 'running', 'the VM spawned before the crash is adopted');
  await invariants('start.spawned');
  await d.waitConsole('c2', /corral-tiny ready/, 120_000);

  // stop: cut after `stopping`, before QEMU was asked: it still runs, the same process
  await crashAt('stop.requested', () => d.api('POST', '/v1/instances/c2/stop', { timeout: 30 }));
  assert.equal((await d.ok('GET', '/v1/instances/c2')).pid, c2.pid);
  assert.equal((await d.ok('GET', '/v1/instances/c2')).state, 'running');
  await invariants('stop.requested');

  // attach and detach on the running VM: cut between the records and QEMU, the new daemon finishes the change
  await d.ok('POST', '/v1/volumes', { name: 'cv1', size: '16M' }, 201);
  await crashAt('attach.recorded', () => d.api('POST', '/v1/instances/c2/disks', { volume: 'cv1' }));
  assert.deepEqual((await d.ok('GET', '/v1/instances/c2/disks')).disks.map((x: any) => x.volume), ['cv1']);
  await waitFor(async () => /BLK=.*vdb,/.test(await guestDisks('c2')), 60_000, 'the guest to see the disk whose hot-plug the new daemon finished');
  await invariants('attach.recorded');
  await crashAt('detach.recorded', () => d.api('DELETE', '/v1/instances/c2/disks/cv1'));
  assert.deepEqual((await d.ok('GET', '/v1/instances/c2/disks')).disks, []);
  await waitFor(async () => !/BLK=.*vdb,/.test(await guestDisks('c2')), 60_000, 'the guest to lose the disk whose unplug the new daemon finished');
  await invariants('detach.recorded');

  // delete: cut after the kill the row stays (a stopped instance); cut after the row, its files go at restart
  await crashAt('delete.killed', () => d.api('DELETE', '/v1/instances/c2?force=true'));
  assert.equal((await d.ok('GET', '/v1/instances/c2')).state, 'stopped');
  await invariants('delete.killed');

  // a snapshot of the stopped c2 cut after its disk holds it, before its record says ready: the restart deletes it
  await crashAt('snapshot.taken', () => d.api('POST', '/v1/instances/c2/snapshots', { name: 'cs1' }));
  assert.deepEqual((await d.ok('GET', '/v1/instances/c2/snapshots')).snapshots, []);
  const rootDisk = join(d.dataDir, 'instances', (await d.ok('GET', '/v1/instances/c2')).uuid, 'root.qcow2');
  assert.equal(JSON.parse(execFileSync('qemu-img', ['info', '-U', '--output=json', '-f', 'qcow2', rootDisk], { encoding: 'utf8' })).snapshots, undefined, 'the half-made snapshot left the disk');
  await invariants('snapshot.taken');
  await crashAt('delete.row', () => d.api('DELETE', '/v1/instances/c2'));
  assert.equal((await d.api('GET', '/v1/instances/c2')).status, 404);
  await invariants('delete.row');

  // volume create and image import: a staging folder of the dead daemon is swept, nothing is half there
  await crashAt('volume.built', () => d.api('POST', '/v1/volumes', { name: 'cv2', size: '16M' }));
  assert.equal((await d.api('GET', '/v1/volumes/cv2')).status, 404);
  await invariants('volume.built');
  const raw = join(d.dataDir, '..', `crash-import-${process.pid}.raw`);
  writeFileSync(raw, Buffer.alloc(1024 * 1024, 1));
  try {
    await crashAt('import.copied', () => d.api('POST', '/v1/images', { name: 'ci1', file: raw, format: 'raw' }));
  } finally {
    execFileSync('rm', ['-f', raw]);
  }
  assert.equal((await d.api('GET', '/v1/images/ci1')).status, 404);
  assert.equal(existsSync(join(d.dataDir, 'images', 'ci1')), false);
  await invariants('import.copied');
});
