import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { findQemusByUuid, isQemuOf, processStartTicks, residentBytes, stuckThreads } from '../../../src/qemu/proc.js';

const UUID = '0b7c9a52-6d3e-4a51-9a53-3f1d2b1e9c01';

function fakeProc(): string {
  const root = mkdtempSync(join(tmpdir(), 'corral-proc-'));
  const add = (pid: number, argv: string[], state = 'S', start = 4242): void => {
    mkdirSync(join(root, String(pid)));
    writeFileSync(join(root, String(pid), 'cmdline'), `${argv.join('\0')}\0`);
    // comm may hold spaces and parentheses: the parser must split after the last ')'.
    const fields = [state, ...Array.from({ length: 18 }, () => '0'), String(start), '0'];
    writeFileSync(join(root, String(pid), 'stat'), `${pid} (qemu (x) y) ${fields.join(' ')}\n`);
    writeFileSync(join(root, String(pid), 'status'), 'Name:\tqemu\nVmRSS:\t  204800 kB\n');
  };
  add(100, ['/usr/bin/qemu-system-x86_64', '-name', 'guest=a', '-uuid', UUID]);
  add(101, ['/usr/bin/qemu-system-x86_64', '-uuid', 'ffffffff-0000-0000-0000-000000000000']);
  add(102, ['/bin/sleep', '-uuid', UUID]);
  add(103, ['/usr/bin/qemu-system-x86_64', '-uuid', UUID], 'Z');
  return root;
}

test('a pid is trusted only if it is a live QEMU with this uuid and the same start time', () => {
  const proc = fakeProc();
  try {
    assert.equal(processStartTicks(100, proc), 4242);
    assert.equal(isQemuOf(100, UUID, 4242, proc), true);
    assert.equal(isQemuOf(100, UUID, null, proc), true);
    assert.equal(isQemuOf(100, UUID, 1, proc), false, 'pid reused by a later process');
    assert.equal(isQemuOf(101, UUID, null, proc), false, 'another instance');
    assert.equal(isQemuOf(102, UUID, null, proc), false, 'not QEMU');
    assert.equal(isQemuOf(103, UUID, null, proc), false, 'a zombie is dead');
    assert.equal(isQemuOf(999, UUID, null, proc), false, 'no such process');
    assert.deepEqual(findQemusByUuid(UUID, proc), [100]);
    assert.equal(residentBytes(100, proc), 204800 * 1024);
  } finally {
    rmSync(proc, { recursive: true, force: true });
  }
});

test('stuckThreads names each thread of a process with its state and wait channel; nothing for a process gone', () => {
  const root = mkdtempSync(join(tmpdir(), 'corral-proc-'));
  try {
    for (const [tid, name, state, wchan] of [[700, 'qemu-storage-d', 'S', 'do_sys_poll'], [701, 'worker (io)', 'D', 'io_schedule']] as const) {
      const dir = join(root, '700', 'task', String(tid));
      mkdirSync(dir, { recursive: true });
      writeFileSync(join(dir, 'stat'), `${tid} (${name}) ${state} 1 700 700 0 -1\n`);
      writeFileSync(join(dir, 'wchan'), wchan);
    }
    assert.equal(stuckThreads(700, root), '700 S do_sys_poll (qemu-storage-d); 701 D io_schedule (worker (io))');
    assert.equal(stuckThreads(999, root), '');
    // the real thing: this process's own threads
    assert.match(stuckThreads(process.pid), new RegExp(`^${process.pid} [RS] \\S+ \\(`));
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
