/**
 * What hosts report of their CPUs and memory, in the cluster database, and what the controller does with it
 * (cluster/migration-checks.ts): heartbeats store the reports (a beat without the CPU report keeps the last one); a
 * create asking for cpuModel auto on a KVM host gets the cluster's KVM baseline, kept in its row for HA restarts; a
 * migration's prepare refuses a named destination that cannot run the instance's CPU or back its memory before it
 * reserves anything, and without a destination the placer leaves such hosts out, saying why.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { isCorralError } from '../../../src/core/errors.js';
import type { CpuReport } from '../../../src/core/cpu-models.js';
import { ClusterStore, type HostRow } from '../../../src/cluster/cluster-store.js';
import { ClusterInstances } from '../../../src/cluster/cluster-instances.js';
import { openClusterDb, type ClusterDb } from '../../../src/cluster/db.js';
import { hostView } from '../../../src/cluster/controller-api.js';
import { Migrator, type MigrateRequest } from '../../../src/cluster/migration.js';
import { baselinesOf, checkDestinations, withResolvedCpuModel } from '../../../src/cluster/migration-checks.js';
import { migrationOptions } from '../../../src/core/migration.js';
import type { InstanceSpec } from '../../../src/core/spec.js';
import { startPostgres, type TestPostgres } from '../postgres.js';

const GiB = 1024 ** 3;
const XEON = { vendor: 'GenuineIntel', model: 'Intel(R) Xeon(R) Gold 6248 CPU @ 2.50GHz', flags: ['avx512f', 'vmx'] };
const OLD = { vendor: 'GenuineIntel', model: 'Intel(R) Xeon(R) CPU E5-2680 v3 @ 2.50GHz', flags: ['avx2', 'vmx'] };
const cpu = (models: string[], more: Partial<CpuReport> = {}): CpuReport => ({ accel: 'kvm', qemuVersion: '7.2.22', models, hostCpu: XEON, ...more });
const NEW_MODELS = cpu(['qemu64-v1', 'Westmere-v1', 'Haswell-v4', 'Skylake-Server-v4', 'Cascadelake-Server-v4']);
const OLD_MODELS = cpu(['qemu64-v1', 'Westmere-v1', 'Haswell-v4'], { hostCpu: OLD });

let server: TestPostgres;
let db: ClusterDb;
let store: ClusterStore;
let instances: ClusterInstances;

async function addHost(name: string, n: number, report: CpuReport | null, memory = { available: 32 * GiB, hugepages: [] as Array<{ size: number; total: number; free: number }> }): Promise<void> {
  await store.insertHost({ name, uuid: randomUUID(), address: `https://10.0.0.${n}:7443`, certSerial: `0b0${n}`, certFingerprint: `fp-${name}` });
  await store.heartbeat(name, { capacity: { cpus: 16, memory: 64 * GiB }, allocation: {}, agentVersion: 'test', sharedPool: '/shared', cpuReport: report, memoryReport: memory });
}

before(async () => {
  server = await startPostgres();
  db = await openClusterDb(server.url);
  store = new ClusterStore(db.pool, { unreachableAfterMs: 60_000 });
  instances = new ClusterInstances(db.pool, { unreachableAfterMs: 60_000, policy: 'spread' });
  await addHost('k1', 1, NEW_MODELS);
  await addHost('k2', 2, NEW_MODELS, { available: 32 * GiB, hugepages: [{ size: 2 * 1024 * 1024, total: 0, free: 0 }] });
  await addHost('k3', 3, OLD_MODELS);
});
after(async () => {
  await db?.close();
  await server?.stop();
});

const coded = (code: string, ...words: string[]) => (e: unknown): boolean => {
  assert.ok(isCorralError(e), String(e));
  assert.equal(e.code, code, e.message);
  for (const w of words) assert.ok(e.message.includes(w), `${e.message} names ${w}`);
  return true;
};

test('a heartbeat stores the reports; one without the CPU report keeps the last; the host view shows them', async () => {
  const h = (await store.getHost('k1'))!;
  assert.deepEqual(h.cpuReport, NEW_MODELS);
  assert.deepEqual(h.memoryReport, { available: 32 * GiB, hugepages: [] });
  await store.heartbeat('k1', { capacity: { cpus: 16, memory: 64 * GiB }, allocation: {}, agentVersion: 'test', sharedPool: '/shared', memoryReport: { available: 30 * GiB, hugepages: [] } });
  const again = (await store.getHost('k1'))!;
  assert.deepEqual(again.cpuReport, NEW_MODELS, 'unchanged reports are not sent again: the last one stays');
  assert.equal(again.memoryReport!.available, 30 * GiB);
  assert.deepEqual(hostView(again).cpuReport, NEW_MODELS);
  assert.deepEqual(baselinesOf(await store.listHosts()).map((b) => [b.accel, b.model, b.hosts]), [['kvm', 'Haswell-v4', ['k1', 'k2', 'k3']]]);
});

test('a create with cpuModel auto placed on a KVM host gets the cluster\'s baseline, in its kept request too', async () => {
  const spec = { name: 'c1', image: 'tiny', pool: 'shared' };
  const placed = await instances.place({ name: 'c1', cpus: 1, memory: GiB, shared: true, spec, specFor: (host, hosts) => withResolvedCpuModel(spec, host, hosts) });
  assert.equal(placed.instance.spec!.cpuModel, 'Haswell-v4');
  assert.equal((await instances.get('c1'))!.spec!.cpuModel, 'Haswell-v4', 'an HA restart makes it with the same model');
  await instances.remove('c1', 'test');

  const hosts = await store.listHosts();
  const k1 = hosts.find((h) => h.name === 'k1')!;
  assert.deepEqual(withResolvedCpuModel({ cpuModel: 'Skylake-Server-v4' }, k1, hosts), { cpuModel: 'Skylake-Server-v4' }, 'a named model is the user\'s');
  assert.deepEqual(withResolvedCpuModel({ cpuModel: 'auto', accel: 'tcg' }, k1, hosts), { cpuModel: 'auto', accel: 'tcg' }, 'auto under TCG stays (max)');
  const tcgHost: HostRow = { ...k1, cpuReport: { ...NEW_MODELS, accel: 'tcg' } };
  assert.deepEqual(withResolvedCpuModel({}, tcgHost, hosts), {}, 'a TCG host: auto stays');
  assert.deepEqual(withResolvedCpuModel({}, k1, hosts.map((h) => ({ ...h, cpuReport: null }))), {}, 'no baseline yet: auto stays (host)');
});

/** A Migrator whose agents answer the instance's view, and record what was asked. */
function migrator(view: { spec: Partial<InstanceSpec>; accel: 'kvm' | 'tcg' }): { m: Migrator; calls: string[] } {
  const calls: string[] = [];
  const agents = {
    json: async (h: HostRow, method: string, path: string): Promise<unknown> => {
      calls.push(`${h.name} ${method} ${path}`);
      return { state: 'running', uuid: randomUUID(), accel: view.accel, spec: { rootPool: 'shared', disks: [], nics: [], hostdevs: [], cpuModel: 'auto', memory: GiB, maxMemory: null, hugepages: null, prealloc: false, ...view.spec } };
    },
  };
  const log = { info: () => undefined, warn: () => undefined };
  return { m: new Migrator({ store, instances, agents: agents as never, events: { record: async () => undefined } as never, log }), calls };
}
const req = (to?: string): MigrateRequest => ({ ...(to ? { to } : {}), options: migrationOptions({}), timeoutS: 60 });
const migratingTo = async (name: string): Promise<string | null> => (await db.pool.query<{ m: string | null }>('SELECT migrating_to AS m FROM instances WHERE name = $1', [name])).rows[0]!.m;

test('a migration to a host that cannot run the instance\'s CPU model is refused before anything is reserved; without --to the placer leaves it out', async () => {
  await instances.place({ name: 'g1', cpus: 1, memory: GiB, host: 'k1', shared: true });
  const { m } = migrator({ spec: { cpuModel: 'Cascadelake-Server-v4' }, accel: 'kvm' });
  await assert.rejects(m.prepare('g1', req('k3')), coded('NOT_MIGRATABLE', 'to host k3', 'cannot run the CPU model Cascadelake-Server-v4'));
  assert.equal(await migratingTo('g1'), null, 'nothing reserved');
  const p = await m.prepare('g1', req());
  assert.equal(p.to.name, 'k2', 'the only other host that runs it');
  await instances.abortMigration('g1', { type: 'test', host: 'k1', instance: 'g1', data: {} });

  // host passthrough: only to the same CPU, whose name the refusal gives
  const host = migrator({ spec: { cpuModel: 'host' }, accel: 'kvm' }).m;
  await assert.rejects(host.prepare('g1', req('k3')), coded('NOT_MIGRATABLE', 'passes the host CPU through', XEON.model, OLD.model));
  assert.equal((await host.prepare('g1', req('k2'))).to.name, 'k2', 'the same CPU');
  await instances.abortMigration('g1', { type: 'test', host: 'k1', instance: 'g1', data: {} });

  // a TCG guest has no other host running TCG: no other up host can run its CPU
  await assert.rejects(migrator({ spec: {}, accel: 'tcg' }).m.prepare('g1', req()), coded('NOT_MIGRATABLE', 'no other up host can run its CPU', 'runs guests under KVM'));
  assert.equal(await migratingTo('g1'), null);
});

test('a hugepage-backed guest goes only where its pages are free: INSUFFICIENT_RESOURCES for a named host, left out of the choice otherwise', async () => {
  const { m } = migrator({ spec: { cpuModel: 'Haswell-v4', hugepages: '2M' }, accel: 'kvm' });
  await assert.rejects(m.prepare('g1', req('k2')), coded('INSUFFICIENT_RESOURCES', 'to host k2', '2M hugepages: it needs 512, host k2 has 0 free of 0'));
  assert.equal(await migratingTo('g1'), null);
  // k3 reports no hugepage pool at all
  await assert.rejects(m.prepare('g1', req()), coded('NO_HOST_FITS', 'k2 cannot take it: the guest\'s memory is backed by 2M hugepages', 'k3 cannot take it'));
  await db.pool.query('UPDATE hosts SET memory_report = $2::jsonb WHERE name = $1', ['k3', JSON.stringify({ available: GiB, hugepages: [{ size: 2 * 1024 * 1024, total: 600, free: 600 }] })]);
  assert.equal((await m.prepare('g1', req())).to.name, 'k3');
  await instances.abortMigration('g1', { type: 'test', host: 'k1', instance: 'g1', data: {} });
});

test('checkDestinations: a host that has not reported is refused rather than guessed', async () => {
  const hosts = await store.listHosts();
  const from = hosts.find((h) => h.name === 'k1')!;
  const silent = hosts.map((h) => (h.name === 'k2' ? { ...h, cpuReport: null } : h));
  const unfit = checkDestinations({ name: 'g1', spec: { cpuModel: 'Haswell-v4', memory: GiB, maxMemory: null, hugepages: null, prealloc: false } as InstanceSpec, accel: 'kvm' }, from, silent);
  assert.deepEqual([...unfit.keys()], ['k2']);
  assert.match(unfit.get('k2')!, /has not reported what CPU models/);
});
