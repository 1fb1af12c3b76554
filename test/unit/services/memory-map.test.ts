import { test } from 'node:test';
import assert from 'node:assert/strict';
import { guestUsed, parseFlatRam, parseGpa2hva, parseGuestStats, parseSmapsRollup } from '../../../src/services/memory-map.js';

const MTREE = `FlatView #0
 AS "i440FX", root: bus master container
 Root memory region: (none)
  No rendered FlatView

FlatView #1
 AS "memory", root: system
 AS "cpu-memory-0", root: system
 Root memory region: system
  0000000000000000-00000000000c2fff (prio 0, ram): mem0
  00000000000c3000-00000000000e7fff (prio 0, rom): mem0 @00000000000c3000
  00000000000e8000-00000000000effff (prio 0, ram): mem0 @00000000000e8000
  00000000000f0000-00000000000fffff (prio 0, rom): mem0 @00000000000f0000
  0000000000100000-000000000fffffff (prio 0, ram): mem0 @0000000000100000
  00000000febf8000-00000000febf8fff (prio 0, i/o): virtio-pci-common-virtio-mem
  00000000fffc0000-00000000ffffffff (prio 0, rom): pc.bios
  0000000100000000-000000010fffffff (prio 0, ram): vmem0

FlatView #2
 AS "I/O", root: io
 Root memory region: io
  0000000000000000-0000000000000007 (prio 0, i/o): dma-chan
`;

test('the flat view gives the RAM ranges of the memory backends, contiguous pieces merged', () => {
  assert.deepEqual(parseFlatRam(MTREE, new Set(['mem0', 'vmem0'])), [
    { start: 0, end: 0x10000000, region: 'mem0', offset: 0 },
    { start: 0x100000000, end: 0x110000000, region: 'vmem0', offset: 0 },
  ]);
});

test('a RAM backend split around the PCI hole gives two ranges', () => {
  const text = `FlatView #1\n AS "memory", root: system\n  0000000000000000-00000000bfffffff (prio 0, ram): mem0\n  0000000100000000-000000013fffffff (prio 0, ram): mem0 @00000000c0000000\n`;
  assert.deepEqual(parseFlatRam(text, new Set(['mem0'])), [
    { start: 0, end: 0xc0000000, region: 'mem0', offset: 0 },
    { start: 0x100000000, end: 0x140000000, region: 'mem0', offset: 0xc0000000 },
  ]);
});

test('gpa2hva, guest stats, used memory and smaps_rollup', () => {
  assert.equal(parseGpa2hva('Host virtual address for 0x100000 (mem0) is 0x7f77cff00000\r\n'), 0x7f77cff00000);
  assert.equal(parseGpa2hva('Error: No memory is mapped at address 0xffffffff'), null);
  assert.equal(parseGuestStats({ stats: { 'stat-total-memory': -1, 'stat-free-memory': -1, 'stat-available-memory': -1 }, 'last-update': 0 }), null);
  const s = parseGuestStats({ stats: { 'stat-total-memory': 1000, 'stat-free-memory': 600, 'stat-available-memory': 700 }, 'last-update': 5 });
  assert.deepEqual(s, { total: 1000, free: 600, available: 700, lastUpdate: 5 });
  assert.equal(guestUsed(s!, 200, true), 100, 'deflate-on-oom: balloon pages stay in the total');
  assert.equal(guestUsed(s!, 200, false), 300);
  const r = parseSmapsRollup('Rss:              245760 kB\nPss:   1 kB\nShared_Clean:       1024 kB\nShared_Dirty:          0 kB\nAnonymous:        240000 kB\nSwap:                  0 kB\n');
  assert.deepEqual(r, { rss: 245760 * 1024, anonymous: 240000 * 1024, shared: 1024 * 1024, swap: 0 });
});
