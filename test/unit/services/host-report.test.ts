/**
 * What an agent reports of its host (services/host-report.ts), over a fake QEMU that answers query-cpu-definitions
 * and a fake proc/sys tree: nothing until the first probe is done (a heartbeat never waits for QEMU), then the
 * accelerator, QEMU version, runnable models and host CPU; a new probe when the accelerator changes; a failed probe
 * is not tried again at every beat; the memory report read afresh.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { HostReporter } from '../../../src/services/host-report.js';

const DEFS = [
  { name: 'max', 'unavailable-features': [] },
  { name: 'qemu64-v1', 'unavailable-features': [] },
  { name: 'Westmere-v1', 'unavailable-features': [] },
  { name: 'Haswell-v4', 'unavailable-features': ['pcid'] },
];

function tree(): { dir: string; qemu: string } {
  const dir = mkdtempSync(join(tmpdir(), 'corral-host-report-'));
  const qemu = join(dir, 'fake-qemu');
  writeFileSync(qemu, `#!/bin/sh
echo "$@" >> ${join(dir, 'runs')}
echo '{"QMP": {"version": {}, "capabilities": []}}'
read caps; echo '{"return": {}}'
read query; echo '${JSON.stringify({ return: DEFS, id: 'cpu-definitions' })}'
sleep 5
`);
  chmodSync(qemu, 0o755);
  mkdirSync(join(dir, 'proc'));
  writeFileSync(join(dir, 'proc', 'cpuinfo'), 'processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Test CPU @ 1.00GHz\nflags\t\t: sse2 fpu avx2\n\n');
  writeFileSync(join(dir, 'proc', 'meminfo'), 'MemTotal:       16384000 kB\nMemAvailable:    8192000 kB\n');
  const hp = join(dir, 'sys', 'kernel', 'mm', 'hugepages', 'hugepages-2048kB');
  mkdirSync(hp, { recursive: true });
  writeFileSync(join(hp, 'nr_hugepages'), '64\n');
  writeFileSync(join(hp, 'free_hugepages'), '60\n');
  return { dir, qemu };
}

test('the CPU report follows the first probe and the accelerator; the memory report is read afresh', async () => {
  const { dir, qemu } = tree();
  try {
    let accel: 'kvm' | 'tcg' = 'tcg';
    const host = {
      capabilities: async () => ({ binary: qemu, version: '7.2.22', machines: [], devices: [] }),
      accelerator: async () => ({ accel, reason: 'test', forced: true, probedAt: '', probeMs: 0 }),
    };
    const r = new HostReporter(host, { cacheFile: join(dir, 'cache.json'), proc: join(dir, 'proc'), sys: join(dir, 'sys') });
    assert.equal(r.cpu(), null, 'nothing before the first probe is done: a heartbeat does not wait');
    const got = await r.ready();
    assert.deepEqual(got, { accel: 'tcg', qemuVersion: '7.2.22', models: ['Westmere-v1', 'qemu64-v1'], hostCpu: { vendor: 'GenuineIntel', model: 'Test CPU @ 1.00GHz', flags: ['avx2', 'fpu', 'sse2'] } });
    assert.deepEqual(r.cpu(), got);
    await r.ready(); // the probe that call started: the same accelerator, nothing run

    accel = 'kvm';
    assert.equal((await r.ready())!.accel, 'kvm', 'the accelerator changed (a provisional TCG): probed again');
    assert.equal(readFileSync(join(dir, 'runs'), 'utf8').trim().split('\n').length, 2, 'one QEMU per accelerator');

    assert.deepEqual(r.memory(), { available: 8192000 * 1024, hugepages: [{ size: 2 * 1024 * 1024, total: 64, free: 60 }] });
    writeFileSync(join(dir, 'sys', 'kernel', 'mm', 'hugepages', 'hugepages-2048kB', 'free_hugepages'), '10\n');
    assert.equal(r.memory().hugepages[0]!.free, 10);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a QEMU that cannot list its models leaves the report null, and is not run again at every beat', async () => {
  const { dir } = tree();
  try {
    const dead = join(dir, 'dead-qemu');
    writeFileSync(dead, `#!/bin/sh\necho run >> ${join(dir, 'dead-runs')}\necho "qemu-system-x86_64: no" >&2\nexit 1\n`);
    chmodSync(dead, 0o755);
    const warned: string[] = [];
    const r = new HostReporter({
      capabilities: async () => ({ binary: dead, version: '7.2.22', machines: [], devices: [] }),
      accelerator: async () => ({ accel: 'tcg' as const, reason: 'test', forced: true, probedAt: '', probeMs: 0 }),
    }, { cacheFile: join(dir, 'cache.json'), proc: join(dir, 'proc'), sys: join(dir, 'sys'), log: { warn: (_o, m) => { warned.push(m); } } });
    assert.equal(await r.ready(), null);
    assert.equal(await r.ready(), null);
    assert.equal(r.cpu(), null);
    assert.equal(readFileSync(join(dir, 'dead-runs'), 'utf8').trim().split('\n').length, 1, 'one QEMU, not one a beat');
    assert.equal(warned.length, 1);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
