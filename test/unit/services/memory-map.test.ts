import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { guestUsed, parseFlatRam, parseGpa2hva, parseGuestStats, parseSmaps, parseSmapsRollup, ramBlocks, residentIn } from '../../../src/services/memory-map.js';
import { FIXTURES } from '../fixtures.js';

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

// Five mappings of a real QEMU's /proc/PID/smaps (TCG, a 1 GiB guest): its heap, mem0 (1 GiB, 122 MiB of it resident
// in transparent hugepages) between two 1 MiB mappings, and TCG's translation buffer (rwx, 72 MiB resident).
const SMAPS = readFileSync(join(FIXTURES, 'memory', 'qemu-tcg-1g.smaps'), 'utf8');
const KiB = 1024;
const MEM0 = { start: 0x7f60bbe00000, end: 0x7f60fbe00000 };

test('smaps: each mapping\'s range and Rss in bytes', () => {
  const vmas = parseSmaps(SMAPS);
  assert.deepEqual(vmas.map((v) => v.rss / KiB), [5620, 4, 125056, 4, 73728]);
  assert.deepEqual(vmas[2], { ...MEM0, rss: 125056 * KiB });
  assert.deepEqual(vmas[4], { start: 0x7f60fc000000, end: 0x7f613bfff000, rss: 73728 * KiB });
  assert.deepEqual(parseSmaps(''), []);
  assert.deepEqual(parseSmaps('7f00-8000 ---p 00000000 00:00 0\nSize: 4 kB\n'), [{ start: 0x7f00, end: 0x8000, rss: 0 }], 'no Rss line: 0');
});

test('a RAM block\'s host range: from one range\'s address less its offset, to the end of its farthest range', () => {
  // mem0 of a 1 GiB pc guest: the VGA window (0xa0000-0xc0000) splits it; one gpa2hva asked, at its first range
  const blocks = ramBlocks([
    { start: 0, end: 0xa0000, region: 'mem0', offset: 0, hva: MEM0.start },
    { start: 0xc0000, end: 0x40000000, region: 'mem0', offset: 0xc0000, hva: null },
    // the address known only for a later range: the block still starts at offset 0
    { start: 0x108000000, end: 0x110000000, region: 'vmem0', offset: 0x8000000, hva: 0x7f7000000000 + 0x8000000 },
    { start: 0x100000000, end: 0x108000000, region: 'vmem0', offset: 0, hva: null },
    // no address for this region at all: left out
    { start: 0x200000000, end: 0x201000000, region: 'mem1', offset: 0, hva: null },
  ]);
  assert.deepEqual(blocks, [MEM0, { start: 0x7f7000000000, end: 0x7f7010000000 }]);
});

test('guest RAM resident: the Rss of the mappings of its blocks only, not QEMU\'s heap or translation buffer', () => {
  const vmas = parseSmaps(SMAPS);
  assert.equal(residentIn(vmas, [MEM0]), 125056 * KiB, 'exactly mem0\'s mapping');
  const all = vmas.reduce((a, v) => a + v.rss, 0);
  assert.equal(all - residentIn(vmas, [MEM0]), (5620 + 4 + 4 + 73728) * KiB, 'what QEMU\'s Rss holds besides');
  assert.equal(residentIn(vmas, []), 0);
  // a range that covers part of a mapping counts that share of its Rss
  const tcg = vmas[4]!;
  assert.equal(residentIn(vmas, [{ start: tcg.start, end: tcg.start + (tcg.end - tcg.start) / 2 }]), Math.round(73728 * KiB / 2));
  // two ranges that together cover a mapping count it whole
  assert.equal(residentIn(vmas, [{ start: MEM0.start, end: MEM0.start + 0x10000000 }, { start: MEM0.start + 0x10000000, end: MEM0.end }]), 125056 * KiB);
});
