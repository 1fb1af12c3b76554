/**
 * CPU models across a cluster (core/cpu-models.ts) over made-up host reports: the generations table's order, the
 * cluster baseline (the most capable model every up host of an accelerator runs), and whether an instance's CPU can
 * move to a host (named models, host passthrough, max, accelerators, hosts that never reported).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  bestModel, clusterBaseline, clusterBaselines, compareModels, cpuMigrationProblem, effectiveModel, modelRank, type CpuReport,
} from '../../../src/core/cpu-models.js';

const XEON = { vendor: 'GenuineIntel', model: 'Intel(R) Xeon(R) Gold 6248 CPU @ 2.50GHz', flags: ['avx2', 'avx512f', 'sse4_2', 'vmx'] };
const EPYC = { vendor: 'AuthenticAMD', model: 'AMD EPYC 7543 32-Core Processor', flags: ['avx2', 'sse4_2', 'svm'] };

function report(models: string[], more: Partial<CpuReport> = {}): CpuReport {
  return { accel: 'kvm', qemuVersion: '7.2.22', models: [...models].sort(), hostCpu: XEON, ...more };
}

// what QEMU 7.2 reports runnable on three kinds of host (a few of the names each)
const CASCADELAKE = report(['qemu64', 'qemu64-v1', 'kvm64-v1', 'Nehalem-v1', 'Westmere-v1', 'Westmere-v2', 'SandyBridge-v2', 'Haswell-v4', 'Haswell-noTSX-IBRS',
  'Broadwell-v4', 'Skylake-Client-v4', 'Skylake-Server-v3', 'Skylake-Server-v4', 'Cascadelake-Server-v4', 'Cascadelake-Server-noTSX']);
const HASWELL = report(['qemu64', 'qemu64-v1', 'kvm64-v1', 'Nehalem-v1', 'Westmere-v1', 'Westmere-v2', 'SandyBridge-v2', 'Haswell-v2', 'Haswell-v4', 'Haswell-noTSX-IBRS'],
  { hostCpu: { ...XEON, model: 'Intel(R) Xeon(R) CPU E5-2680 v3 @ 2.50GHz' } });
const MILAN = report(['qemu64-v1', 'kvm64-v1', 'Opteron_G1-v1', 'Opteron_G2-v1', 'Opteron_G3-v1', 'EPYC-v3', 'EPYC-Rome-v2', 'EPYC-Milan-v1'], { hostCpu: EPYC });
// under TCG (the real list of QEMU 7.2's runnable models, less the 32-bit ones)
const TCG = report(['Conroe-v1', 'Nehalem-v1', 'Opteron_G1-v1', 'Opteron_G2-v1', 'Penryn-v1', 'Westmere', 'Westmere-v1', 'kvm64-v1', 'qemu64-v1'], { accel: 'tcg' });

test('the generations table: x86-64 level first, then the generation in its family, then the version; other names are not ranked', () => {
  assert.deepEqual(modelRank('Haswell-v4'), { family: 'intel', level: 3, generation: 6, version: 4 });
  assert.equal(modelRank('Haswell'), null, 'an unversioned alias means what the machine type says: not a baseline');
  assert.equal(modelRank('Haswell-noTSX'), null);
  assert.equal(modelRank('max'), null);
  assert.equal(modelRank('pentium3-v1'), null, '32-bit models are no baseline of a 64-bit guest');
  assert.ok(compareModels('Westmere-v1', 'Nehalem-v2') > 0, 'a later generation wins over a newer version of an older one');
  assert.ok(compareModels('Haswell-v4', 'Haswell-v1') > 0);
  assert.ok(compareModels('Westmere-v1', 'Opteron_G2-v1') > 0, 'x86-64-v2 above v1 across vendors');
  assert.ok(compareModels('Opteron_G4-v1', 'Penryn-v1') > 0, 'an AMD v2 model above an Intel v1 one');
  assert.ok(compareModels('Skylake-Server-v1', 'EPYC-Milan-v1') > 0, 'AVX-512 (v4) above v3');
  assert.ok(compareModels('qemu64-v1', 'something-else') > 0, 'a ranked model above an unranked name');
  assert.equal(bestModel(CASCADELAKE.models), 'Cascadelake-Server-v4');
  assert.equal(bestModel(TCG.models), 'Westmere-v1');
  assert.equal(bestModel(['max', 'host', 'Haswell']), null);
});

test('the cluster baseline is the most capable model every up host of the accelerator runs', () => {
  const hosts = [
    { name: 'h1', state: 'up', cpu: CASCADELAKE },
    { name: 'h2', state: 'up', cpu: HASWELL },
  ];
  assert.deepEqual(clusterBaseline(hosts, 'kvm'), { accel: 'kvm', model: 'Haswell-v4', hosts: ['h1', 'h2'], unreported: [] });
  assert.equal(clusterBaseline([hosts[0]!], 'kvm')!.model, 'Cascadelake-Server-v4', 'one host: the best it runs');

  // an older host joins: the baseline comes down to what it runs too
  const withOld = [...hosts, { name: 'h3', state: 'up', cpu: report(['qemu64-v1', 'Nehalem-v1', 'Westmere-v1', 'Westmere-v2', 'SandyBridge-v2']) }];
  assert.equal(clusterBaseline(withOld, 'kvm')!.model, 'SandyBridge-v2');
  // ... but not while it is down or in maintenance, nor a host that has not reported (named as such)
  assert.equal(clusterBaseline([...hosts, { ...withOld[2]!, state: 'unreachable' }], 'kvm')!.model, 'Haswell-v4');
  assert.equal(clusterBaseline([...hosts, { ...withOld[2]!, state: 'maintenance' }], 'kvm')!.model, 'Haswell-v4');
  assert.deepEqual(clusterBaseline([...hosts, { name: 'h4', state: 'up', cpu: null }], 'kvm'), { accel: 'kvm', model: 'Haswell-v4', hosts: ['h1', 'h2'], unreported: ['h4'] });

  // Intel and AMD together: only the generic models are common
  assert.equal(clusterBaseline([...hosts, { name: 'amd1', state: 'up', cpu: MILAN }], 'kvm')!.model, 'kvm64-v1');
  // nothing in common at all
  assert.equal(clusterBaseline([{ name: 'a', state: 'up', cpu: report(['Haswell-v4']) }, { name: 'b', state: 'up', cpu: report(['EPYC-v3']) }], 'kvm')!.model, null);
});

test('baselines are per accelerator: TCG hosts do not pull the KVM baseline down, and none without a host of it', () => {
  const hosts = [{ name: 'k1', state: 'up', cpu: CASCADELAKE }, { name: 't1', state: 'up', cpu: TCG }];
  assert.equal(clusterBaseline(hosts, 'kvm')!.model, 'Cascadelake-Server-v4');
  assert.equal(clusterBaseline(hosts, 'tcg')!.model, 'Westmere-v1');
  assert.equal(clusterBaseline([hosts[1]!], 'kvm'), null);
  assert.deepEqual(clusterBaselines(hosts).map((b) => [b.accel, b.model]), [['kvm', 'Cascadelake-Server-v4'], ['tcg', 'Westmere-v1']]);
  assert.deepEqual(clusterBaselines([]), []);
});

test('a named model moves only to a host that runs it, under the same accelerator', () => {
  assert.equal(cpuMigrationProblem('Haswell-v4', 'kvm', CASCADELAKE, HASWELL, 'h2'), null);
  assert.equal(cpuMigrationProblem('Haswell-noTSX-IBRS', 'kvm', CASCADELAKE, HASWELL, 'h2'), null, 'an alias QEMU lists runnable');
  const why = cpuMigrationProblem('Cascadelake-Server-v4', 'kvm', CASCADELAKE, HASWELL, 'h2');
  assert.match(why!, /host h2 cannot run the CPU model Cascadelake-Server-v4 under KVM .*the most capable it runs is Haswell-v4/);
  assert.match(cpuMigrationProblem('Haswell-v4', 'kvm', CASCADELAKE, { ...HASWELL, accel: 'tcg' }, 'h2')!, /runs under KVM and host h2 runs guests under TCG/);
  assert.match(cpuMigrationProblem('Haswell-v4', 'kvm', CASCADELAKE, null, 'h2')!, /host h2 has not reported/);
  assert.equal(cpuMigrationProblem('Haswell-v4', 'kvm', null, HASWELL, 'h2'), null, 'a named model needs nothing of the source');
});

test('host passthrough moves only between hosts with the same CPU, named in the refusal; so does max under KVM', () => {
  const sameCpu = report(CASCADELAKE.models, { hostCpu: { ...XEON, flags: [...XEON.flags].reverse() } });
  assert.equal(cpuMigrationProblem('host', 'kvm', CASCADELAKE, sameCpu, 'h2'), null, 'the same model and flags, in any order');
  assert.equal(cpuMigrationProblem('auto', 'kvm', CASCADELAKE, sameCpu, 'h2'), null, 'auto under KVM is host');
  const other = cpuMigrationProblem('host', 'kvm', CASCADELAKE, HASWELL, 'h2', 'host h1')!;
  assert.match(other, /passes the host CPU through .*host h1, Intel\(R\) Xeon\(R\) Gold 6248 CPU @ 2.50GHz \(GenuineIntel\); host h2 has Intel\(R\) Xeon\(R\) CPU E5-2680 v3/);
  const flags = cpuMigrationProblem('host', 'kvm', CASCADELAKE, report([], { hostCpu: { ...XEON, flags: ['sse4_2'] } }), 'h2')!;
  assert.match(flags, /has the same model with other CPU flags/);
  assert.match(cpuMigrationProblem('max', 'kvm', CASCADELAKE, HASWELL, 'h2')!, /cpu model max/);
  assert.match(cpuMigrationProblem('host', 'kvm', null, HASWELL, 'h2', 'host h1')!, /host h1 has not reported its CPU/);
});

test('max under TCG (auto there) moves between hosts of one QEMU version', () => {
  assert.equal(effectiveModel('auto', 'tcg'), 'max');
  assert.equal(effectiveModel('auto', 'kvm'), 'host');
  assert.equal(effectiveModel('Westmere-v1', 'tcg'), 'Westmere-v1');
  assert.equal(cpuMigrationProblem('auto', 'tcg', TCG, { ...TCG, hostCpu: EPYC }, 't2'), null, 'the host CPU does not matter under TCG');
  assert.match(cpuMigrationProblem('max', 'tcg', TCG, { ...TCG, qemuVersion: '8.2.0' }, 't2')!, /QEMU 7.2.22 emulates; host t2 has QEMU 8.2.0/);
  assert.equal(cpuMigrationProblem('Westmere-v1', 'tcg', TCG, { ...TCG, qemuVersion: '8.2.0' }, 't2'), null, 'a named model crosses QEMU versions');
});
