import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { bootProbe, decideAccelerator } from '../../../src/qemu/probe.js';

// Fake QEMU binaries stand in for the three things a real host does: boot, hang, or refuse.
function fakeQemu(dir: string, body: string): string {
  const f = join(dir, 'fake-qemu');
  writeFileSync(f, `#!/bin/sh\n${body}\n`);
  chmodSync(f, 0o755);
  return f;
}

const kernel = { kernel: '/nonexistent/vmlinuz', initrd: '/nonexistent/initrd' };

test('a guest that reports back within the limit means the accelerator works', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'corral-probe-'));
  try {
    const r = await bootProbe('kvm', kernel, 5000, fakeQemu(dir, 'echo "[    0.1] booting"; echo corral-probe ok; sleep 5'));
    assert.equal(r.ok, true);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a guest that hangs (KVM_CREATE_VM works, the 64-bit guest does not) is caught by the time limit', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'corral-probe-'));
  try {
    const r = await bootProbe('kvm', kernel, 400, fakeQemu(dir, 'echo "Probing EDD"; sleep 30'));
    assert.equal(r.ok, false);
    assert.match(r.why, /did not finish booting within 400 ms/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("QEMU refusing KVM gives QEMU's own error line as the reason", async () => {
  const dir = mkdtempSync(join(tmpdir(), 'corral-probe-'));
  try {
    const r = await bootProbe('kvm', kernel, 5000, fakeQemu(dir, 'echo "qemu-system-x86_64: failed to set MSR 0x10a to 0x0" >&2; exit 1'));
    assert.equal(r.ok, false);
    assert.match(r.why, /failed to set MSR 0x10a/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('no /dev/kvm means TCG without probing; forcing skips the probe', async () => {
  const cacheFile = join(tmpdir(), `corral-probe-cache-${process.pid}.json`);
  const d1 = await decideAccelerator({ kernel, qemuVersion: '7.2', cacheFile, devKvm: '/nonexistent/kvm' });
  assert.equal(d1.accel, 'tcg');
  assert.match(d1.reason, /does not exist/);
  const d2 = await decideAccelerator({ force: 'kvm', kernel, qemuVersion: '7.2', cacheFile });
  assert.equal(d2.accel, 'kvm');
  assert.equal(d2.forced, true);
});
