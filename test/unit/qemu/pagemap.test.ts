import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parsePagemap, readResidency } from '../../../src/qemu/pagemap.js';

function entries(list: Array<'present' | 'swapped' | 'none'>): Buffer {
  const b = Buffer.alloc(list.length * 8);
  list.forEach((k, i) => {
    const v = k === 'present' ? (1n << 63n) | 0x1234n : k === 'swapped' ? (1n << 62n) | 0x55n : 0n;
    b.writeBigUInt64LE(v, i * 8);
  });
  return b;
}

test('pagemap entries: bit 63 present, bit 62 swapped, the rest ignored', () => {
  const r = parsePagemap(entries(['present', 'none', 'swapped', 'present', 'none']));
  assert.deepEqual(r, { pages: 5, present: 2, swapped: 1 });
  assert.deepEqual(parsePagemap(entries(['present', 'present', 'present']), 2), { pages: 2, present: 2, swapped: 0 });
  assert.deepEqual(parsePagemap(Buffer.alloc(12)), { pages: 1, present: 0, swapped: 0 });
});

test('residency reads the entries of the range at offset page x 8 of a fake /proc/PID/pagemap', () => {
  const proc = mkdtempSync(join(tmpdir(), 'corral-pm-'));
  try {
    mkdirSync(join(proc, '42'));
    // pages 0..9: pages 4,5,6 present, 7 swapped
    writeFileSync(join(proc, '42', 'pagemap'), entries(['none', 'none', 'none', 'none', 'present', 'present', 'present', 'swapped', 'none', 'none']));
    assert.deepEqual(readResidency(42, 4 * 4096, 4 * 4096, proc), { pages: 4, present: 3, swapped: 1 });
    assert.deepEqual(readResidency(42, 5 * 4096 + 100, 4096, proc), { pages: 2, present: 2, swapped: 0 }, 'rounded out to whole pages');
    assert.equal(readResidency(43, 0, 4096, proc), null, 'no such process');
    assert.equal(readResidency(42, 0, 0, proc), null);
  } finally {
    rmSync(proc, { recursive: true, force: true });
  }
});

test('residency of a real mapping of this process: a touched buffer is present', () => {
  // Only the plumbing against the real kernel: the range of our own heap cannot be named from JS, so read
  // page 0 (never mapped) and expect nothing present.
  const r = readResidency(process.pid, 0, 4096);
  assert.ok(r === null || r.present === 0);
});
