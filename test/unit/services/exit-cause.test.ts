import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describeExit, type ExitFacts } from '../../../src/services/exit-cause.js';
import { kernelDeathNote, parseKmsgRecord, type KernelRecord } from '../../../src/host/kmsg.js';
import { readOomKills } from '../../../src/host/cgroup-driver.js';

const base: ExitFacts = {
  pid: 4900, expected: null, crash: null, guestShutdown: false, shutdownReason: null, stopping: false,
  status: null, kernel: null, service: null, stderr: null,
};

test('describeExit: asked-for exits stop, the rest crash and say how and why', () => {
  assert.deepEqual(describeExit({ ...base, expected: 'killed by user', status: { code: null, signal: 'SIGKILL' } }), { state: 'stopped', reason: 'killed by user' });
  assert.deepEqual(describeExit({ ...base, crash: 'the guest kernel panicked' }), { state: 'crashed', reason: 'the guest kernel panicked' });
  assert.deepEqual(describeExit({ ...base, guestShutdown: true, shutdownReason: 'guest-shutdown', status: { code: 0, signal: null } }), { state: 'stopped', reason: 'the guest powered off' });
  assert.equal(describeExit({ ...base, guestShutdown: true, shutdownReason: 'host-signal', stderr: 'qemu-system-x86_64: terminating on signal 15 from pid 7 (kill)' }).reason,
    'QEMU 4900 quit on a signal from the host (qemu-system-x86_64: terminating on signal 15 from pid 7 (kill))');
  assert.deepEqual(describeExit({ ...base, stopping: true, status: { code: 0, signal: null } }), { state: 'stopped', reason: 'QEMU exited while stopping' });
  assert.deepEqual(describeExit({ ...base, status: { code: null, signal: 'SIGSEGV' }, kernel: 'segfault at 18 error 4 in libc.so.6[95087,7fd24744d000+156000]' }),
    { state: 'crashed', reason: 'QEMU 4900 was killed by SIGSEGV: segfault at 18 error 4 in libc.so.6[95087,7fd24744d000+156000]' });
  assert.equal(describeExit({ ...base, status: { code: null, signal: 'SIGKILL' }, service: "the VM's memory limit (768 MiB) was reached" }).reason,
    "QEMU 4900 was killed by SIGKILL: the VM's memory limit (768 MiB) was reached");
  assert.equal(describeExit({ ...base, status: { code: 1, signal: null }, stderr: 'qemu-system-x86_64: oops' }).reason, 'QEMU 4900 exited with code 1: QEMU said: qemu-system-x86_64: oops');
  // adopted after a daemon restart: no status, the kernel's word alone
  assert.equal(describeExit({ ...base, kernel: "killed by the kernel's OOM killer (out of memory)" }).reason, "QEMU 4900 exited unexpectedly: killed by the kernel's OOM killer (out of memory)");
  assert.equal(describeExit(base).reason, 'QEMU 4900 exited unexpectedly');
});

test('kernel log: records parse, and the note about one pid after its start is found (segfault, OOM kills); others are not', () => {
  assert.deepEqual(parseKmsgRecord('3,812,274339084,-;qemu-system-x86[4900]: segfault at 18 ip 00007fd2474bc087 sp 00007ffe4a5a69d0 error 4 in libc.so.6[95087,7fd24744d000+156000] likely on CPU 0 (core 0, socket 0)\n SUBSYSTEM=x\n'),
    { usec: 274339084, message: 'qemu-system-x86[4900]: segfault at 18 ip 00007fd2474bc087 sp 00007ffe4a5a69d0 error 4 in libc.so.6[95087,7fd24744d000+156000] likely on CPU 0 (core 0, socket 0)' });
  assert.equal(parseKmsgRecord('garbage'), null);
  const log: KernelRecord[] = [
    { usec: 100, message: 'qemu-system-x86[4900]: segfault at 0 ip 1 sp 2 error 4 in old[1]' },
    { usec: 5_000_000, message: 'qemu-system-x86[4901]: segfault at 8 ip 1 sp 2 error 6 in other[1]' },
    { usec: 6_000_000, message: 'qemu-system-x86[4900]: segfault at 18 ip 00007fd2474bc087 sp 00007ffe4a5a69d0 error 4 in libc.so.6[95087] likely on CPU 0 (core 0, socket 0)' },
    { usec: 7_000_000, message: 'Memory cgroup out of memory: Killed process 5000 (qemu-system-x86) total-vm:1000kB, anon-rss:900kB' },
    { usec: 8_000_000, message: 'Out of memory: Killed process 5001 (qemu-system-x86) total-vm:1000kB' },
  ];
  assert.equal(kernelDeathNote(log, 4900, 1_000_000), 'segfault at 18 error 4 in libc.so.6[95087]');
  assert.equal(kernelDeathNote(log.slice(0, 2), 4900, 1_000_000), null, 'a record from before the start is an older process of that pid');
  assert.equal(kernelDeathNote(log, 5000, 0), "killed by the kernel's OOM killer (memory cgroup out of memory)");
  assert.equal(kernelDeathNote(log, 5001, 0), "killed by the kernel's OOM killer (out of memory)");
  assert.equal(kernelDeathNote(log, 49, 0), null);
});

test('readOomKills reads memory.events (v2) and memory.oom_control (v1)', () => {
  const root = mkdtempSync('/tmp/corral-oom-');
  const v2 = join(root, 'v2'); mkdirSync(v2);
  writeFileSync(join(v2, 'memory.events'), 'low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n');
  assert.equal(readOomKills({ version: 'v2', name: 'corral/x', dirs: { cpu: v2, memory: v2 } }), 1);
  const v1 = join(root, 'v1'); mkdirSync(v1);
  writeFileSync(join(v1, 'memory.oom_control'), 'oom_kill_disable 0\nunder_oom 0\noom_kill 0\n');
  assert.equal(readOomKills({ version: 'v1', name: 'corral/x', dirs: { cpu: root, memory: v1 } }), 0);
  assert.equal(readOomKills({ version: 'v1', name: 'corral/x', dirs: { cpu: root } }), null);
});
