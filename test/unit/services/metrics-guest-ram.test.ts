/**
 * MetricsService's guest RAM resident: the RAM blocks are learnt from QEMU (flat view, one gpa2hva per block) once
 * per QEMU and RAM size, and each sample reads only /proc/PID/smaps (a fake /proc holding a real QEMU's mappings).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MetricsService } from '../../../src/services/metrics.js';
import type { InstanceService } from '../../../src/services/instances.js';
import { FIXTURES } from '../fixtures.js';

const KiB = 1024;
const SMAPS = readFileSync(join(FIXTURES, 'memory', 'qemu-tcg-1g.smaps'), 'utf8');
// mem0 of a 1 GiB pc guest, split by the VGA window; its address is the fixture's 1 GiB mapping
const MTREE = `FlatView #1
 AS "memory", root: system
 Root memory region: system
  0000000000000000-000000000009ffff (prio 0, ram): mem0
  00000000000a0000-00000000000bffff (prio 1, i/o): vga-lowmem
  00000000000c0000-000000003fffffff (prio 0, ram): mem0 @00000000000c0000
  00000000fffc0000-00000000ffffffff (prio 0, rom): pc.bios
`;

test('guest RAM resident: its blocks learnt once per QEMU and RAM size, then only smaps read at each sample', async () => {
  const proc = mkdtempSync(join(tmpdir(), 'corral-proc-'));
  try {
    mkdirSync(join(proc, '4242'));
    const stat = (start: number): void => writeFileSync(join(proc, '4242', 'stat'), `4242 (qemu) S ${'0 '.repeat(18)}${start} 0\n`);
    stat(1000);
    writeFileSync(join(proc, '4242', 'smaps'), SMAPS);
    writeFileSync(join(proc, '4242', 'smaps_rollup'), 'Rss:  205000 kB\n');
    const asked: string[] = [];
    const vm = {
      vcpus: async () => [], blockStats: async () => [],
      memdevs: async () => { asked.push('memdevs'); return ['mem0']; },
      memoryTree: async () => { asked.push('mtree'); return MTREE; },
      gpaToHva: async (gpa: number) => { asked.push(`gpa2hva ${gpa}`); return `Host virtual address for 0x${gpa.toString(16)} (mem0) is 0x7f60bbe00000`; },
    };
    const row = { name: 'a', uuid: 'u1', state: 'running', pid: 4242, spec: { cpus: 1, memory: 2 ** 30, maxMemory: null, balloon: false, nics: [] } };
    const instances = { listRows: () => [row], live: () => ({ row, pid: 4242, vm }) } as unknown as InstanceService;
    const m = new MetricsService({ instances, proc });
    const guest = async (): Promise<number | null> => (await m.samples())[0]!.guestResidentBytes;

    assert.equal(await guest(), 125056 * KiB, 'the Rss of mem0\'s mapping alone');
    assert.deepEqual(asked, ['mtree', 'memdevs', 'gpa2hva 0'], 'one gpa2hva for the block');
    assert.equal((await m.samples())[0]!.residentBytes, 205000 * KiB, 'QEMU\'s Rss is still smaps_rollup\'s');
    // the guest touches more: the next sample sees it, without asking QEMU again
    writeFileSync(join(proc, '4242', 'smaps'), SMAPS.replace('Rss:              125056 kB', 'Rss:              262144 kB'));
    assert.equal(await guest(), 262144 * KiB);
    assert.equal(asked.length, 3, 'nothing asked of QEMU again');
    // a resize (the spec's memory changes), then a new QEMU with the same pid: learnt again each time
    row.spec.memory = 2 ** 29;
    await guest();
    assert.equal(asked.length, 6);
    stat(2000);
    await guest();
    assert.equal(asked.length, 9);
    // no smaps to read: no figure, not a guess
    rmSync(join(proc, '4242', 'smaps'));
    assert.equal(await guest(), null);
  } finally {
    rmSync(proc, { recursive: true, force: true });
  }
});
