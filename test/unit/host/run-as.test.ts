import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CorralError } from '../../../src/core/errors.js';
import { assertReachable, giveTo, lendTo, setprivArgv, takeBack, type RunAs } from '../../../src/host/run-as.js';
import { vfioMemlock } from '../../../src/qemu/driver.js';

const who: RunAs = { user: 'corral-qemu', uid: 4242, gid: 4343, groups: [36] };
const AS_ROOT = process.getuid?.() === 0 ? false : 'changing owners needs root';

test('setpriv: the program runs as the user, with only the kvm group, no capability in any set and no_new_privs', () => {
  const [bin, args] = setprivArgv(who, 'qemu-system-x86_64', ['-name', 'x']);
  assert.equal(bin, 'setpriv');
  assert.deepEqual(args, ['--reuid=4242', '--regid=4343', '--groups=36', '--inh-caps=-all', '--bounding-set=-all', '--no-new-privs', '--', 'qemu-system-x86_64', '-name', 'x']);
  assert.ok(setprivArgv({ ...who, groups: [] }, 'q', [])[1].includes('--clear-groups'), 'no kvm group: no supplementary group at all');
  for (const bad of [{ ...who, uid: 0 }, { ...who, gid: 0 }, { ...who, uid: -1 }]) {
    assert.throws(() => setprivArgv(bad, 'q', []), (e: unknown) => e instanceof CorralError && e.code === 'INTERNAL', 'never as root');
  }
});

test('giveTo/lendTo/takeBack set owner and mode; a symlink is refused, never followed', { skip: AS_ROOT }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'corral-runas-'));
  try {
    const f = join(dir, 'disk.qcow2');
    writeFileSync(f, 'x', { mode: 0o644 });
    giveTo(who, f);
    let st = statSync(f);
    assert.deepEqual([st.uid, st.gid, st.mode & 0o7777], [4242, 4343, 0o600]);
    lendTo(who, f);
    st = statSync(f);
    assert.deepEqual([st.uid, st.gid, st.mode & 0o7777], [0, 4343, 0o640]);
    takeBack(f);
    st = statSync(f);
    assert.deepEqual([st.uid, st.gid, st.mode & 0o7777], [0, 0, 0o600]);
    giveTo(who, join(dir, 'console.log'), { create: true });
    assert.equal(statSync(join(dir, 'console.log')).uid, 4242, 'made for the user when asked');
    const run = join(dir, 'run');
    mkdirSync(run);
    giveTo(who, run, { dir: true });
    assert.equal(statSync(run).mode & 0o7777, 0o700);
    // a symlink where a file should be (planted by a guest's process) is not followed
    const target = join(dir, 'secret');
    writeFileSync(target, 's', { mode: 0o600 });
    const link = join(dir, 'efivars.fd');
    symlinkSync(target, link);
    assert.throws(() => giveTo(who, link), (e: NodeJS.ErrnoException) => e.code === 'ELOOP');
    assert.throws(() => takeBack(link), (e: NodeJS.ErrnoException) => e.code === 'ELOOP');
    assert.equal(statSync(target).uid, 0, 'the target stays root\'s');
    takeBack(join(dir, 'gone')); // nothing to take back
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a data dir under a directory QEMU\'s user cannot search is refused, saying which and how to fix it', { skip: AS_ROOT }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'corral-reach-'));
  try {
    const data = join(dir, 'private', 'corral');
    mkdirSync(data, { recursive: true });
    chmodSync(dir, 0o755);
    chmodSync(join(dir, 'private'), 0o700);
    assert.throws(() => assertReachable(data, who), (e: unknown) => e instanceof CorralError && e.code === 'INVALID_CONFIG'
      && e.message.includes(`${join(dir, 'private')} is not searchable`) && e.message.includes('chmod o+x'));
    chmodSync(join(dir, 'private'), 0o711);
    assertReachable(data, who);
    chmodSync(join(dir, 'private'), 0o710); // its group's search bit counts when the group is the user's
    assert.throws(() => assertReachable(data, who), (e: unknown) => e instanceof CorralError && e.code === 'INVALID_CONFIG');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('with a memlock limit (VFIO pins guest memory) prlimit sets it as root, then execs setpriv', () => {
  const [bin, args] = setprivArgv(who, 'qemu-system-x86_64', ['-name', 'x'], { memlock: 3 * 1024 ** 3 });
  assert.equal(bin, 'prlimit');
  assert.deepEqual(args.slice(0, 4), ['--memlock=3221225472:3221225472', '--', 'setpriv', '--reuid=4242']);
  assert.deepEqual(args.slice(-3), ['qemu-system-x86_64', '-name', 'x']);
  assert.throws(() => setprivArgv(who, 'q', [], { memlock: 0 }), (e: unknown) => e instanceof CorralError && e.code === 'INTERNAL');
  // how much: the most guest memory there can be plus 1 GiB, only with host devices
  assert.equal(vfioMemlock({ hostdevs: [], memory: 2 ** 30, maxMemory: null }), undefined);
  assert.equal(vfioMemlock({ hostdevs: [{ id: 'h0', address: '0000:05:00.0', kind: 'passthrough' }], memory: 2 ** 30, maxMemory: 4 * 2 ** 30 }), 5 * 2 ** 30);
});
