/** Volumes through the real daemon and `corral` CLI: create, list, show, resize, clone, snapshot, delete. */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { Daemon, newDataDir } from './harness.js';
import { SKIP_NO_QEMU_IMG } from '../unit/fixtures.js';

// Volumes need no guest image: a daemon in a data dir without the tiny image is enough.
const skip = SKIP_NO_QEMU_IMG;

let d: Daemon;
before(async () => {
  if (skip) return;
  d = new Daemon(newDataDir(false));
  await d.start();
});
after(async () => {
  if (d) await d.destroy();
});

async function json(args: string[]): Promise<any> {
  const r = await d.cli([...args, '--json']);
  assert.equal(r.code, 0, `corral ${args.join(' ')}: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

test('volume create, list, show, resize through the CLI', { skip, timeout: 60_000 }, async () => {
  const v = await json(['volume', 'create', 'data1', '--size', '64M']);
  assert.equal(v.name, 'data1');
  assert.equal(v.format, 'qcow2');
  assert.equal(v.virtualSize, 64 * 1024 * 1024);
  assert.equal(v.attachedTo, null);
  assert.equal(v.path, join(d.dataDir, 'volumes', 'data1', 'disk.qcow2'));

  const raw = await json(['volume', 'create', 'raw1', '--size', '1G', '--format', 'raw']);
  assert.equal(raw.format, 'raw');
  assert.ok(statSync(raw.path).blocks * 512 < 1024 * 1024, 'raw volume is sparse');

  const list = await json(['volume', 'list']);
  assert.deepEqual(list.volumes.map((x: { name: string }) => x.name), ['data1', 'raw1']);
  const table = await d.cli(['volume', 'list']);
  assert.match(table.stdout, /NAME\s+FORMAT\s+SIZE/);
  assert.match(table.stdout, /data1\s+qcow2\s+64 MiB/);

  const grown = await json(['volume', 'resize', 'data1', '--size', '128M']);
  assert.equal(grown.virtualSize, 128 * 1024 * 1024);
  const shrink = await d.cli(['volume', 'resize', 'data1', '--size', '32M']);
  assert.equal(shrink.code, 1);
  assert.match(shrink.stderr, /INVALID_SPEC: size: 32 MiB is smaller than the volume \(128 MiB\): shrinking loses data/);

  const show = await json(['volume', 'show', 'data1']);
  assert.equal(show.virtualSize, 128 * 1024 * 1024);
  assert.deepEqual(show.snapshots, []);
  // without --json, sizes in binary units
  const words = await d.cli(['volume', 'show', 'data1']);
  assert.match(words.stdout, /^virtualSize:\s+128 MiB$/m);
  assert.match(words.stdout, /^allocated:\s+\d+(\.\d)? (KiB|MiB)$/m);
});

test('a size without a unit is refused, not taken as bytes', { skip }, async () => {
  for (const args of [['volume', 'create', 'tiny1', '--size', '1000'], ['volume', 'resize', 'data1', '--size', '1000']]) {
    const r = await d.cli(args);
    assert.equal(r.code, 1, args.join(' '));
    assert.match(r.stderr, /^error: INVALID_SPEC: size: "1000" has no unit: say what it counts, e\.g\. "1000M" or "1000G" \(or "1000B" for bytes\)$/m);
  }
  assert.equal((await d.api('GET', '/v1/volumes/tiny1')).status, 404);
  assert.equal((await json(['volume', 'show', 'data1'])).virtualSize, 128 * 1024 * 1024);
  // in the API a JSON number is bytes
  const made = await d.api('POST', '/v1/volumes', { name: 'bytes1', size: 1024 * 1024 });
  assert.equal(made.status, 201, JSON.stringify(made.body));
  assert.equal(made.body.virtualSize, 1024 * 1024);
  assert.deepEqual(await json(['volume', 'delete', 'bytes1']), { deleted: 'bytes1' });
});

test('bad input is refused with coded errors and leaves nothing', { skip }, async () => {
  for (const name of ['../x', 'A']) {
    const r = await d.cli(['volume', 'create', name, '--size', '1M']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /INVALID_SPEC: name:/);
  }
  const dup = await d.cli(['volume', 'create', 'data1', '--size', '1M']);
  assert.match(dup.stderr, /ALREADY_EXISTS/);
  const missing = await d.cli(['volume', 'show', 'nope']);
  assert.match(missing.stderr, /VOLUME_NOT_FOUND/);
  const extra = await d.api('POST', '/v1/volumes', { name: 'x', size: '1M', bogus: 1 });
  assert.equal(extra.status, 400);
  assert.equal(extra.body.error.field, 'bogus');
  const rawSnap = await d.cli(['volume', 'snapshot', 'raw1', 's1']);
  assert.match(rawSnap.stderr, /INVALID_SPEC: format:.*raw/);
  assert.deepEqual(readdirSync(join(d.dataDir, 'volumes')).sort(), ['data1', 'raw1']);
});

test('clone and snapshots through the CLI; a cloned source cannot be deleted', { skip, timeout: 60_000 }, async () => {
  const c = await json(['volume', 'clone', 'data1', 'copy1']);
  assert.equal(c.backing, 'data1');
  assert.equal(c.format, 'qcow2');
  const info = JSON.parse(execFileSync('qemu-img', ['info', '--output=json', '-U', '-f', 'qcow2', c.path], { encoding: 'utf8' }));
  assert.equal(info['backing-filename-format'], 'qcow2');

  const refused = await d.cli(['volume', 'delete', 'data1']);
  assert.equal(refused.code, 1);
  assert.match(refused.stderr, /VOLUME_IN_USE: .*copy1/);

  const snap = await json(['volume', 'snapshot', 'copy1', 'first']);
  assert.equal(snap.name, 'first');
  const snaps = await json(['volume', 'snapshot', 'copy1', '--list']);
  assert.deepEqual(snaps.snapshots.map((s: { name: string }) => s.name), ['first']);
  const show = await json(['volume', 'show', 'copy1']);
  assert.deepEqual(show.snapshots.map((s: { name: string }) => s.name), ['first']);
  const words = await d.cli(['volume', 'show', 'copy1']);
  assert.match(words.stdout, /snapshots:\n\s+NAME/);

  const rev = await d.cli(['volume', 'snapshot', 'copy1', 'first', '--revert']);
  assert.equal(rev.code, 0, rev.stderr);
  assert.match(rev.stdout, /reverted to snapshot first/);
  const missing = await d.cli(['volume', 'snapshot', 'copy1', 'nope', '--revert']);
  assert.match(missing.stderr, /SNAPSHOT_NOT_FOUND/);
  const del = await d.cli(['volume', 'snapshot', 'copy1', 'first', '--delete']);
  assert.equal(del.code, 0, del.stderr);
  assert.deepEqual((await json(['volume', 'snapshot', 'copy1', '--list'])).snapshots, []);
});

test('volume delete, clone first and then its source', { skip }, async () => {
  assert.deepEqual(await json(['volume', 'delete', 'copy1']), { deleted: 'copy1' });
  assert.deepEqual(await json(['volume', 'delete', 'data1']), { deleted: 'data1' });
  const r = await d.cli(['volume', 'rm', 'raw1']);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual((await json(['volume', 'list'])).volumes, []);
  assert.equal(existsSync(join(d.dataDir, 'volumes', 'data1')), false);
  assert.deepEqual(readdirSync(join(d.dataDir, 'volumes')), []);
  const ev = await d.events();
  const types = ev.map((e) => e.type);
  for (const t of ['volume.created', 'volume.cloned', 'volume.snapshot.created', 'volume.deleted']) assert.ok(types.includes(t), t);
});
