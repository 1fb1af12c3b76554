import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CorralError } from '../../../src/core/errors.js';
import { assertNotInUse, VolumeStore } from '../../../src/storage/volumes.js';
import { lockErrorToInUse, probeLock } from '../../../src/storage/volumes-img.js';
import { SKIP_NO_QEMU_IMG, have } from '../fixtures.js';

const skip = SKIP_NO_QEMU_IMG;
const skipIo = skip || (have('qemu-io') ? false : 'qemu-io (Debian package qemu-utils) is not installed');
const skipQemu = skip || (have('qemu-system-x86_64') ? false : 'qemu-system-x86_64 is not installed: cannot hold an image lock');

const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function fresh(): { s: VolumeStore; dir: string } {
  const dataDir = mkdtempSync(join(tmpdir(), 'corral-volumes-'));
  dirs.push(dataDir);
  const s = new VolumeStore(dataDir);
  return { s, dir: s.dir };
}

interface Info { 'virtual-size': number; format: string; 'backing-filename'?: string; 'backing-filename-format'?: string }
function info(path: string, format: string): Info {
  return JSON.parse(execFileSync('qemu-img', ['info', '--output=json', '-U', '-f', format, path], { encoding: 'utf8' })) as Info;
}

function qemuIo(path: string, cmd: string): { ok: boolean; out: string } {
  try {
    return { ok: true, out: execFileSync('qemu-io', ['-f', 'qcow2', '-c', cmd, path], { encoding: 'utf8', stdio: 'pipe' }) };
  } catch (e) {
    const err = e as { stdout?: string; stderr?: string };
    return { ok: false, out: `${err.stdout ?? ''}${err.stderr ?? ''}` };
  }
}

async function rejects(p: Promise<unknown> | (() => unknown), code: string, field?: string): Promise<CorralError> {
  let caught: unknown;
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (e) {
    caught = e;
  }
  assert.ok(caught instanceof CorralError, `expected CorralError ${code}, got ${String(caught)}`);
  assert.equal(caught.code, code, caught.message);
  if (field !== undefined) assert.equal(caught.details.field, field, caught.message);
  return caught;
}

const entries = (dir: string): string[] => (existsSync(dir) ? readdirSync(dir) : []);

test('create qcow2 and raw: sizes in qemu-img info, raw is sparse, listed with allocated bytes', { skip }, async () => {
  const { s, dir } = fresh();
  const q = await s.create('q1', '64M');
  assert.equal(q.format, 'qcow2');
  assert.equal(q.virtualSize, 64 * 1024 * 1024);
  assert.equal(q.path, join(dir, 'q1', 'disk.qcow2'));
  assert.equal(q.backing, null);
  assert.equal(q.attachedTo, null);
  assert.equal(q.pool, 'default');
  assert.equal(info(q.path, 'qcow2')['virtual-size'], 64 * 1024 * 1024);

  const r = await s.create('r1', '1G', 'raw');
  const st = statSync(r.path);
  assert.equal(st.size, 1024 * 1024 * 1024);
  assert.ok(st.blocks * 512 < 1024 * 1024, `raw file should be sparse, has ${st.blocks * 512} bytes allocated`);
  assert.equal(info(r.path, 'raw')['virtual-size'], 1024 * 1024 * 1024);

  const list = s.list();
  assert.deepEqual(list.map((v) => v.name), ['q1', 'r1']);
  assert.ok(list[0]!.allocated > 0);
  assert.deepEqual(entries(dir).sort(), ['q1', 'r1']);
  await rejects(s.create('q1', '1M'), 'ALREADY_EXISTS', 'name');
});

test('bad names, sizes and formats are refused and nothing is created', { skip }, async () => {
  const { s, dir } = fresh();
  for (const name of ['../x', 'a/b', 'A', '', '.hidden']) await rejects(s.create(name, '1M'), 'INVALID_SPEC', 'name');
  await rejects(s.create('ok', 'lots'), 'INVALID_SPEC', 'size');
  await rejects(s.create('ok', 0), 'INVALID_SPEC', 'size');
  await rejects(s.create('ok', '1M', 'vmdk'), 'INVALID_SPEC', 'format');
  assert.deepEqual(entries(dir), []);
  assert.equal(existsSync(join(dir, '..', 'x')), false);
  await rejects(s.get('nope'), 'VOLUME_NOT_FOUND');
});

test('a qemu-img failure during create leaves no staging folder', async () => {
  const { s, dir } = fresh();
  // a qemu-img that fails after the staging folder exists
  const bin = mkdtempSync(join(tmpdir(), 'corral-fake-qemu-img-'));
  dirs.push(bin);
  writeFileSync(join(bin, 'qemu-img'), '#!/bin/sh\necho "qemu-img: $4: Could not create: Input/output error" >&2\nexit 1\n', { mode: 0o755 });
  const path = process.env.PATH;
  process.env.PATH = `${bin}:${path ?? ''}`;
  try {
    const e = await rejects(s.create('broken', '16M'), 'QEMU_FAILED');
    assert.match(e.message, /Input\/output error/);
  } finally {
    process.env.PATH = path;
  }
  assert.deepEqual(entries(dir), []);
});

test('a volume bigger than 64 TiB is INVALID_SPEC on size at create and resize, with nothing made', { skip }, async () => {
  const { s, dir } = fresh();
  const over = await rejects(s.create('huge', '65T'), 'INVALID_SPEC', 'size');
  assert.match(over.message, /more than the 64 TiB a volume may have/);
  await s.create('g', '16M');
  await rejects(s.resize('g', '65T'), 'INVALID_SPEC', 'size');
  assert.deepEqual(entries(dir).filter((e) => e !== 'g'), []);
});

test('resize grows; shrink is refused unless asked for', { skip }, async () => {
  const { s } = fresh();
  const v = await s.create('g', '16M');
  const grown = await s.resize('g', '32M');
  assert.equal(grown.virtualSize, 32 * 1024 * 1024);
  assert.equal(info(v.path, 'qcow2')['virtual-size'], 32 * 1024 * 1024);
  assert.equal((await s.get('g')).virtualSize, 32 * 1024 * 1024);
  const small = await rejects(s.resize('g', '8M'), 'INVALID_SPEC', 'size');
  assert.match(small.message, /^size: 8 MiB is smaller than the volume \(32 MiB\): shrinking loses data/);
  assert.equal(info(v.path, 'qcow2')['virtual-size'], 32 * 1024 * 1024);
  // a size without a unit is refused, not taken as bytes; one that is not whole sectors is refused too
  const bare = await rejects(s.resize('g', '1000'), 'INVALID_SPEC', 'size');
  assert.match(bare.message, /"1000" has no unit: .*"1000M"/);
  await rejects(s.create('bare', '1000'), 'INVALID_SPEC', 'size');
  const odd = await rejects(s.resize('g', 32 * 1024 * 1024 + 1), 'INVALID_SPEC', 'size');
  assert.match(odd.message, /512-byte sectors, got 32 MiB \(33554433 bytes\)/);
  assert.equal(info(v.path, 'qcow2')['virtual-size'], 32 * 1024 * 1024);
  const raw = await s.create('graw', '16M', 'raw');
  const cut = await s.resize('graw', '8M', { shrink: true });
  assert.equal(cut.virtualSize, 8 * 1024 * 1024);
  assert.equal(statSync(raw.path).size, 8 * 1024 * 1024);
});

test('clone is a qcow2 overlay with the backing format explicit; its source cannot be deleted', { skip }, async () => {
  const { s, dir } = fresh();
  const src = await s.create('base', '16M', 'raw');
  const c = await s.clone('base', 'child');
  assert.equal(c.format, 'qcow2');
  assert.equal(c.backing, 'base');
  assert.equal(c.virtualSize, 16 * 1024 * 1024);
  const i = info(c.path, 'qcow2');
  assert.equal(i['backing-filename'], src.path);
  assert.equal(i['backing-filename-format'], 'raw');
  assert.deepEqual((await s.get('base')).clones, ['child']);

  const e = await rejects(s.remove('base'), 'VOLUME_IN_USE');
  assert.match(e.message, /child/);
  assert.ok(existsSync(src.path));
  await rejects(s.clone('base', 'child'), 'ALREADY_EXISTS');
  await rejects(s.clone('nope', 'x'), 'VOLUME_NOT_FOUND');
  await rejects(s.clone('base', '../x'), 'INVALID_SPEC', 'name');

  await s.remove('child');
  await s.remove('base');
  assert.deepEqual(entries(dir), []);
});

test('snapshots: create, list, revert restores the data, delete; raw refuses', { skip: skipIo }, async () => {
  const { s } = fresh();
  const v = await s.create('snap', '16M');
  assert.ok(qemuIo(v.path, 'write -P 0xab 0 4k').ok);
  const taken = await s.snapshot('snap', 's1');
  assert.equal(taken.name, 's1');
  assert.deepEqual((await s.snapshots('snap')).map((x) => x.name), ['s1']);
  assert.deepEqual((await s.get('snap')).snapshots.map((x) => x.name), ['s1']);
  await rejects(s.snapshot('snap', 's1'), 'ALREADY_EXISTS', 'snapshot');
  await rejects(s.snapshot('snap', 'Bad/Name'), 'INVALID_SPEC', 'snapshot');

  assert.ok(qemuIo(v.path, 'write -P 0xcd 0 4k').ok);
  assert.equal(qemuIo(v.path, 'read -P 0xab 0 4k').out.includes('Pattern verification failed'), true);
  await s.revert('snap', 's1');
  const back = qemuIo(v.path, 'read -P 0xab 0 4k');
  assert.ok(back.ok && !back.out.includes('Pattern verification failed'), back.out);

  await rejects(s.revert('snap', 'nope'), 'SNAPSHOT_NOT_FOUND');
  await s.deleteSnapshot('snap', 's1');
  assert.deepEqual(await s.snapshots('snap'), []);
  await rejects(s.deleteSnapshot('snap', 's1'), 'SNAPSHOT_NOT_FOUND');

  await s.create('rawv', '1M', 'raw');
  const e = await rejects(s.snapshot('rawv', 's1'), 'INVALID_SPEC', 'format');
  assert.match(e.message, /raw/);

  // a source with clones cannot be reverted under them
  await s.snapshot('snap', 's2');
  await s.clone('snap', 'snapchild');
  await rejects(s.revert('snap', 's2'), 'VOLUME_IN_USE');
});

test('attachedTo set: delete and clone refused with VOLUME_IN_USE naming the instance; resize works while no QEMU has it open', { skip }, async () => {
  const { s, dir } = fresh();
  await s.create('att', '1M');
  s.setAttached('att', 'vm1');
  const e = await rejects(s.remove('att'), 'VOLUME_IN_USE');
  assert.match(e.message, /vm1/);
  assert.equal(e.details.instance, 'vm1');
  // a clone must be a point-in-time copy: the instance could write to its source at any time
  const c = await rejects(s.clone('att', 'attcopy'), 'VOLUME_IN_USE');
  assert.match(c.message, /cannot be cloned: it is attached to instance "vm1".*detach it first/);
  assert.equal(c.details.instance, 'vm1');
  assert.deepEqual(entries(dir), ['att']);
  // attached to a stopped instance: qemu-img resizes it (a running one's QEMU lock would refuse it)
  assert.equal((await s.resize('att', '2M')).virtualSize, 2 * 1024 * 1024);
  assert.throws(() => assertNotInUse(s.record('att'), 'attached'), /attached to instance "vm1"/);
  s.setAttached('att', null);
  await s.clone('att', 'attcopy');
  // and from now on the source never becomes writable under its clone
  assert.throws(() => s.assertNoClones('att', 'attached'), (e: unknown) => e instanceof CorralError && e.code === 'VOLUME_IN_USE'
    && /volume "att" cannot be attached: clones attcopy depend on it/.test(e.message) && (e.details.clones as string[]).join() === 'attcopy');
  await s.remove('attcopy');
  s.assertNoClones('att', 'attached');
  await s.remove('att');
});

test('a volume whose file was removed behind Corral\'s back can still be deleted', { skip }, async () => {
  const { s } = fresh();
  const v = await s.create('lost', '1M');
  rmSync(v.path);
  await s.remove('lost');
  assert.throws(() => s.record('lost'), /does not exist/);
});

test('lockErrorToInUse leaves other errors alone', () => {
  const other = new CorralError('QEMU_FAILED', 'qemu-img create failed: x', { stderr: 'qemu-img: x' });
  assert.equal(lockErrorToInUse(other, 'v', 'deleted'), other);
  const plain = new Error('boom');
  assert.equal(lockErrorToInUse(plain, 'v', 'deleted'), plain);
  const mapped = lockErrorToInUse(new CorralError('QEMU_FAILED', 'm', { stderr: 'qemu-img: Could not open \'/x\': Failed to get "write" lock' }), 'v', 'resized');
  assert.ok(mapped instanceof CorralError && mapped.code === 'VOLUME_IN_USE' && mapped.status === 409);
});

/** A QEMU holding an image open (its lock taken, as the probe shows); stop() kills it. */
async function holdImage(path: string): Promise<{ stop(): Promise<void> }> {
  const blockdev = JSON.stringify({ driver: 'qcow2', 'node-name': 'd', file: { driver: 'file', filename: path } });
  const qemu: ChildProcess = spawn('qemu-system-x86_64', ['-nodefaults', '-machine', 'none', '-display', 'none', '-blockdev', blockdev], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  qemu.stderr!.on('data', (d: Buffer) => { stderr += d.toString(); });
  const stop = async (): Promise<void> => {
    qemu.kill('SIGKILL');
    await new Promise((r) => (qemu.exitCode !== null || qemu.signalCode !== null ? r(null) : qemu.once('exit', r)));
  };
  const t0 = Date.now();
  for (;;) {
    try {
      await probeLock(path, 'qcow2');
    } catch {
      return { stop }; // the probe fails: QEMU holds the lock
    }
    if (qemu.exitCode !== null) throw new Error(`qemu exited: ${stderr}`);
    if (Date.now() - t0 > 15_000) {
      await stop();
      throw new Error('QEMU never took the image lock');
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

test('a volume open in a running QEMU: qemu-img lock errors become VOLUME_IN_USE', { skip: skipQemu, timeout: 30_000 }, async () => {
  const { s } = fresh();
  const v = await s.create('busy', '16M');
  await s.create('busyraw', '1M', 'raw');
  await s.snapshot('busy', 'before');
  const qemu = await holdImage(v.path);
  try {
    for (const [what, p] of [
      ['resize', () => s.resize('busy', '32M')],
      ['snapshot', () => s.snapshot('busy', 'during')],
      ['revert', () => s.revert('busy', 'before')],
      ['delete', () => s.remove('busy')],
      // a clone of an image a QEMU writes to would not be a copy: the source changes under it
      ['clone', () => s.clone('busy', 'busyclone')],
    ] as const) {
      const e = await rejects(p(), 'VOLUME_IN_USE');
      assert.match(e.message, /busy/, what);
      assert.match(e.message, /running QEMU/, what);
    }
    assert.ok(existsSync(v.path));
    assert.equal(s.record('busy').virtualSize, 16 * 1024 * 1024);
    assert.deepEqual(s.clonesOf('busy'), []);
    assert.equal(existsSync(join(s.dir, 'busyclone')), false);
    // the others are unaffected
    await s.remove('busyraw');
  } finally {
    await qemu.stop();
  }
  await s.remove('busy');
});

test('a source that a running QEMU only reads (under a clone) can be cloned again', { skip: skipQemu, timeout: 30_000 }, async () => {
  const { s } = fresh();
  await s.create('base', '16M');
  const first = await s.clone('base', 'first');
  const qemu = await holdImage(first.path);
  try {
    const second = await s.clone('base', 'second');
    assert.equal(second.backing, 'base');
  } finally {
    await qemu.stop();
  }
});
