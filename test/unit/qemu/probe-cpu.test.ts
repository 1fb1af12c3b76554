/**
 * The CPU models probe (qemu/probe-cpu.ts) against fake QEMU binaries that speak QMP on stdio: the runnable models
 * out of query-cpu-definitions (no unavailable feature; host, max and base left out), the cache that spares the next
 * start a QEMU, and a QEMU that fails.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseCpuDefinitions, probeCpuModels, queryCpuDefinitions, runnableModels } from '../../../src/qemu/probe-cpu.js';

// a part of QEMU 7.2's answer under TCG
const DEFS = [
  { name: 'max', typename: 'max-x86_64-cpu', 'unavailable-features': [], static: false, 'migration-safe': false, deprecated: false },
  { name: 'host', typename: 'host-x86_64-cpu', 'unavailable-features': ['kvm'], static: false, 'migration-safe': false, deprecated: false },
  { name: 'base', typename: 'base-x86_64-cpu', 'unavailable-features': [], static: true, 'migration-safe': true, deprecated: false },
  { name: 'qemu64-v1', typename: 'qemu64-v1-x86_64-cpu', 'unavailable-features': [], static: false, 'migration-safe': true, deprecated: false },
  { name: 'Westmere-v2', typename: 'Westmere-v2-x86_64-cpu', 'unavailable-features': ['spec-ctrl'], static: false, 'migration-safe': true, deprecated: false },
  { name: 'Westmere-v1', typename: 'Westmere-v1-x86_64-cpu', 'unavailable-features': [], static: false, 'migration-safe': true, deprecated: false },
  { name: 'Westmere', 'alias-of': 'Westmere-v1', typename: 'Westmere-x86_64-cpu', 'unavailable-features': [], static: false, 'migration-safe': true, deprecated: false },
  { name: 'Haswell-v4', typename: 'Haswell-v4-x86_64-cpu', 'unavailable-features': ['pcid', 'x2apic', 'tsc-deadline', 'invpcid', 'spec-ctrl'], static: false, 'migration-safe': true, deprecated: false },
];

function fakeQemu(dir: string, reply: string): string {
  const f = join(dir, 'fake-qemu');
  writeFileSync(f, `#!/bin/sh
echo "$@" >> ${join(dir, 'runs')}
echo '{"QMP": {"version": {"qemu": {"micro": 22, "minor": 2, "major": 7}}, "capabilities": ["oob"]}}'
read caps; echo '{"return": {}}'
read query; echo '${reply}'
sleep 5
`);
  chmodSync(f, 0o755);
  return f;
}

async function inDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'corral-cpu-probe-'));
  try {
    await fn(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test('the runnable named models: no unavailable feature; host, max and base are no named models; aliases count', () => {
  const defs = parseCpuDefinitions(DEFS);
  assert.deepEqual(defs.find((d) => d.name === 'Westmere'), { name: 'Westmere', aliasOf: 'Westmere-v1', unavailable: [], deprecated: false });
  assert.deepEqual(runnableModels(defs), ['Westmere', 'Westmere-v1', 'qemu64-v1']);
  assert.throws(() => parseCpuDefinitions({ not: 'a list' }), /no list/);
});

test('a QEMU with no guest is asked over QMP on its stdio, under the accelerator given', async () => {
  await inDir(async (dir) => {
    const bin = fakeQemu(dir, JSON.stringify({ return: DEFS, id: 'cpu-definitions' }));
    const defs = await queryCpuDefinitions('kvm', { binary: bin });
    assert.equal(defs.length, DEFS.length);
    assert.match(readFileSync(join(dir, 'runs'), 'utf8'), /-machine none,accel=kvm .*-qmp stdio/);
  });
});

test('the models are cached for this boot, binary, QEMU version and accelerator: the next probe runs no QEMU', async () => {
  await inDir(async (dir) => {
    const bin = fakeQemu(dir, JSON.stringify({ return: DEFS, id: 'cpu-definitions' }));
    const cacheFile = join(dir, 'cache', 'cpu-models.json');
    const o = { accel: 'tcg' as const, qemuVersion: '7.2.22', cacheFile, binary: bin };
    assert.deepEqual(await probeCpuModels(o), ['Westmere', 'Westmere-v1', 'qemu64-v1']);
    assert.deepEqual(await probeCpuModels(o), ['Westmere', 'Westmere-v1', 'qemu64-v1']);
    assert.equal(readFileSync(join(dir, 'runs'), 'utf8').trim().split('\n').length, 1, 'one QEMU for two probes');
    await probeCpuModels({ ...o, qemuVersion: '8.2.0' });
    await probeCpuModels({ ...o, accel: 'kvm' });
    assert.equal(readFileSync(join(dir, 'runs'), 'utf8').trim().split('\n').length, 3, 'another version or accelerator probes again');
  });
});

test('QEMU\'s error and a QEMU that exits are coded errors', async () => {
  await inDir(async (dir) => {
    const bin = fakeQemu(dir, JSON.stringify({ error: { class: 'GenericError', desc: 'no such thing' }, id: 'cpu-definitions' }));
    await assert.rejects(queryCpuDefinitions('tcg', { binary: bin }), (e: Error & { code?: string }) => e.code === 'QEMU_FAILED' && /no such thing/.test(e.message));
    const dead = join(dir, 'dead-qemu');
    writeFileSync(dead, '#!/bin/sh\necho "qemu-system-x86_64: -machine none,accel=kvm: failed to initialize kvm: Permission denied" >&2\nexit 1\n');
    chmodSync(dead, 0o755);
    await assert.rejects(queryCpuDefinitions('kvm', { binary: dead }), (e: Error & { code?: string }) => e.code === 'QEMU_FAILED' && /Permission denied/.test(e.message));
  });
});
