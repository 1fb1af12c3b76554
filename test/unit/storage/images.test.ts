import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CorralError } from '../../../src/core/errors.js';
import { ImageStore, type Progress } from '../../../src/storage/images.js';
import { checkImgInfo } from '../../../src/storage/inspect.js';
import { SKIP_NO_QEMU_IMG } from '../fixtures.js';

const skip = SKIP_NO_QEMU_IMG;

let work = '';
before(() => {
  work = mkdtempSync(join(tmpdir(), 'corral-images-src-'));
});

function qemuImg(...args: string[]): void {
  execFileSync('qemu-img', args, { stdio: 'pipe' });
}

function store(): { store: ImageStore; dataDir: string; imagesDir: string } {
  const dataDir = mkdtempSync(join(tmpdir(), 'corral-images-'));
  return { store: new ImageStore(dataDir), dataDir, imagesDir: join(dataDir, 'images') };
}

function leftovers(imagesDir: string): string[] {
  return existsSync(imagesDir) ? readdirSync(imagesDir) : [];
}

/** Import must fail with `code` (and `field` when given) and leave nothing in the images dir. */
async function refused(file: string, format: string, code: string, field?: string, name = 'img'): Promise<CorralError> {
  const s = store();
  let caught: unknown;
  try {
    await s.store.import(name, file, format as 'raw');
  } catch (e) {
    caught = e;
  }
  assert.ok(caught instanceof CorralError, `expected a CorralError, got ${String(caught)}`);
  assert.equal(caught.code, code, caught.message);
  if (field) assert.equal(caught.details.field, field, caught.message);
  assert.deepEqual(leftovers(s.imagesDir), []);
  assert.deepEqual(s.store.list(), []);
  return caught;
}

test('import refuses a qcow2 with a backing file', { skip }, async () => {
  qemuImg('create', '-q', '-f', 'raw', join(work, 'base.raw'), '1M');
  qemuImg('create', '-q', '-f', 'qcow2', '-F', 'raw', '-b', join(work, 'base.raw'), join(work, 'backed.qcow2'));
  const e = await refused(join(work, 'backed.qcow2'), 'qcow2', 'INVALID_IMAGE', 'backing-filename');
  assert.match(e.message, /backing file/);
});

test('import refuses a qcow2 whose backing file is a json: name', { skip }, async () => {
  const json = 'json:{"driver":"raw","file":{"driver":"file","filename":"/etc/passwd"}}';
  qemuImg('create', '-q', '-u', '-f', 'qcow2', '-F', 'raw', '-b', json, join(work, 'json.qcow2'), '1M');
  const e = await refused(join(work, 'json.qcow2'), 'qcow2', 'INVALID_IMAGE', 'backing-filename');
  assert.match(e.message, /json:/);
});

test('import refuses a qcow2 with an external data file', { skip }, async () => {
  qemuImg('create', '-q', '-f', 'qcow2', '-o', `data_file=${join(work, 'external.data')}`, join(work, 'datafile.qcow2'), '1M');
  await refused(join(work, 'datafile.qcow2'), 'qcow2', 'INVALID_IMAGE', 'format-specific.data.data-file');
});

test('import refuses a raw file declared qcow2, with qemu-img\'s own words', { skip }, async () => {
  writeFileSync(join(work, 'plain.raw'), Buffer.alloc(1024 * 1024, 7));
  const e = await refused(join(work, 'plain.raw'), 'qcow2', 'INVALID_IMAGE', 'format');
  assert.match(e.message, /not in qcow2 format/);
});

test('import refuses a qcow2 declared raw', { skip }, async () => {
  qemuImg('create', '-q', '-f', 'qcow2', join(work, 'real.qcow2'), '1M');
  const e = await refused(join(work, 'real.qcow2'), 'raw', 'INVALID_IMAGE', 'format');
  assert.match(e.message, /qcow2/);
});

test('import refuses bad names, unknown formats, missing files and directories', { skip }, async () => {
  writeFileSync(join(work, 'ok.raw'), Buffer.alloc(65536));
  await refused(join(work, 'ok.raw'), 'raw', 'INVALID_SPEC', 'name', '../x');
  await refused(join(work, 'ok.raw'), 'raw', 'INVALID_SPEC', 'name', 'Bad_Name');
  await refused(join(work, 'ok.raw'), 'vmdk', 'INVALID_SPEC', 'format');
  await refused(join(work, 'no-such-file.raw'), 'raw', 'INVALID_SPEC', 'file');
  mkdirSync(join(work, 'a-dir'), { recursive: true });
  await refused(join(work, 'a-dir'), 'raw', 'INVALID_SPEC', 'file');
  writeFileSync(join(work, 'empty.raw'), '');
  await refused(join(work, 'empty.raw'), 'raw', 'INVALID_IMAGE', 'virtual-size');
});

test('valid raw and qcow2 images import, list, refuse a second import of a name, and remove', { skip }, async () => {
  const s = store();
  const raw = join(work, 'disk.raw');
  writeFileSync(raw, Buffer.alloc(2 * 1024 * 1024, 1));
  const qcow = join(work, 'disk.qcow2');
  qemuImg('create', '-q', '-f', 'qcow2', qcow, '8M');

  const events: Parameters<Progress>[0][] = [];
  const r1 = await s.store.import('raw-one', raw, 'raw', (ev) => events.push(ev));
  assert.equal(r1.kind, 'disk');
  assert.equal(r1.format, 'raw');
  assert.equal(r1.source, 'import');
  assert.equal(r1.virtualSize, 2 * 1024 * 1024);
  assert.equal(r1.disk, join(s.imagesDir, 'raw-one', 'disk.raw'));
  assert.ok(readFileSync(r1.disk).equals(readFileSync(raw)));
  assert.ok(events.some((e) => e.step === 'copy'));
  assert.equal(events[events.length - 1]?.percent, 100);

  const r2 = await s.store.import('qcow-one', qcow, 'qcow2');
  assert.equal(r2.format, 'qcow2');
  assert.equal(r2.virtualSize, 8 * 1024 * 1024);
  assert.ok(existsSync(join(s.imagesDir, 'qcow-one', 'image.json')));

  assert.deepEqual(s.store.list().map((r) => r.name), ['qcow-one', 'raw-one']);
  assert.deepEqual(s.store.get('raw-one'), r1);
  assert.deepEqual(leftovers(s.imagesDir).sort(), ['qcow-one', 'raw-one']);

  await assert.rejects(s.store.import('raw-one', raw, 'raw'), (e: unknown) => e instanceof CorralError && e.code === 'ALREADY_EXISTS');
  assert.deepEqual(leftovers(s.imagesDir).sort(), ['qcow-one', 'raw-one']);

  s.store.remove('raw-one');
  assert.equal(s.store.tryGet('raw-one'), null);
  assert.throws(() => s.store.get('raw-one'), (e: unknown) => e instanceof CorralError && e.code === 'IMAGE_NOT_FOUND');
  assert.deepEqual(leftovers(s.imagesDir), ['qcow-one']);
});

test('a half-made image (no image.json) never lists', () => {
  const s = store();
  mkdirSync(join(s.imagesDir, 'half'), { recursive: true });
  mkdirSync(join(s.imagesDir, '.staging-x-123'), { recursive: true });
  assert.deepEqual(s.store.list(), []);
  assert.equal(s.store.tryGet('half'), null);
  assert.equal(s.store.tryGet('../etc'), null);
});

test('checkImgInfo refuses what qemu-img reports as unsafe', () => {
  const base = { 'virtual-size': 1048576, filename: '/x/disk.qcow2', format: 'qcow2' };
  const field = (info: object): unknown => {
    try {
      checkImgInfo({ ...base, ...info }, 'qcow2');
      return null;
    } catch (e) {
      return (e as CorralError).details.field;
    }
  };
  assert.equal(field({}), null);
  assert.equal(field({ filename: 'json:{"driver":"file"}' }), 'filename');
  assert.equal(field({ 'backing-filename': 'base.qcow2' }), 'backing-filename');
  assert.equal(field({ 'format-specific': { type: 'qcow2', data: { 'data-file': '/dev/sda' } } }), 'format-specific.data.data-file');
  assert.equal(field({ format: 'raw' }), 'format');
  assert.equal(field({ 'format-specific': { type: 'qcow2', data: { corrupt: true } } }), 'format-specific.data.corrupt');
});

test('an image being rebuilt or deleted takes no new instance, and one being used for a new instance is not changed', () => {
  const { store: s } = store();
  const inUse = (re: RegExp) => (e: unknown): boolean => e instanceof CorralError && e.code === 'IMAGE_IN_USE' && re.test(e.message);
  const made = s.claim('tiny');
  const again = s.claim('tiny'); // two instances made at once on one image
  assert.throws(() => s.holdForChange('tiny', 'rebuilt'), inUse(/cannot be rebuilt: an instance is being made from it/));
  made();
  made(); // a second release of the same claim counts once
  assert.throws(() => s.holdForChange('tiny', 'deleted'), inUse(/an instance is being made/), 'the other claim still holds');
  again();
  const release = s.holdForChange('tiny', 'rebuilt');
  assert.throws(() => s.claim('tiny'), inUse(/image "tiny" is being rebuilt: no instance can be made from it until that is done/));
  assert.throws(() => s.holdForChange('tiny', 'deleted'), inUse(/already being rebuilt/));
  s.claim('other')(); // other images are not held
  release();
  s.claim('tiny')();
});
