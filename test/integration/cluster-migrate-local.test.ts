/**
 * Live migration of an instance on local disks (a root overlay on the host's local pool and an attached volume),
 * two agents in network namespaces of their own (netns-cluster.ts). The destination makes the disks new and empty,
 * exports them over NBD, the source mirrors them, then the RAM moves: the guest's counter goes on on a2, the same
 * boot, what it wrote to its root disk and its volume reads back there; its QEMU and files are on a2 only (a1's
 * overlay and volume are gone), and the cluster lists the volume on a2. Before that: a volume name taken on a2 is
 * NOT_MIGRATABLE with nothing moved, and a migration cancelled while its disks are mirrored leaves the guest running
 * on a1 with its files and nothing on a2. Then back to a1, which lacks the base image by then: the image is sent
 * first (a cancelled try removes the copy it brought), and the guest arrives on the same image.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { SKIP_NO_TINY, waitFor, type Daemon } from './harness.js';
import { NetnsCluster, bootId as bootIdOf, lastTick, startCounter } from './netns-cluster.js';

const skip = SKIP_NO_TINY;
const c = new NetnsCluster();
const ok = (args: string[]): Promise<any> => c.ok(args);
const bootId = (d: Daemon): Promise<string> => bootIdOf(d, 'l1');
let uuid = '';

/** The hosts whose QEMU runs the instance (its uuid is on QEMU's command line). */
const qemuHosts = (): string[] => c.qemus(uuid).map((q) => q.host).sort();
const overlayOf = (host: string): string => join(c.host(host).dataDir, 'instances', uuid, 'root.qcow2');
const volumeOf = (host: string): string => join(c.host(host).dataDir, 'volumes', 'data1');
const volumesOn = async (host: string): Promise<string[]> => (await c.host(host).ok('GET', '/v1/volumes')).volumes.map((v: any) => v.name);

/** Where nothing of l1 may be: no instance, no QEMU, no folder, no volume. */
async function nothingOf(host: string): Promise<void> {
  assert.equal((await c.host(host).api('GET', '/v1/instances/l1')).status, 404, `no l1 on ${host}`);
  assert.ok(!qemuHosts().includes(host), `no QEMU of l1 on ${host}`);
  assert.ok(!existsSync(join(c.host(host).dataDir, 'instances', uuid)), `no instance folder on ${host}`);
  assert.ok(!(await volumesOn(host)).includes('data1'), `no volume data1 on ${host}`);
}

const MARK_ROOT = 'corral-local-root-mark';
const MARK_VOL = 'corral-local-volume-mark';
/** reads that go to the disk, not to the guest's page cache (which moves with its RAM) */
const UNCACHED = 'sync; echo 3 > /proc/sys/vm/drop_caches';
const readVolume = (sector: number, bytes: number): string => `dd if=/dev/vdb bs=512 skip=${sector} count=1 2>/dev/null | head -c ${bytes}; echo`;

before(async () => {
  if (skip) return;
  await c.start(['a1', 'a2']);
  await ok(['create', 'l1', '--image', 'tiny', '--memory', '128M', '--host', 'a1']);
  await ok(['--target', 'a1', 'volume', 'create', 'data1', '--size', '64M']);
  await ok(['disk', 'attach', 'l1', 'data1']);
  await ok(['start', 'l1']);
  await c.host('a1').waitConsole('l1', /corral-tiny ready/);
  uuid = (await c.host('a1').ok('GET', '/v1/instances/l1')).uuid;
  // what the guest writes to both disks before the move (a file on its root filesystem, a sector of the volume);
  // 6 MiB of the volume is data a mirror must copy
  const a1 = c.host('a1');
  assert.match(await a1.guest('l1', `echo ${MARK_ROOT} > /mark-root; `
    + `echo ${MARK_VOL} > /tmp/v && dd if=/tmp/v of=/dev/vdb bs=512 seek=300 conv=fsync 2>/dev/null; `
    + 'dd if=/dev/urandom of=/dev/vdb bs=1M seek=8 count=6 conv=fsync 2>/dev/null; sync; echo written', 60_000), /written/);
});

after(async () => {
  await c.stop();
});

test('a volume name the destination has already is NOT_MIGRATABLE naming it; nothing moved', { skip, timeout: 120_000 }, async () => {
  await ok(['--target', 'a2', 'volume', 'create', 'data1', '--size', '16M']);
  const r = await c.ctl.cli(['migrate', 'l1', '--to', 'a2']);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /NOT_MIGRATABLE: host a2 already has a volume named "data1"/);
  assert.equal(await c.hostOf('l1'), 'a1');
  assert.deepEqual(qemuHosts(), ['a1']);
  assert.equal((await c.host('a2').api('GET', '/v1/instances/l1')).status, 404);
  await ok(['--target', 'a2', 'volume', 'delete', 'data1']);
  const a2 = (await ok(['pool', 'show'])).hosts.find((h: any) => h.name === 'a2');
  assert.equal(a2.allocated.memory, 0, 'no reservation is left on a2');
});

test('a migration cancelled while its disks are mirrored leaves the guest running on a1 with its files, nothing on a2', { skip, timeout: 180_000 }, async () => {
  // 1 MiB/s caps each mirror too: the volume's 6 MiB of data takes seconds, time enough to cancel
  const running = c.ctl.cli(['migrate', 'l1', '--to', 'a2', '--bandwidth', '1M/s']);
  let done: string | null = null;
  void running.then((r) => { done = r.stderr; });
  await waitFor(async () => (await c.host('a1').ok('GET', '/v1/instances/l1/migration/disks/mirror')).status === 'copying', 60_000, 'the mirrors to copy',
    () => `${done ?? 'still running'}; ${c.ctl.log.slice(-3000)}`);
  assert.deepEqual(qemuHosts(), ['a1', 'a2'], 'the incoming QEMU waits on a2');
  assert.ok(existsSync(overlayOf('a2')) && existsSync(volumeOf('a2')), 'a2 made the disks');
  await waitFor(async () => (await c.ctl.cli(['migrate', 'l1', '--cancel'])).code === 0, 30_000, 'the cancel to be taken');
  const r = await running;
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /MIGRATION_FAILED: .*was cancelled: it runs on host a1/);
  await waitFor(async () => qemuHosts().length === 1, 30_000, 'the incoming QEMU gone');
  assert.deepEqual(qemuHosts(), ['a1']);
  await waitFor(async () => !(await volumesOn('a2')).includes('data1'), 30_000, 'a2\'s new volume gone');
  await nothingOf('a2');
  assert.equal(await c.hostOf('l1'), 'a1');
  assert.equal((await c.host('a1').ok('GET', '/v1/instances/l1')).state, 'running');
  assert.ok(existsSync(overlayOf('a1')) && existsSync(volumeOf('a1')), 'a1 keeps its files');
  assert.match(await c.host('a1').guest('l1', 'echo alive'), /alive/);
  assert.equal((await c.host('a1').ok('GET', '/v1/instances/l1/migration/disks/mirror')).status, 'cancelled');
});

test('migrated a1 -> a2 with its disks: the counter goes on, the same boot, both disks read back; files and QEMU on a2 only', { skip, timeout: 240_000 }, async (t) => {
  const a1 = c.host('a1');
  const a2 = c.host('a2');
  const boot = await bootId(a1);
  await startCounter(a1, 'l1');
  await waitFor(async () => lastTick(await a1.consoleLog('l1')) >= 2, 30_000, 'the counter to run');
  // a writer: write N goes to the volume's sector 1000+N (fsync), then N to /tmp/n (RAM); every write the guest
  // counted before the switch-over must be on a2's disk, whatever was still being mirrored then
  await a1.guest('l1', 'sh -c \'n=0; while :; do n=$((n+1)); echo "w $n" | dd of=/dev/vdb bs=512 seek=$((1000+n)) conv=fsync 2>/dev/null; echo $n > /tmp/n; usleep 100000; done\' >/dev/null 2>&1 & echo $! > /tmp/wpid');
  await waitFor(async () => Number((/n=(\d+)/.exec(await a1.guest('l1', 'echo n=$(cat /tmp/n)')) ?? [])[1] ?? 0) >= 3, 30_000, 'the writer to write');

  const ticked = lastTick(await a1.consoleLog('l1'));
  const res = await ok(['migrate', 'l1', '--to', 'a2']);
  t.diagnostic(`figures: ${JSON.stringify(res)}`);
  assert.equal(res.from, 'a1');
  assert.equal(res.to, 'a2');
  for (const k of ['totalMs', 'downtimeMs', 'diskBytes', 'diskMs']) assert.equal(typeof res[k], 'number', `${k} in ${JSON.stringify(res)}`);
  assert.ok(res.diskBytes >= 64 * 1024 * 1024, `the volume's 64 MiB at least: ${res.diskBytes}`);
  assert.equal(res.imageBytes, undefined, 'a2 had the same base image: none was sent');

  assert.equal(await c.hostOf('l1'), 'a2');
  await waitFor(async () => qemuHosts().length === 1, 30_000, 'the source QEMU gone');
  assert.deepEqual(qemuHosts(), ['a2']);
  assert.equal((await a1.api('GET', '/v1/instances/l1')).status, 404, 'a1 forgot it');
  assert.equal((await a2.ok('GET', '/v1/instances/l1')).state, 'running');
  assert.ok(!existsSync(join(a1.dataDir, 'instances', uuid)), 'a1\'s overlay is gone');
  assert.ok(!existsSync(volumeOf('a1')), 'a1\'s volume is gone');
  assert.ok(existsSync(overlayOf('a2')) && existsSync(volumeOf('a2')), 'a2 has the overlay and the volume');
  const listed = (await ok(['volume', 'list'])).volumes.filter((v: any) => v.name === 'data1');
  assert.deepEqual(listed.map((v: any) => [v.host, v.attachedTo]), [['a2', 'l1']], 'the cluster lists the volume on a2, attached');

  assert.equal(await bootId(a2), boot, 'the same boot: it was never restarted');
  await waitFor(async () => lastTick(await a2.consoleLog('l1')) > ticked + 1, 30_000, 'the counter to go on on a2 (from where it was, not from 0)');
  const read = await a2.guest('l1', `${UNCACHED}; cat /mark-root; ${readVolume(300, MARK_VOL.length)}`);
  assert.match(read, new RegExp(`${MARK_ROOT}[\\s\\S]*${MARK_VOL}`));
  // the writer stopped on a2: every write it counted, before the switch-over and after, is on a2's volume
  const n = Number(/n=(\d+)/.exec(await a2.guest('l1', 'kill $(cat /tmp/wpid); usleep 300000; echo n=$(cat /tmp/n)'))?.[1]);
  assert.ok(n > 3, `the writer went on on a2: ${n}`);
  const written = await a2.guest('l1', `${UNCACHED}; dd if=/dev/vdb bs=512 skip=1001 count=${n} 2>/dev/null | tr -d '\\000' | tr '\\n' ' '; echo`, 60_000);
  const want = Array.from({ length: n }, (_, i) => `w ${i + 1}`).join(' ');
  assert.ok(written.includes(want), `writes 1..${n} on a2's volume: ${written.slice(-400)}`);
  const migrated = (await c.eventsOf('l1')).find((e) => e.type === 'instance.migrated');
  assert.equal(migrated?.data.diskBytes, res.diskBytes, 'the event has the disk figures');
});

test('back to a1, which lacks the base image now: it is sent first (a cancelled try removes its copy), then the guest arrives', { skip, timeout: 300_000 }, async (t) => {
  const a1 = c.host('a1');
  const a2 = c.host('a2');
  await a1.ok('DELETE', '/v1/images/tiny');
  assert.equal((await a1.api('GET', '/v1/images/tiny')).status, 404);
  const digest = (await a2.ok('GET', '/v1/instances/l1/migration/disks')).image.digest;

  // a try cancelled as soon as the image is on a1 (its incoming QEMU starting, its mirrors not begun or just begun:
  // either way they stop): the image it brought goes again
  const trying = c.ctl.cli(['migrate', 'l1', '--to', 'a1', '--bandwidth', '1M/s']);
  await waitFor(async () => (await a1.api('GET', '/v1/images/tiny')).status === 200, 60_000, 'the image on a1');
  assert.equal((await c.ctl.cli(['migrate', 'l1', '--cancel'])).code, 0);
  assert.match((await trying).stderr, /MIGRATION_FAILED: .*was cancelled: it runs on host a2/);
  await waitFor(async () => (await a1.api('GET', '/v1/images/tiny')).status === 404, 30_000, 'the image a1 received removed');
  await waitFor(async () => !qemuHosts().includes('a1'), 30_000, 'the incoming QEMU on a1 gone');
  await nothingOf('a1');
  assert.equal((await a2.ok('GET', '/v1/instances/l1')).state, 'running');

  const boot = await bootId(a2);
  const res = await ok(['migrate', 'l1', '--to', 'a1']);
  t.diagnostic(`figures: ${JSON.stringify(res)}`);
  assert.equal(res.to, 'a1');
  assert.ok(res.imageBytes > 0, `the image was sent: ${JSON.stringify(res)}`);
  assert.equal((await a1.ok('GET', '/v1/instances/l1/migration/disks')).image.digest, digest, 'a1 has the very image a2 has');
  assert.deepEqual(qemuHosts(), ['a1']);
  assert.equal(await bootId(a1), boot);
  assert.match(await a1.guest('l1', `${UNCACHED}; cat /mark-root; ${readVolume(300, MARK_VOL.length)}`), new RegExp(`${MARK_ROOT}[\\s\\S]*${MARK_VOL}`));
  assert.ok(!readdirSync(join(a2.dataDir, 'instances')).includes(uuid) && !existsSync(volumeOf('a2')), 'a2\'s files are gone');
});
