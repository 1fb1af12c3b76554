/**
 * Copies, archives and images made from instances, with the tiny guest and the real CLI: a file written in a running
 * guest survives an export of the running guest, its deletion and an import (read back over the console); a flipped
 * byte or a truncated archive is refused and nothing is made; copies (linked and --full) and a published image boot
 * with the data, and a copy's writes are not the original's (nor the other way round); an instance with a volume is
 * exported running (its disks read in one transaction), copied (the volume copied whole, under the copy's name),
 * deleted with its volume and imported, and the volume's marker reads back in both guests, each volume its own.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { ConsoleSession, Daemon, SKIP_NO_TINY, useDaemon, waitFor } from './harness.js';

const skip = SKIP_NO_TINY;
let d: Daemon;
useDaemon((x) => { d = x; });

const TOKEN = `corral-copy-${process.pid}`;
let work = '';

function info(path: string): any {
  return JSON.parse(execFileSync('qemu-img', ['info', '--output=json', '-U', '-f', 'qcow2', path], { encoding: 'utf8' }));
}

function instanceDirs(): string[] {
  const dir = join(d.dataDir, 'instances');
  return existsSync(dir) ? readdirSync(dir).sort() : [];
}

async function boot(name: string): Promise<void> {
  await d.ok('POST', `/v1/instances/${name}/start`, {});
  await d.waitConsole(name, /corral-tiny ready/, 180_000);
}

/** An import that must be refused: the CLI fails with the code, and no instance, no folder, no file is left. */
async function refusedImport(file: string, code: RegExp, name?: string): Promise<void> {
  const rows = (await d.ok('GET', '/v1/instances')).instances.map((i: any) => i.name).sort();
  const dirs = instanceDirs();
  const r = await d.cli(['import', file, ...(name ? [name] : [])]);
  assert.notEqual(r.code, 0, r.stdout);
  assert.match(r.stderr, code);
  assert.deepEqual((await d.ok('GET', '/v1/instances')).instances.map((i: any) => i.name).sort(), rows);
  assert.deepEqual(instanceDirs(), dirs, 'no folder left by the refused import');
}

test('export a running guest, delete it, import the archive (booted below); a changed or cut archive, or a name taken, is refused and nothing is made', { skip, timeout: 600_000 }, async () => {
  work = mkdtempSync(join(tmpdir(), 'corral-copies-'));
  await d.ok('POST', '/v1/instances', { name: 'src', image: 'tiny' }, 201);
  await boot('src');
  const before = await d.ok('GET', '/v1/instances/src');
  await d.guest('src', `echo ${TOKEN} > /marker; sync; cat /marker`);

  const archive = join(work, 'src.tar');
  const ex = await d.cli(['export', 'src', archive, '--json']);
  assert.equal(ex.code, 0, ex.stderr);
  const out = JSON.parse(ex.stdout);
  assert.equal(out.manifest.consistency, 'backup', 'the running guest was read through a backup');
  assert.equal(statSync(archive).size, out.size);
  // a tar any tar reads, holding the manifest and the disk
  assert.deepEqual(execFileSync('tar', ['-tf', archive], { encoding: 'utf8' }).trim().split('\n'), ['manifest.json', 'disks/root.qcow2']);
  const manifest = JSON.parse(execFileSync('tar', ['-xOf', archive, 'manifest.json'], { encoding: 'utf8' }));
  assert.equal(manifest.image.name, 'tiny');
  assert.equal(manifest.files[0].sha256, out.manifest.files[0].sha256);
  // the guest ran on through the export; no backup file is left in its folder
  assert.equal((await d.ok('GET', '/v1/instances/src')).state, 'running');
  assert.deepEqual(readdirSync(join(d.dataDir, 'instances', before.uuid)).filter((f) => f.startsWith('backup-')), []);
  assert.deepEqual(existsSync(join(d.dataDir, 'exports')) ? readdirSync(join(d.dataDir, 'exports')) : [], [], 'the prepared archive went once downloaded');

  // the archive's disk stands alone: flattened (no backing file) and compressed
  execFileSync('tar', ['-xf', archive, '-C', work, 'disks/root.qcow2']);
  const disk = info(join(work, 'disks/root.qcow2'));
  assert.equal(disk['backing-filename'], undefined);

  await d.ok('DELETE', '/v1/instances/src?force=true');

  // a byte flipped in the middle of the disk: its sha256 differs from the manifest's
  const bytes = readFileSync(archive);
  const flipped = Buffer.from(bytes);
  const at = 1024 + Math.floor((bytes.length - 2048) / 2);
  flipped[at] = flipped[at]! ^ 0xff;
  writeFileSync(join(work, 'flipped.tar'), flipped);
  await refusedImport(join(work, 'flipped.tar'), /INVALID_ARCHIVE: .*sha256/, 'bad');
  writeFileSync(join(work, 'cut.tar'), bytes.subarray(0, Math.floor(bytes.length / 2)));
  await refusedImport(join(work, 'cut.tar'), /INVALID_ARCHIVE: .*truncated/, 'bad');

  const im = await d.cli(['import', archive, '--json']);
  assert.equal(im.code, 0, im.stderr);
  const imported = JSON.parse(im.stdout);
  assert.equal(imported.name, 'src');
  assert.equal(imported.state, 'stopped');
  assert.notEqual(imported.uuid, before.uuid);
  assert.notEqual(imported.mac, before.mac);
  // the same name again: refused, nothing made
  await refusedImport(archive, /ALREADY_EXISTS/);
  await refusedImport(archive, /ALREADY_EXISTS/, 'src');
  // its root disk is an overlay on this host's image again
  assert.equal(info(imported.disk.path)['backing-filename'], (await d.ok('GET', '/v1/images/tiny')).disk);
});

test('the imported instance, a linked copy and a published image boot with the data; a full copy equals it; a copy\'s writes are its own', { skip, timeout: 600_000 }, async () => {
  const src = await d.ok('GET', '/v1/instances/src');
  const cp = await d.cli(['copy', 'src', 'c1']);
  assert.equal(cp.code, 0, cp.stderr);
  assert.equal((await d.cli(['copy', 'src', 'c2', '--full'])).code, 0);
  assert.match((await d.cli(['copy', 'src', 'c1'])).stderr, /ALREADY_EXISTS/);
  const c1 = await d.ok('GET', '/v1/instances/c1');
  const c2 = await d.ok('GET', '/v1/instances/c2');
  assert.equal(c1.state, 'stopped');
  assert.notEqual(c1.uuid, src.uuid);
  assert.notEqual(c1.mac, src.mac);
  // linked: an overlay on the image, not on the source's overlay; full: no backing file at all
  assert.equal(info(c1.disk.path)['backing-filename'], (await d.ok('GET', '/v1/images/tiny')).disk);
  assert.equal(info(c2.disk.path)['backing-filename'], undefined);
  // the full copy holds what the source shows (the image's data and the source's writes)
  assert.match(execFileSync('qemu-img', ['compare', '-f', 'qcow2', '-F', 'qcow2', c2.disk.path, src.disk.path], { encoding: 'utf8' }), /identical/);

  const pub = await d.cli(['publish', 'src', 'golden', '--json']);
  assert.equal(pub.code, 0, pub.stderr);
  const golden = JSON.parse(pub.stdout);
  assert.equal(golden.source, 'publish');
  assert.match(golden.sha256, /^[0-9a-f]{64}$/);
  assert.equal(execFileSync('sha256sum', [golden.disk], { encoding: 'utf8' }).split(' ')[0], golden.sha256);
  assert.equal(info(golden.disk)['backing-filename'], undefined);
  assert.match((await d.cli(['publish', 'src', 'golden'])).stderr, /ALREADY_EXISTS/);
  await d.ok('POST', '/v1/instances', { name: 'p1', image: 'golden' }, 201);

  // all three at once: the copy has a disk of its own (two QEMUs cannot open one writable image)
  await Promise.all(['src', 'c1', 'p1'].map(boot));
  assert.match((await d.cli(['publish', 'src', 'other'])).stderr, /INVALID_STATE/, 'no image from a running instance');
  for (const name of ['src', 'c1', 'p1']) assert.match(await d.guest(name, 'cat /marker'), new RegExp(TOKEN), `${name} has the data`);
  const cs = await ConsoleSession.open(d, 'c1');
  try {
    await cs.run('echo copy > /c1only; sync');
  } finally {
    await cs.close();
  }
  await d.guest('src', 'echo source > /srconly; sync');
  assert.match(await d.guest('src', 'ls /c1only /srconly 2>&1'), /c1only: No such file/);
  assert.match(await d.guest('c1', 'ls /c1only /srconly 2>&1'), /srconly: No such file/);

  // a running instance is copied through a point-in-time backup: the copy has what was synced
  assert.equal((await d.cli(['copy', 'c1', 'c3'])).code, 0);
  const c3 = await d.ok('GET', '/v1/instances/c3');
  assert.equal(c3.state, 'stopped');
  assert.equal(info(c3.disk.path)['backing-filename'], (await d.ok('GET', '/v1/images/tiny')).disk);
});

const VOL_MARK = `corral-vol-${process.pid}`;
const readVol = `sync; echo 3 > /proc/sys/vm/drop_caches; dd if=/dev/vdb bs=512 skip=100 count=1 2>/dev/null | head -c ${VOL_MARK.length}; echo`;
const volumeNames = async (): Promise<string[]> => (await d.ok('GET', '/v1/volumes')).volumes.map((v: any) => v.name).sort();

test('an instance with a volume: exported running with the volume, copied (a volume of its own), deleted with the volume, imported; the marker reads back from the volume in both guests', { skip, timeout: 900_000 }, async () => {
  for (const name of ['c1', 'p1']) await d.ok('DELETE', `/v1/instances/${name}?force=true`);
  assert.equal((await d.cli(['volume', 'create', 'vdata', '--size', '64M'])).code, 0);
  const at = await d.cli(['disk', 'attach', 'src', 'vdata', '--bus', 'virtio-blk']);
  assert.equal(at.code, 0, at.stderr);
  await waitFor(async () => /vdb/.test(await d.guest('src', 'cat /proc/partitions')), 60_000, 'the hot-plugged volume shows in the guest');
  assert.match(await d.guest('src', `echo ${VOL_MARK} > /tmp/v && dd if=/tmp/v of=/dev/vdb bs=512 seek=100 conv=fsync 2>/dev/null; ${readVol}`), new RegExp(VOL_MARK));

  const archive = join(work, 'vol.tar');
  const ex = await d.cli(['export', 'src', archive, '--json']);
  assert.equal(ex.code, 0, ex.stderr);
  assert.equal(JSON.parse(ex.stdout).manifest.consistency, 'backup');
  assert.deepEqual(execFileSync('tar', ['-tf', archive], { encoding: 'utf8' }).trim().split('\n'), ['manifest.json', 'disks/root.qcow2', 'disks/volumes/vdata.qcow2']);
  const manifest = JSON.parse(execFileSync('tar', ['-xOf', archive, 'manifest.json'], { encoding: 'utf8' }));
  assert.deepEqual(manifest.files.slice(1).map((f: any) => [f.role, f.volume, f.bus, f.virtualSize]), [['volume', 'vdata', 'virtio-blk', 64 * 1024 * 1024]]);
  execFileSync('tar', ['-xf', archive, '-C', work, 'disks/volumes/vdata.qcow2']);
  assert.equal(info(join(work, 'disks/volumes/vdata.qcow2'))['backing-filename'], undefined, 'the volume in the archive stands alone');

  // a copy of the running instance: its volume is a whole copy under the copy's name, attached to it
  const cp = await d.cli(['copy', 'src', 'c4']);
  assert.equal(cp.code, 0, cp.stderr);
  const vol4 = await d.ok('GET', '/v1/volumes/c4-vdata');
  assert.equal(vol4.attachedTo, 'c4');
  assert.equal(info(vol4.path)['backing-filename'], undefined);
  assert.deepEqual((await d.ok('GET', '/v1/instances/c4')).spec.disks, [{ volume: 'c4-vdata', bus: 'virtio-blk' }]);
  // a copy whose volume's name is taken: refused before anything is made
  assert.equal((await d.cli(['volume', 'create', 'c5-vdata', '--size', '1M'])).code, 0);
  const dirs = instanceDirs();
  assert.match((await d.cli(['copy', 'src', 'c5'])).stderr, /ALREADY_EXISTS: volume "c5-vdata"/);
  assert.deepEqual(instanceDirs(), dirs);
  assert.deepEqual(await volumeNames(), ['c4-vdata', 'c5-vdata', 'vdata']);
  assert.equal((await d.cli(['volume', 'delete', 'c5-vdata'])).code, 0);

  await d.ok('DELETE', '/v1/instances/src?force=true');
  assert.equal((await d.cli(['volume', 'delete', 'vdata'])).code, 0);
  const im = await d.cli(['import', archive, '--json']);
  assert.equal(im.code, 0, im.stderr);
  const vol = await d.ok('GET', '/v1/volumes/vdata');
  assert.equal(vol.attachedTo, 'src');
  // the volume's name is taken now: another import is refused before anything is made
  const vols = await volumeNames();
  await refusedImport(archive, /ALREADY_EXISTS: volume "vdata"/, 'src2');
  assert.deepEqual(await volumeNames(), vols);

  await Promise.all(['src', 'c4'].map(boot));
  for (const name of ['src', 'c4']) assert.match(await d.guest(name, readVol), new RegExp(VOL_MARK), `${name}'s volume has the marker`);
  assert.match(await d.guest('src', 'cat /marker'), new RegExp(TOKEN));
  // the copy's volume is its own: what c4 writes to it, src's volume does not show
  await d.guest('c4', 'echo c4-own-data-xxxxxxxxxxxxxxxx | dd of=/dev/vdb bs=512 seek=100 conv=fsync 2>/dev/null; echo ok');
  assert.match(await d.guest('c4', readVol), /c4-own-data/);
  assert.match(await d.guest('src', readVol), new RegExp(VOL_MARK));
});

test('export --snapshots keeps the disks whole (gzipped) with their snapshots and the records: imported, the snapshot lists and restores the volume\'s data', { skip, timeout: 900_000 }, async () => {
  await d.ok('DELETE', '/v1/instances/c4?force=true');
  assert.equal((await d.cli(['volume', 'delete', 'c4-vdata'])).code, 0);
  const snap = await d.cli(['snapshot', 'create', 'src', 's1']);
  assert.equal(snap.code, 0, snap.stderr);
  // after the snapshot, the volume's marker is overwritten
  await d.guest('src', 'echo aftersnap | dd of=/dev/vdb bs=512 seek=100 conv=fsync 2>/dev/null; sync; echo ok');
  const archive = join(work, 'snap.tar');
  assert.match((await d.cli(['export', 'src', archive, '--snapshots'])).stderr, /INVALID_STATE: .*stop it first/);
  await d.ok('POST', '/v1/instances/src/kill', {});
  const ex = await d.cli(['export', 'src', archive, '--snapshots', '--json']);
  assert.equal(ex.code, 0, ex.stderr);
  const out = JSON.parse(ex.stdout);
  const src = await d.ok('GET', '/v1/instances/src');
  const diskFiles = statSync(src.disk.path).size + statSync((await d.ok('GET', '/v1/volumes/vdata')).path).size;
  console.log(`export --snapshots: archive ${statSync(archive).size} bytes; the disks' files ${diskFiles} bytes (allocated ${out.diskBytes})`);
  assert.ok(statSync(archive).size < diskFiles, 'the gzipped archive is smaller than its disks\' files');
  assert.deepEqual(out.manifest.snapshots.map((r: any) => [r.name, r.disks.map((x: any) => x.disk)]), [['s1', ['root', 'vdata']]]);
  // the disks in the archive (gzip-compressed) hold the snapshot; the root disk names no backing file
  for (const m of ['disks/root.qcow2.gz', 'disks/volumes/vdata.qcow2.gz']) {
    writeFileSync(join(work, m.replace(/^.*\//, '').replace(/\.gz$/, '')), gunzipSync(execFileSync('tar', ['-xOf', archive, m], { maxBuffer: 1 << 30 })));
  }
  const root = info(join(work, 'root.qcow2'));
  assert.equal(root['backing-filename'], undefined);
  assert.deepEqual(root.snapshots.map((x: any) => x.name), ['s1']);
  assert.deepEqual(info(join(work, 'vdata.qcow2')).snapshots.map((x: any) => x.name), ['s1']);

  await d.ok('DELETE', '/v1/instances/src?force=true');
  assert.equal((await d.cli(['volume', 'delete', 'vdata'])).code, 0);
  const im = await d.cli(['import', archive, '--json']);
  assert.equal(im.code, 0, im.stderr);
  const imported = JSON.parse(im.stdout);
  assert.equal(info(imported.disk.path)['backing-filename'], (await d.ok('GET', '/v1/images/tiny')).disk, 'the root layer is on this host\'s image again');
  const list = await d.cli(['snapshot', 'list', 'src', '--json']);
  assert.equal(list.code, 0, list.stderr);
  assert.deepEqual(JSON.parse(list.stdout).snapshots.map((x: any) => [x.name, x.disks]), [['s1', ['root', 'vdata']]]);
  // the volume holds what was written after the snapshot until the restore
  const vdata = (await d.ok('GET', '/v1/volumes/vdata')).path;
  assert.match(execFileSync('qemu-io', ['-r', '-U', '-f', 'qcow2', '-c', 'read -v 51200 16', vdata], { encoding: 'utf8' }), /aftersnap/);
  const rs = await d.cli(['snapshot', 'restore', 'src', 's1']);
  assert.equal(rs.code, 0, rs.stderr);
  assert.equal((await d.ok('GET', '/v1/instances/src')).state, 'stopped', 'a disk-only snapshot restores a stopped instance, left stopped');
  await boot('src');
  assert.match(await d.guest('src', readVol), new RegExp(VOL_MARK), 'the snapshot\'s volume data came through the archive');
  assert.match(await d.guest('src', 'cat /marker'), new RegExp(TOKEN));
  rmSync(work, { recursive: true, force: true });
});
