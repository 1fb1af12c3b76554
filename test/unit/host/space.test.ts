import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CorralError, noSpace } from '../../../src/core/errors.js';
import { Reserve } from '../../../src/host/reserve.js';
import { assertFits, diskRatio, spaceOf } from '../../../src/host/space.js';
import { EventBus } from '../../../src/services/events.js';
import { ioErrorReason } from '../../../src/services/exit-cause.js';
import type { Store } from '../../../src/store/store.js';

const MiB = 1024 * 1024;

test('disk admission: what would not fit in the free space (less the reserve) is refused, saying what is short', () => {
  const space = { free: 100 * MiB, reserve: 10 * MiB };
  assertFits('/data', 90 * MiB, 'volume "a"', { space, thin: false });
  assert.throws(() => assertFits('/data', 91 * MiB, 'volume "a"', { space, thin: false }), (e: unknown) => e instanceof CorralError
    && e.code === 'INSUFFICIENT_RESOURCES' && e.details.resource === 'disk' && e.details.needed === 91 * MiB
    && /disk space: volume "a" may take 91 MiB, and the filesystem of \/data has 100 MiB free, 10 MiB of it kept/.test(e.message));
  const old = process.env.CORRAL_DISK_RATIO;
  try {
    process.env.CORRAL_DISK_RATIO = '3';
    assert.equal(diskRatio(), 3);
    assertFits('/data', 270 * MiB, 'a thin volume', { space });
    assert.throws(() => assertFits('/data', 91 * MiB, 'a raw copy', { space, thin: false }), /INSUFFICIENT|disk space/, 'what is written at once gets no ratio');
    process.env.CORRAL_DISK_RATIO = '0.5';
    assert.equal(diskRatio(), 1, 'a ratio under 1 is 1');
  } finally {
    if (old === undefined) delete process.env.CORRAL_DISK_RATIO;
    else process.env.CORRAL_DISK_RATIO = old;
  }
  const here = spaceOf(join(tmpdir(), 'not', 'made', 'yet'));
  assert.ok(here.free > 0 && here.reserve > 0 && here.reserve <= 1024 ** 3, 'a folder not made yet: its filesystem\'s space');
});

test('a full filesystem is NO_SPACE, whichever layer says it; other errors are not', () => {
  for (const code of ['ENOSPC', 'EDQUOT', 'SQLITE_FULL']) {
    const e = noSpace(Object.assign(new Error('x'), { code }), 'writing a record');
    assert.equal(e?.code, 'NO_SPACE');
    assert.match(e!.message, /^writing a record failed: the data dir's filesystem is full/);
  }
  assert.equal(noSpace(Object.assign(new Error('x'), { code: 'EACCES' }), 'w'), null);
  assert.equal(noSpace(null, 'w'), null);
});

test('the reserve is 16 MiB of real blocks, given up once and made again', () => {
  const dir = mkdtempSync(join(tmpdir(), 'corral-reserve-'));
  try {
    const r = new Reserve(join(dir, '.reserve'));
    assert.equal(r.ensure(), true);
    const st = statSync(r.file);
    assert.equal(st.size, 16 * MiB);
    assert.ok(st.blocks * 512 >= 16 * MiB, 'not sparse: freeing it frees space');
    assert.equal(r.release(), true);
    assert.equal(existsSync(r.file), false);
    assert.equal(r.release(), false, 'nothing more to give');
    assert.equal(r.ensure(), true);
    assert.equal(r.held(), true);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('events that cannot be stored (disk full) still reach live listeners, with id 0; other store failures throw', () => {
  let fail: string | null = 'SQLITE_FULL';
  const warned: string[] = [];
  const store = { appendEvent: (type: string, instance: string | null, data: Record<string, unknown>) => {
    if (fail) throw Object.assign(new Error('database or disk is full'), { code: fail });
    return { id: 7, time: 't', type, instance, data };
  } } as unknown as Store;
  const bus = new EventBus(store, { warn: (_o: object, m?: string) => void warned.push(m ?? '') });
  const seen: number[] = [];
  bus.subscribe((ev) => seen.push(ev.id));
  assert.equal(bus.publish('a', null).id, 0);
  bus.publish('b', null);
  assert.equal(warned.length, 1, 'the first loss is logged, not each');
  fail = null;
  assert.equal(bus.publish('c', null).id, 7);
  assert.deepEqual(seen, [0, 0, 7]);
  assert.equal(warned.length, 2, 'and that they are stored again');
  fail = 'SQLITE_CORRUPT';
  assert.throws(() => bus.publish('d', null), /database or disk is full/);
});

test('a guest paused on a full disk says so', () => {
  assert.equal(ioErrorReason({ device: '', 'node-name': 'vol-fill-fmt', operation: 'write', action: 'stop', nospace: true, reason: 'No space left on device' }),
    'paused by QEMU: I/O error writing disk vol-fill-fmt: No space left on device (the filesystem holding it is full: free space, then resume)');
  assert.equal(ioErrorReason({ device: 'x', operation: 'read', action: 'stop' }), 'paused by QEMU: I/O error reading disk x: I/O error');
});
