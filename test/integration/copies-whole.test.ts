/**
 * Copies and archives of what copies.test.ts leaves out, with the tiny guest and the real CLI: a raw volume (its
 * marker written by the running guest) is exported and copied with the running guest, and comes back raw, with the
 * marker, from the import and in the copy; snapshots travel in a gzip-compressed `export --snapshots` archive
 * (smaller than its disks' files; a byte flipped in it is refused) and in a `copy --snapshots`, and a restore on
 * either reads the data from before the snapshot, on the root disk and on a volume.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Daemon, SKIP_NO_TINY, useDaemon } from './harness.js';

const skip = SKIP_NO_TINY;
let d: Daemon;
useDaemon((x) => { d = x; });

const MARK = `corral-whole-${process.pid}`;
const readVol = `sync; echo 3 > /proc/sys/vm/drop_caches; dd if=/dev/vdb bs=512 skip=100 count=1 2>/dev/null | head -c ${MARK.length}; echo`;
const writeVol = (text: string): string => `echo ${text} > /tmp/v && dd if=/tmp/v of=/dev/vdb bs=512 seek=100 conv=fsync 2>/dev/null; ${readVol}`;
let work = '';
/** The test's scratch folder (made by whichever test runs first). */
const scratch = (): string => (work ||= mkdtempSync(join(tmpdir(), 'corral-whole-')));

/** qemu-img info of a file, its format probed (what the file is, not what Corral says). */
function probed(path: string): any {
  return JSON.parse(execFileSync('qemu-img', ['info', '--output=json', '-U', path], { encoding: 'utf8' }));
}

async function boot(name: string): Promise<void> {
  await d.ok('POST', `/v1/instances/${name}/start`, {});
  await d.waitConsole(name, /corral-tiny ready/, 180_000);
}

async function ok(args: string[]): Promise<string> {
  const r = await d.cli(args);
  assert.equal(r.code, 0, `corral ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

test('a raw volume: exported and copied with the running guest, imported raw again, the marker in both', { skip, timeout: 600_000 }, async () => {
  await d.ok('POST', '/v1/instances', { name: 'r', image: 'tiny' }, 201);
  await ok(['volume', 'create', 'rdata', '--size', '16M', '--format', 'raw']);
  await ok(['disk', 'attach', 'r', 'rdata', '--bus', 'virtio-blk']);
  await boot('r');
  assert.match(await d.guest('r', writeVol(MARK)), new RegExp(MARK));

  const archive = join(scratch(), 'raw.tar');
  const out = JSON.parse(await ok(['export', 'r', archive, '--json']));
  assert.equal(out.manifest.consistency, 'backup', 'read with the running guest, at one instant');
  const entry = out.manifest.files[1];
  assert.deepEqual([entry.name, entry.format, entry.volume, entry.bus, entry.virtualSize], ['disks/volumes/rdata.qcow2', 'raw', 'rdata', 'virtio-blk', 16 * 1024 * 1024]);
  execFileSync('tar', ['-xf', archive, '-C', work, 'disks/volumes/rdata.qcow2']);
  assert.equal(probed(join(work, 'disks/volumes/rdata.qcow2')).format, 'qcow2', 'the member is a (compressed) qcow2');

  // a copy of the running guest: its volume raw too
  await ok(['copy', 'r', 'rc']);
  const copied = await d.ok('GET', '/v1/volumes/rc-rdata');
  assert.equal(copied.format, 'raw');
  assert.equal(probed(copied.path).format, 'raw');
  assert.equal(copied.virtualSize, 16 * 1024 * 1024);

  await d.ok('DELETE', '/v1/instances/r?force=true');
  await ok(['volume', 'delete', 'rdata']);
  await ok(['import', archive]);
  const vol = await d.ok('GET', '/v1/volumes/rdata');
  assert.deepEqual([vol.format, vol.virtualSize, vol.attachedTo], ['raw', 16 * 1024 * 1024, 'r']);
  assert.equal(probed(vol.path).format, 'raw', 'the imported volume\'s file is raw');
  assert.deepEqual((await d.ok('GET', '/v1/instances/r')).spec.disks, [{ volume: 'rdata', bus: 'virtio-blk' }]);

  await Promise.all(['r', 'rc'].map(boot));
  for (const name of ['r', 'rc']) assert.match(await d.guest(name, readVol), new RegExp(MARK), `${name}'s raw volume has the marker`);
  for (const name of ['r', 'rc']) await d.ok('DELETE', `/v1/instances/${name}?force=true`);
});

test('snapshots travel in a compressed export --snapshots archive and in copy --snapshots; a restore on either reads the data from before the snapshot', { skip, timeout: 600_000 }, async () => {
  await d.ok('POST', '/v1/instances', { name: 's', image: 'tiny' }, 201);
  await ok(['volume', 'create', 'sdata', '--size', '16M']);
  await ok(['disk', 'attach', 's', 'sdata', '--bus', 'virtio-blk']);
  await boot('s');
  await d.guest('s', `echo ${MARK} > /marker; sync; ${writeVol(MARK)}`);
  await ok(['snapshot', 'create', 's', 's1']);
  await d.guest('s', `echo after > /marker; sync; ${writeVol('aftersnap')}`);
  assert.match((await d.cli(['copy', 's', 'sc', '--snapshots'])).stderr, /INVALID_STATE: .*stop it first/);
  await d.ok('POST', '/v1/instances/s/kill', {});
  assert.match((await d.cli(['copy', 's', 'sc', '--snapshots', '--full'])).stderr, /INVALID_SPEC/);

  // a plain copy carries none
  await ok(['copy', 's', 'plain']);
  assert.deepEqual(JSON.parse(await ok(['snapshot', 'list', 'plain', '--json'])).snapshots, []);
  await d.ok('DELETE', '/v1/instances/plain?force=true');
  await ok(['volume', 'delete', 'plain-sdata']);

  await ok(['copy', 's', 'sc', '--snapshots']);
  assert.deepEqual(JSON.parse(await ok(['snapshot', 'list', 'sc', '--json'])).snapshots.map((x: any) => [x.name, x.disks]), [['s1', ['root', 'sc-sdata']]]);
  assert.deepEqual(probed((await d.ok('GET', '/v1/volumes/sc-sdata')).path).snapshots.map((x: any) => x.name), ['s1']);
  await ok(['snapshot', 'restore', 'sc', 's1']);

  const src = await d.ok('GET', '/v1/instances/s');
  const diskFiles = statSync(src.disk.path).size + statSync((await d.ok('GET', '/v1/volumes/sdata')).path).size;
  const archive = join(scratch(), 'snap.tar');
  const out = JSON.parse(await ok(['export', 's', archive, '--snapshots', '--json']));
  const files = out.manifest.files;
  assert.deepEqual(files.map((f: any) => [f.name, f.compression]), [['disks/root.qcow2.gz', 'gzip'], ['disks/volumes/sdata.qcow2.gz', 'gzip']]);
  assert.deepEqual(execFileSync('tar', ['-tf', archive], { encoding: 'utf8' }).trim().split('\n'), ['manifest.json', ...files.map((f: any) => f.name)]);
  const size = statSync(archive).size;
  const unpacked = files.reduce((n: number, f: any) => n + f.unpackedSize, 0);
  console.log(`export --snapshots: archive ${size} bytes; the disks' files ${diskFiles} bytes (whole as archived ${unpacked}; allocated ${out.diskBytes})`);
  assert.ok(size < diskFiles, `the archive (${size} bytes) is smaller than its disks' files (${diskFiles} bytes)`);

  await d.ok('DELETE', '/v1/instances/s?force=true');
  await ok(['volume', 'delete', 'sdata']);
  // a byte flipped inside the compressed root disk: refused, nothing made
  const bytes = readFileSync(archive);
  const rootAt = 512 + Math.ceil(execFileSync('tar', ['-xOf', archive, 'manifest.json']).length / 512) * 512 + 512;
  const flipped = Buffer.from(bytes);
  flipped[rootAt + Math.floor(files[0].size / 2)]! ^= 0xff;
  writeFileSync(join(work, 'flipped.tar'), flipped);
  const volumes = async (): Promise<string[]> => (await d.ok('GET', '/v1/volumes')).volumes.map((v: any) => v.name).sort();
  const before = await volumes();
  const bad = await d.cli(['import', join(work, 'flipped.tar')]);
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr, /INVALID_ARCHIVE: .*root\.qcow2\.gz/);
  assert.deepEqual((await d.ok('GET', '/v1/instances')).instances.map((i: any) => i.name).sort(), ['sc']);
  assert.deepEqual(await volumes(), before);
  assert.ok(!before.includes('sdata'));
  await ok(['import', archive]);
  assert.deepEqual(JSON.parse(await ok(['snapshot', 'list', 's', '--json'])).snapshots.map((x: any) => [x.name, x.disks]), [['s1', ['root', 'sdata']]]);
  await ok(['snapshot', 'restore', 's', 's1']);

  await Promise.all(['s', 'sc'].map(boot));
  for (const name of ['s', 'sc']) {
    assert.match(await d.guest(name, 'cat /marker'), new RegExp(MARK), `${name}'s root disk is back to before the snapshot`);
    assert.match(await d.guest(name, readVol), new RegExp(MARK), `${name}'s volume is back to before the snapshot`);
  }
  rmSync(work, { recursive: true, force: true });
});
