/**
 * Placement over the cluster database: spread over the up hosts, what each host reserves kept by the trigger through
 * inserts, moves and deletes, refusals naming what each host lacks, anti-affinity, and admission that stays atomic
 * when two controllers (two connection pools) place at once.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { isCorralError } from '../../../src/core/errors.js';
import { ClusterStore } from '../../../src/cluster/cluster-store.js';
import { ClusterInstances } from '../../../src/cluster/cluster-instances.js';
import { openClusterDb, type ClusterDb } from '../../../src/cluster/db.js';
import { startPostgres, type TestPostgres } from '../postgres.js';

const GiB = 1024 ** 3;
let server: TestPostgres;
let db: ClusterDb;
let db2: ClusterDb;
let store: ClusterStore;
let placer: ClusterInstances;
let placer2: ClusterInstances;

before(async () => {
  server = await startPostgres();
  db = await openClusterDb(server.url);
  db2 = await openClusterDb(server.url);
  store = new ClusterStore(db.pool, { unreachableAfterMs: 60_000 });
  placer = new ClusterInstances(db.pool, { unreachableAfterMs: 60_000, policy: 'spread' });
  placer2 = new ClusterInstances(db2.pool, { unreachableAfterMs: 60_000, policy: 'spread' });
  let n = 0;
  for (const name of ['h1', 'h2', 'h3']) {
    n++;
    await store.insertHost({ name, uuid: randomUUID(), address: `https://10.0.0.${n}:7443`, certSerial: `0a0${n}`, certFingerprint: `fp${n}` });
    await store.heartbeat(name, { capacity: { cpus: 4, memory: 8 * GiB }, allocation: {}, agentVersion: 'test', sharedPool: name === 'h3' ? null : '/shared' });
  }
});
after(async () => {
  await db?.close();
  await db2?.close();
  await server?.stop();
});

async function reserved(): Promise<Record<string, [number, number, number]>> {
  const out: Record<string, [number, number, number]> = {};
  for (const h of await store.listHosts()) out[h.name] = [h.reserved.cpus, h.reserved.memory / GiB, h.reserved.instances];
  return out;
}

test('spread places on the host with the most room; the reservations follow inserts, moves and deletes', async () => {
  const hosts = [];
  for (const name of ['s1', 's2', 's3', 's4']) hosts.push((await placer.place({ name, cpus: 1, memory: GiB })).host.name);
  assert.deepEqual(hosts, ['h1', 'h2', 'h3', 'h1']);
  assert.deepEqual(await reserved(), { h1: [2, 2, 2], h2: [1, 1, 1], h3: [1, 1, 1] });
  await store.setMaintenance('h2', true);
  const to = await placer.relocate('s2', 'h2', 'host h2 is fenced');
  assert.equal(to.name, 'h3', 'not the host it leaves, the one with most room');
  assert.deepEqual(await reserved(), { h1: [2, 2, 2], h2: [0, 0, 0], h3: [2, 2, 2] });
  await store.setMaintenance('h2', false);
  for (const name of ['s1', 's2', 's3', 's4']) assert.equal(await placer.remove(name, 'deleted'), true);
  assert.deepEqual(await reserved(), { h1: [0, 0, 0], h2: [0, 0, 0], h3: [0, 0, 0] });
});

test('what cannot be placed is NO_HOST_FITS naming what each host lacks; nothing is reserved', async () => {
  await store.setMaintenance('h3', true);
  await assert.rejects(placer.place({ name: 'big', cpus: 2, memory: 9 * GiB }), (e) => {
    assert.ok(isCorralError(e));
    assert.equal(e.code, 'NO_HOST_FITS');
    assert.deepEqual(e.details.hosts, ['h1 lacks memory (8 GiB free of 8 GiB, 9 GiB asked)', 'h2 lacks memory (8 GiB free of 8 GiB, 9 GiB asked)', 'h3 is maintenance']);
    return true;
  });
  await assert.rejects(placer.place({ name: 'sh', cpus: 1, memory: GiB, shared: true, host: 'h3' }), (e) => isCorralError(e) && e.code === 'HOST_UNAVAILABLE');
  await store.setMaintenance('h3', false);
  await assert.rejects(placer.place({ name: 'sh', cpus: 1, memory: GiB, shared: true, host: 'h3' }), (e) => isCorralError(e) && e.code === 'NO_HOST_FITS' && /h3 mounts no shared pool/.test(e.message));
  assert.equal(await placer.get('big'), null);
  assert.deepEqual(await reserved(), { h1: [0, 0, 0], h2: [0, 0, 0], h3: [0, 0, 0] });
});

test('two controllers placing at once never overcommit a host: 12 vCPUs of room, 20 asked for, 12 placed', async () => {
  const tries = await Promise.allSettled(Array.from({ length: 20 }, (_, i) => (i % 2 ? placer2 : placer).place({ name: `c${i}`, cpus: 1, memory: GiB / 4 })));
  const placed = tries.filter((t) => t.status === 'fulfilled');
  assert.equal(placed.length, 12);
  for (const t of tries) if (t.status === 'rejected') assert.equal((t.reason as { code?: string }).code, 'NO_HOST_FITS');
  assert.deepEqual(Object.values(await reserved()).map((r) => r[0]), [4, 4, 4]);
  const rows = await placer.list();
  assert.equal(rows.length, 12);
  for (const r of rows) await placer.remove(r.name, 'deleted');
});

test('anti-affinity keeps a group on different hosts, also across two controllers at once', async () => {
  const tries = await Promise.allSettled(['w1', 'w2', 'w3', 'w4'].map((name, i) => (i % 2 ? placer2 : placer).place({ name, cpus: 1, memory: GiB, group: 'web', antiAffinity: true })));
  const hosts = tries.filter((t) => t.status === 'fulfilled').map((t) => (t as PromiseFulfilledResult<{ host: { name: string } }>).value.host.name).sort();
  assert.deepEqual(hosts, ['h1', 'h2', 'h3']);
  const refused = tries.find((t) => t.status === 'rejected') as PromiseRejectedResult;
  assert.match(refused.reason.message, /h1 already holds an instance of group "web" \(anti-affinity\); h2 already holds .*; h3 already holds/);
});

test('host labels: a request goes only to hosts that carry them all, NO_HOST_FITS names what each lacks, a relocation asks for them again', async () => {
  for (const r of await placer.list()) await placer.remove(r.name, 'test cleanup');
  await store.setLabels('h2', { zone: 'b', disk: 'ssd' });
  await store.setLabels('h3', { zone: 'b' });
  // h1 has the most room, h2 more than h3: spread would pick h1 for a request without labels
  await placer.place({ name: 'f2', cpus: 1, memory: GiB, host: 'h2' });
  await placer.place({ name: 'f3', cpus: 1, memory: 2 * GiB, host: 'h3' });
  const l1 = await placer.place({ name: 'l1', cpus: 1, memory: GiB, labels: { zone: 'b' } });
  assert.equal(l1.host.name, 'h2');
  assert.deepEqual((await placer.get('l1'))!.hostLabels, { zone: 'b' }, 'the labels are kept with the instance');
  const u1 = await placer.place({ name: 'u1', cpus: 1, memory: GiB });
  assert.equal(u1.host.name, 'h1');
  assert.equal(u1.instance.hostLabels, null);
  assert.equal((await placer.place({ name: 'l2', cpus: 1, memory: GiB, labels: { zone: 'b', disk: 'ssd' } })).host.name, 'h2', 'the one host with both');

  const refused = (hosts: string[], ...words: string[]) => (e: unknown): boolean => {
    assert.ok(isCorralError(e), String(e));
    assert.equal(e.code, 'NO_HOST_FITS');
    assert.deepEqual(e.details.hosts, hosts);
    for (const w of words) assert.ok(e.message.includes(w), `${e.message} says ${w}`);
    return true;
  };
  await assert.rejects(placer.place({ name: 'x1', cpus: 1, memory: GiB, labels: { zone: 'c' } }),
    refused(['h1 lacks the label zone=c', 'h2 lacks the label zone=c', 'h3 lacks the label zone=c'], 'no host can take 1 vCPU and 1 GiB with the host label zone=c: h1 lacks'));
  await assert.rejects(placer.place({ name: 'x1', cpus: 1, memory: GiB, labels: { zone: 'b', gpu: 'yes' } }),
    refused(['h1 lacks the labels zone=b, gpu=yes', 'h2 lacks the label gpu=yes', 'h3 lacks the label gpu=yes'], 'with the host labels zone=b, gpu=yes'));
  assert.equal(await placer.get('x1'), null);

  // an HA restart leaving h2: h3 is the other host labelled zone=b, though h1 has more room
  assert.equal((await placer.relocate('l1', 'h2', 'host h2 is fenced')).name, 'h3');
  assert.equal((await placer.get('l1'))!.host, 'h3');
  await store.setLabels('h3', { zone: null });
  await assert.rejects(placer.relocate('l2', 'h2', 'host h2 is fenced'), refused(['h1 lacks the labels disk=ssd, zone=b', 'h3 lacks the labels disk=ssd, zone=b']));
  assert.equal((await placer.get('l2'))!.host, 'h2', 'left where it was');

  for (const r of await placer.list()) await placer.remove(r.name, 'test cleanup');
  await store.setLabels('h2', { zone: null, disk: null });
  assert.deepEqual((await store.listHosts()).map((h) => h.labels), [{}, {}, {}]);
});
