/**
 * Instance snapshots on one tiny guest (its root disk is ext4, its qemu-ga answers): a memory snapshot restored
 * brings back a file deleted since and the guest's uptime goes on from the snapshot's (no new boot), into the same
 * QEMU while it runs and into a new one from stopped; a disk-only snapshot of the running guest is frozen by its
 * agent and thawed after; a restore needs --force while the guest runs; a name taken, an unknown snapshot and a
 * disk that lost the snapshot behind Corral's back are coded errors.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { Daemon, SKIP_NO_TINY, useDaemon, waitFor } from './harness.js';

const skip = SKIP_NO_TINY;
let d: Daemon;
useDaemon((x) => { d = x; });

const NAME = 'snap1';
const READY = /corral-tiny ready/g;

/** The guest's uptime in seconds (/proc/uptime's first field, read over the console). */
async function uptime(): Promise<number> {
  const out = await d.guest(NAME, 'cat /proc/uptime', 60_000);
  const m = /^(\d+\.\d+) /m.exec(out);
  assert.ok(m, `no uptime in ${JSON.stringify(out)}`);
  return Number(m[1]);
}

/** How many times the guest has said it booted, in its console log. */
async function boots(): Promise<number> {
  return (await d.consoleLog(NAME)).match(READY)?.length ?? 0;
}

/** The internal snapshots qemu-img finds in the root disk. */
async function onRootDisk(): Promise<string[]> {
  const { uuid } = await d.ok('GET', `/v1/instances/${NAME}`);
  const disk = join(d.dataDir, 'instances', uuid, 'root.qcow2');
  const info = JSON.parse(execFileSync('qemu-img', ['info', '-U', '--output=json', '-f', 'qcow2', disk], { encoding: 'utf8' }));
  return (info.snapshots ?? []).map((s: { name: string }) => s.name);
}

let upAtSnapshot = 0;

/** The one guest of this file, made by the first test that needs it (useDaemon's before hook runs beside this file's own). */
let made: Promise<void> | null = null;
function guestUp(): Promise<void> {
  made ??= makeGuest();
  return made;
}

async function makeGuest(): Promise<void> {
  const c = await d.cli(['create', NAME, '--image', 'tiny', '--memory', '192M', '--start']);
  assert.equal(c.code, 0, c.stderr);
  await d.waitConsole(NAME, READY, 180_000);
  let last = '';
  await waitFor(async () => {
    const r = await d.cli(['exec', NAME, '--', 'true']);
    last = `${r.code} ${r.stderr}`;
    return r.code === 0;
  }, 180_000, 'the guest agent to answer', () => last);
}

test('a memory snapshot restored into the running QEMU brings back a deleted file, and the guest\'s uptime goes on from the snapshot\'s', { skip, timeout: 600_000 }, async () => {
  await guestUp();
  await d.guest(NAME, 'echo kept-by-snapshot > /root/snapfile; sync', 60_000);
  upAtSnapshot = await uptime();
  const c = await d.cli(['snapshot', 'create', NAME, 's-mem', '--memory', '--json'], undefined, 300_000);
  assert.equal(c.code, 0, c.stderr);
  const made = JSON.parse(c.stdout);
  assert.equal(made.memory, true);
  assert.ok(made.vmStateSize > 1024 * 1024, `the guest's RAM is in the snapshot: ${made.vmStateSize} bytes`);
  assert.deepEqual(made.disks, ['root']);

  const { pid } = await d.ok('GET', `/v1/instances/${NAME}`);
  await d.guest(NAME, 'rm /root/snapfile; sync', 60_000);
  assert.doesNotMatch(await d.guest(NAME, 'ls /root', 60_000), /snapfile/);
  const bootsBefore = await boots();

  const refused = await d.api('POST', `/v1/instances/${NAME}/snapshots/s-mem/restore`, {});
  assert.equal(refused.status, 409, JSON.stringify(refused.body));
  assert.equal(refused.body.error.code, 'INVALID_STATE');
  assert.match(refused.body.error.message, /--force/);

  const r = await d.cli(['snapshot', 'restore', NAME, 's-mem', '--force', '--json'], undefined, 300_000);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(JSON.parse(r.stdout).state, 'running');
  const now = await d.ok('GET', `/v1/instances/${NAME}`);
  assert.equal(now.state, 'running');
  assert.equal(now.pid, pid, 'the same QEMU loaded the snapshot');
  assert.match(await d.guest(NAME, 'cat /root/snapfile', 60_000), /kept-by-snapshot/);
  const up = await uptime();
  assert.ok(up >= upAtSnapshot, `uptime ${up} s goes on from the snapshot's ${upAtSnapshot} s`);
  assert.equal(await boots(), bootsBefore, 'the guest did not boot again');
});

test('a disk-only snapshot of the running guest is frozen by its agent and thawed after; bad names and unknown snapshots are coded errors', { skip, timeout: 300_000 }, async () => {
  await guestUp();
  const c = await d.cli(['snapshot', 'create', NAME, 's-disk', '--json'], undefined, 120_000);
  assert.equal(c.code, 0, c.stderr);
  const made = JSON.parse(c.stdout);
  assert.deepEqual([made.memory, made.frozen, made.instanceState, made.vmStateSize], [false, true, 'running', 0]);
  // thawed: a write to the root filesystem goes through
  assert.match(await d.guest(NAME, 'echo thawed > /root/after; sync; cat /root/after', 60_000), /thawed/);
  const ev = (await d.events()).filter((e) => e.type === 'instance.snapshot-created' && e.instance === NAME).map((e) => [e.data.snapshot, e.data.memory, e.data.frozen]);
  assert.deepEqual(ev, [['s-mem', true, false], ['s-disk', false, true]]);

  const list = JSON.parse((await d.cli(['snapshot', 'list', NAME, '--json'])).stdout);
  assert.deepEqual(list.snapshots.map((s: { name: string }) => s.name), ['s-mem', 's-disk']);
  const text = await d.cli(['snapshot', 'list', NAME]);
  assert.match(text.stdout, /^s-disk\s+\S+\s+disks \(frozen\)\s+-\s+root$/m);
  assert.deepEqual((await onRootDisk()).sort(), ['s-disk', 's-mem']);

  const taken = await d.api('POST', `/v1/instances/${NAME}/snapshots`, { name: 's-mem' });
  assert.equal(taken.status, 409, JSON.stringify(taken.body));
  assert.equal(taken.body.error.code, 'ALREADY_EXISTS');
  const bad = await d.api('POST', `/v1/instances/${NAME}/snapshots`, { name: 'Bad_Name' });
  assert.equal(bad.body.error?.code, 'INVALID_SPEC');
  const unknown = await d.api('POST', `/v1/instances/${NAME}/snapshots/nope/restore`, { force: true });
  assert.equal(unknown.status, 404);
  assert.equal(unknown.body.error.code, 'SNAPSHOT_NOT_FOUND');
  const running = await d.api('POST', `/v1/instances/${NAME}/snapshots/s-disk/restore`, {});
  assert.equal(running.body.error?.code, 'INVALID_STATE');

  // --force: the running guest is discarded and the disk goes back; the instance is left stopped
  const r = await d.cli(['snapshot', 'restore', NAME, 's-disk', '--force', '--json'], undefined, 120_000);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(JSON.parse(r.stdout).state, 'stopped');
  assert.equal((await d.ok('GET', `/v1/instances/${NAME}`)).state, 'stopped');
});

test('a disk that lost a snapshot behind Corral\'s back refuses its restore; a memory snapshot restores a stopped instance into a running guest', { skip, timeout: 600_000 }, async () => {
  await guestUp();
  const { uuid } = await d.ok('GET', `/v1/instances/${NAME}`);
  const disk = join(d.dataDir, 'instances', uuid, 'root.qcow2');
  execFileSync('qemu-img', ['snapshot', '-d', 's-disk', disk]);
  const tampered = await d.api('POST', `/v1/instances/${NAME}/snapshots/s-disk/restore`, {});
  assert.equal(tampered.status, 409, JSON.stringify(tampered.body));
  assert.equal(tampered.body.error.code, 'SNAPSHOT_MISMATCH');
  assert.match(tampered.body.error.message, /root disk no longer holds it/);
  assert.deepEqual(await onRootDisk(), ['s-mem'], 'nothing was restored or removed');

  const bootsBefore = await boots();
  const r = await d.cli(['snapshot', 'restore', NAME, 's-mem', '--json'], undefined, 300_000);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(JSON.parse(r.stdout).state, 'running');
  assert.match(await d.guest(NAME, 'cat /root/snapfile; ls /root', 60_000), /kept-by-snapshot/);
  const up = await uptime();
  assert.ok(up >= upAtSnapshot, `uptime ${up} s goes on from the snapshot's ${upAtSnapshot} s`);
  assert.equal(await boots(), bootsBefore, 'the new QEMU did not boot the guest: it resumed it');

  // the tampered snapshot can still be deleted (from the disks that hold it: none)
  const del = await d.cli(['snapshot', 'delete', NAME, 's-disk']);
  assert.equal(del.code, 0, del.stderr);
  assert.deepEqual(JSON.parse((await d.cli(['snapshot', 'list', NAME, '--json'])).stdout).snapshots.map((s: { name: string }) => s.name), ['s-mem']);
  const gone = await d.api('DELETE', `/v1/instances/${NAME}/snapshots/s-disk`);
  assert.equal(gone.body.error?.code, 'SNAPSHOT_NOT_FOUND');
});
