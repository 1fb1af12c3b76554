/** Bad input gets a 400 with a code and the field, and leaves nothing behind. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Daemon, SKIP_NO_TINY, useDaemon } from './harness.js';

const skip = SKIP_NO_TINY;
let d: Daemon;
useDaemon((x) => { d = x; });

async function nothingLeft(): Promise<void> {
  assert.deepEqual((await d.api('GET', '/v1/instances')).body.instances, []);
  assert.deepEqual(readdirSync(join(d.dataDir, 'instances')), []);
  assert.deepEqual(readdirSync(join(d.dataDir, 'run')), []);
}

async function expect400(body: unknown, field: string, code = 'INVALID_SPEC'): Promise<void> {
  const r = await d.api('POST', '/v1/instances', body);
  assert.equal(r.status, 400, `${JSON.stringify(body)} -> ${r.status} ${JSON.stringify(r.body)}`);
  assert.equal(r.body.error.code, code);
  assert.equal(r.body.error.field, field, JSON.stringify(r.body));
  assert.equal(typeof r.body.error.message, 'string');
}

test('bad names are refused with the field', { skip }, async () => {
  for (const name of ['a,b', 'a b', 'a/b', '..', '../etc', 'a\nb', 'UPPER', '-x', '', 'x'.repeat(64)]) {
    await expect400({ name, image: 'tiny' }, 'name');
  }
  await nothingLeft();
});

test('bad sizes are refused with the field', { skip }, async () => {
  for (const memory of ['-1G', '0', '32M', '1000T', 'lots', '12Q', 0, -5]) await expect400({ name: 'ok', image: 'tiny', memory }, 'memory');
  for (const cpus of [0, -1, 100000]) await expect400({ name: 'ok', image: 'tiny', cpus }, 'cpus');
  await expect400({ name: 'ok', image: 'tiny', disk: '-5G' }, 'disk');
  await expect400({ name: 'ok', image: 'tiny', disk: '1M' }, 'disk');
  await nothingLeft();
});

test('a size string without a unit is refused, not read as bytes; a JSON number is bytes', { skip }, async () => {
  for (const [field, value] of [['memory', '512'], ['disk', '2048'], ['maxMemory', '1024'], ['memoryLimit', '4096']] as const) {
    const r = await d.api('POST', '/v1/instances', { name: 'ok', image: 'tiny', [field]: value });
    assert.equal(r.status, 400, JSON.stringify(r.body));
    assert.equal(r.body.error.field, field);
    assert.equal(r.body.error.message, `${field}: "${value}" has no unit: say what it counts, e.g. "${value}M" or "${value}G" (or "${value}B" for bytes)`);
  }
  const cli = await d.cli(['create', 'ok', '--image', 'tiny', '--memory', '512']);
  assert.equal(cli.code, 1);
  assert.match(cli.stderr, /INVALID_SPEC: memory: "512" has no unit/);
  await nothingLeft();
  const made = await d.api('POST', '/v1/instances', { name: 'ok', image: 'tiny', memory: 256 * 1024 * 1024 });
  assert.equal(made.status, 201, JSON.stringify(made.body));
  assert.equal(made.body.memory, 256 * 1024 * 1024);
  const small = await d.api('POST', '/v1/instances', { name: 'ok2', image: 'tiny', disk: '100M' });
  assert.equal(small.status, 400);
  assert.match(small.body.error.message, /^disk: 100 MiB is smaller than the image \(\d+(\.\d+)? (MiB|GiB)( \(\d+ bytes\))?\)$/);
  await d.ok('DELETE', '/v1/instances/ok');
  await nothingLeft();
});

test('unknown JSON fields are refused', { skip }, async () => {
  await expect400({ name: 'ok', image: 'tiny', colour: 'blue' }, 'colour');
  const r = await d.api('POST', '/v1/instances/ok/stop', { timeout: 5, force: true });
  assert.equal(r.status, 400);
  await nothingLeft();
});

test('an unknown image or instance is a 404 with a code', { skip }, async () => {
  const r = await d.api('POST', '/v1/instances', { name: 'ok', image: 'nope' });
  assert.equal(r.status, 404);
  assert.equal(r.body.error.code, 'IMAGE_NOT_FOUND');
  const s = await d.api('POST', '/v1/instances/ghost/start', {});
  assert.equal(s.status, 404);
  assert.equal(s.body.error.code, 'INSTANCE_NOT_FOUND');
  await nothingLeft();
});

test('an image file that is not what its format says is refused and nothing is imported', { skip }, async () => {
  const file = join(d.dataDir, 'not-qcow2.img');
  writeFileSync(file, Buffer.alloc(1024 * 1024, 7));
  const r = await d.cli(['image', 'import', 'bogus', file, '--format', 'qcow2']);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /INVALID_IMAGE/);
  const names = (await d.api('GET', '/v1/images')).body.images.map((i: { name: string }) => i.name);
  assert.deepEqual(names, ['tiny']);
  assert.deepEqual(readdirSync(join(d.dataDir, 'images')).sort(), ['tiny']);
});

test('a create --start that QEMU refuses leaves no disk, process, socket or row', { skip }, async () => {
  // An image whose initrd has gone missing: the overlay is made, then QEMU refuses to start.
  const dir = join(d.dataDir, 'images', 'broken');
  cpSync(join(d.dataDir, 'images', 'tiny'), dir, { recursive: true });
  const meta = JSON.parse(readFileSync(join(dir, 'image.json'), 'utf8').split(join(d.dataDir, 'images', 'tiny')).join(dir));
  meta.name = 'broken';
  meta.initrd = join(dir, 'missing-initrd.img');
  writeFileSync(join(dir, 'image.json'), JSON.stringify(meta));
  const r = await d.api('POST', '/v1/instances', { name: 'willfail', image: 'broken', start: true });
  assert.equal(r.status, 500, JSON.stringify(r.body));
  assert.equal(r.body.error.code, 'QEMU_FAILED');
  assert.match(r.body.error.message, /initrd|missing-initrd/);
  await nothingLeft();
  const qemus = readdirSync('/proc').filter((e) => /^\d+$/.test(e)).filter((e) => {
    try {
      return readFileSync(`/proc/${e}/cmdline`, 'utf8').includes('guest=willfail');
    } catch {
      return false;
    }
  });
  assert.deepEqual(qemus, []);
});
