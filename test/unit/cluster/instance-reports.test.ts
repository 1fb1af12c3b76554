/**
 * Instance reports: which heartbeats carry an agent's instance list (only a changed list, a new controller, or after
 * unanswered beats), the summary picked out of an agent's reply, and the controller's side in PostgreSQL: a report
 * updates only its own host's rows, never with an older view than the row holds, names instances the cluster does
 * not know, and the list shows a lost host's instances as `unknown`, with uptime from startedAt. Every list here is
 * read three ways that must agree: the whole-table query, and the list each of two controllers keeps between
 * requests (instance-list.ts), one on another connection pool, as another controller would be.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { ReportAck, summariesHash, summaryOfReply } from '../../../src/cluster/instance-reports.js';
import type { InstanceSummary } from '../../../src/services/instance-view.js';
import { ClusterStore } from '../../../src/cluster/cluster-store.js';
import { ClusterInstances } from '../../../src/cluster/cluster-instances.js';
import { openClusterDb, type ClusterDb } from '../../../src/cluster/db.js';
import { InstanceList } from '../../../src/cluster/instance-list.js';
import { startPostgres, type TestPostgres } from '../postgres.js';

const MiB = 1024 ** 2;

function summary(name: string, more: Partial<InstanceSummary> = {}): InstanceSummary {
  return {
    name, uuid: randomUUID(), state: 'stopped', image: 'tiny', cpus: 1, memory: 64 * MiB, accel: null, pid: null, startedAt: null, lastError: null,
    updatedAt: '2026-01-01T00:00:00.000Z', ...more,
  };
}

test('a heartbeat carries the list only when it changed since the last answered beat, or goes to another controller', () => {
  const ack = new ReportAck();
  const a = summariesHash([summary('web1', { uuid: '00000000-0000-4000-8000-000000000001' })]);
  assert.equal(ack.mustSend('https://c1', a), true, 'the first beat carries it');
  ack.answered('https://c1', a);
  assert.equal(ack.mustSend('https://c1', a), false, 'unchanged: left out');
  ack.answered('https://c1', a);
  assert.equal(ack.mustSend('https://c1', a), false);
  assert.deepEqual(ack.counts, { sent: 1, omitted: 2 });

  const b = summariesHash([summary('web1', { uuid: '00000000-0000-4000-8000-000000000001', state: 'running', updatedAt: '2026-01-01T00:00:01.000Z' })]);
  assert.notEqual(a, b);
  assert.equal(ack.mustSend('https://c1', b), true, 'changed: sent');
  // that beat was not answered (an error reply): the next one carries it again
  assert.equal(ack.mustSend('https://c1', b), true);
  ack.answered('https://c1', b);
  assert.equal(ack.mustSend('https://c2', b), true, 'another controller answers: it gets the list');
  ack.answered('https://c2', b);
  assert.equal(ack.mustSend('https://c2', b), false);
  ack.lost();
  assert.equal(ack.mustSend('https://c2', b), true, 'after beats no controller answered, the list goes again');
});

test('the hash of a list follows every field, updatedAt included', () => {
  const s = summary('a', { uuid: '00000000-0000-4000-8000-000000000001' });
  assert.equal(summariesHash([s]), summariesHash([{ ...s }]));
  // the same state again after a change in between (a start then a power-off) is a new list: the controller may hold the other
  assert.notEqual(summariesHash([s]), summariesHash([{ ...s, updatedAt: '2026-01-01T00:00:09.000Z' }]));
  assert.notEqual(summariesHash([s]), summariesHash([]));
});

test('the summary of an instance in an agent\'s reply: a view, a PATCH reply, or none', () => {
  const view = {
    ...summary('web1', { state: 'running', pid: 42, accel: 'tcg', startedAt: '2026-01-01T00:00:00.000Z' }),
    firmware: 'bios', network: 'default', disk: { path: '/x', allocated: 1 }, uptime: 3, rss: 1000, spec: {}, killed: false,
  };
  const { firmware: _f, network: _n, disk: _d, uptime: _u, rss: _r, spec: _s, killed: _k, ...want } = view;
  assert.deepEqual(summaryOfReply(view, 'web1'), want);
  assert.deepEqual(summaryOfReply({ instance: view, changed: ['cpus'] }, 'web1'), want);
  assert.equal(summaryOfReply(view, 'other'), null, 'another instance\'s');
  assert.equal(summaryOfReply({ deleted: 'web1' }), null);
  assert.equal(summaryOfReply({ ...view, state: 'weird' }), null);
  assert.equal(summaryOfReply({ ...view, uuid: 'not-a-uuid' }), null);
  assert.equal(summaryOfReply(null), null);
});

let server: TestPostgres;
let db: ClusterDb;
let store: ClusterStore;
let instances: ClusterInstances;
let db2: ClusterDb;
let kept: InstanceList;
let keptElsewhere: InstanceList;
before(async () => {
  server = await startPostgres();
  db = await openClusterDb(server.url);
  db2 = await openClusterDb(server.url);
  kept = new InstanceList(db.pool, { unreachableAfterMs: 5000 });
  keptElsewhere = new InstanceList(db2.pool, { unreachableAfterMs: 5000 });
  store = new ClusterStore(db.pool, { unreachableAfterMs: 5000 });
  instances = new ClusterInstances(db.pool, { unreachableAfterMs: 5000, policy: 'spread' });
  let n = 0;
  for (const name of ['h1', 'h2']) {
    n++;
    await store.insertHost({ name, uuid: randomUUID(), address: `https://10.0.0.${n}:7443`, certSerial: `0b${n}`, certFingerprint: `fp-${name}` });
    await store.heartbeat(name, { capacity: { cpus: 16, memory: 16 * 1024 * MiB }, allocation: {}, agentVersion: '0.1.0' });
  }
});
after(async () => {
  await kept?.close();
  await keptElsewhere?.close();
  await db2?.close();
  await db?.close();
  await server?.stop();
});

/** The list, read the three ways, which must agree (uptime, counted at each read, within a second). */
async function listed(): Promise<Array<Record<string, unknown>>> {
  const [whole, mine, other] = await Promise.all([instances.listJson(), kept.listJson(), keptElsewhere.listJson()]);
  const rows = (text: string): Array<Record<string, unknown>> => JSON.parse(text).instances;
  const bare = (list: Array<Record<string, unknown>>): unknown => list.map(({ uptime, ...r }) => ({ ...r, uptime: typeof uptime === 'number' ? 'n' : uptime }));
  for (const [what, text] of [['kept', mine], ['kept by another controller', other]] as const) {
    assert.deepEqual(bare(rows(text)), bare(rows(whole)), `the ${what} list is the whole-table one`);
    rows(text).forEach((r, i) => {
      const u = rows(whole)[i]!.uptime;
      if (typeof u === 'number') assert.ok(Math.abs((r.uptime as number) - u) < 1, `uptime ${String(r.uptime)} vs ${u}`);
    });
  }
  return rows(mine);
}

const viewOf = async (name: string): Promise<Record<string, unknown> | null> =>
  (await db.pool.query<{ view: Record<string, unknown> | null }>('SELECT view FROM instances WHERE name = $1', [name])).rows[0]?.view ?? null;

test('a report updates its own host\'s rows only, never with an older view, and names the instances the cluster does not know', async () => {
  for (const [name, host] of [['v1', 'h1'], ['v2', 'h1'], ['v3', 'h2']] as const) {
    await instances.place({ name, host, cpus: 1, memory: 64 * MiB, spec: { image: 'tiny' } });
  }
  const listedNow = listed;
  // never reported (a create in flight): unknown, from the row
  const first = await listedNow();
  assert.deepEqual(first.map((r) => [r.name, r.host, r.state, r.stale, r.image]), [['v1', 'h1', 'unknown', true, 'tiny'], ['v2', 'h1', 'unknown', true, 'tiny'], ['v3', 'h2', 'unknown', true, 'tiny']]);

  const v1 = summary('v1', { state: 'running', pid: 7, accel: 'kvm', startedAt: new Date(Date.now() - 60_000).toISOString(), updatedAt: '2026-01-01T00:00:05.000Z' });
  const v2 = summary('v2');
  // h1 also reports v3 (it runs on h2 as the cluster sees it) and a stranger
  const strangers = await instances.report('h1', [v1, v2, summary('v3', { state: 'running' }), summary('made-by-hand')]);
  assert.deepEqual(strangers, ['made-by-hand']);
  assert.deepEqual(await viewOf('v1'), { ...v1, host: 'h1' });
  assert.equal(await viewOf('v3'), null, 'a row of another host is not touched');
  const rows = await listedNow();
  const r1 = rows.find((r) => r.name === 'v1')!;
  assert.equal(r1.state, 'running');
  assert.equal(r1.stale, false);
  assert.equal(r1.host, 'h1');
  assert.equal(r1.pid, 7);
  assert.equal(r1.rss, null);
  assert.ok(typeof r1.reportedAt === 'string' && Math.abs(Date.parse(r1.reportedAt) - Date.now()) < 60_000, String(r1.reportedAt));
  assert.ok(typeof r1.uptime === 'number' && r1.uptime >= 55 && r1.uptime < 600, `uptime from startedAt: ${r1.uptime}`);
  assert.equal(rows.find((r) => r.name === 'v2')!.uptime, null);
  // the row keeps its own uuid when it had one; set from the view when it had none
  assert.equal((await instances.get('v1'))!.uuid, null, 'report() leaves uuid to the create');

  // a view the controller stored from its own call, newer than a beat built before it: the beat does not undo it
  const stopped = { ...v1, state: 'stopped' as const, pid: null, accel: null, startedAt: null, updatedAt: '2026-01-01T00:00:09.000Z' };
  await instances.setView('v1', 'h1', stopped);
  assert.equal((await instances.get('v1'))!.uuid, v1.uuid, 'setView sets an unset uuid');
  await instances.report('h1', [v1]);
  assert.equal((await viewOf('v1'))!.state, 'stopped', 'an older report is not applied');
  await instances.report('h1', [{ ...stopped, state: 'running', updatedAt: '2026-01-01T00:00:10.000Z' }]);
  assert.equal((await viewOf('v1'))!.state, 'running', 'a newer one is');

  // moved to another host (an HA restart): the old host's reports no longer apply; the new host's do, whatever its clock
  await instances.setHost('v1', 'h2');
  assert.equal((await listedNow()).find((r) => r.name === 'v1')!.state, 'unknown', 'a view from the host it left is stale');
  await instances.report('h1', [{ ...v1, updatedAt: '2030-01-01T00:00:00.000Z' }]);
  assert.equal((await viewOf('v1'))!.host, 'h1');
  assert.equal((await viewOf('v1'))!.updatedAt, '2026-01-01T00:00:10.000Z', 'the old host cannot write it');
  await instances.report('h2', [{ ...v1, state: 'running', updatedAt: '2020-01-01T00:00:00.000Z' }]);
  assert.equal((await viewOf('v1'))!.host, 'h2', 'the new host\'s report applies though its clock is behind');
  assert.equal((await listedNow()).find((r) => r.name === 'v1')!.state, 'running');
});

test('a lost host\'s instances are listed unknown with their last state', async () => {
  await db.pool.query('UPDATE hosts SET last_heartbeat = now() - interval \'1 minute\' WHERE name = $1', ['h1']);
  const v2 = (await listed()).find((r) => r.name === 'v2')!;
  assert.deepEqual([v2.state, v2.stale, v2.lastState, v2.pid, v2.uptime, v2.host], ['unknown', true, 'stopped', null, null, 'h1']);
  await store.heartbeat('h1', { capacity: {}, allocation: {}, agentVersion: '0.1.0' });
  assert.equal((await listed()).find((r) => r.name === 'v2')!.state, 'stopped');
});

test('the kept lists follow every change at once, from either controller, a delete too, and outlive a lost listening connection', async () => {
  await listed();
  await instances.place({ name: 'k1', host: 'h2', cpus: 1, memory: 64 * MiB, spec: { image: 'tiny' } });
  // made through one controller, listed through the other right away: its list waits for the change's notification
  assert.ok((JSON.parse(await keptElsewhere.listJson()).instances as Array<{ name: string }>).some((r) => r.name === 'k1'));
  await instances.report('h2', [summary('k1', { state: 'running', updatedAt: '2026-01-01T00:00:01.000Z' })]);
  assert.equal((await listed()).find((r) => r.name === 'k1')!.state, 'running');
  await instances.remove('k1', 'deleted');
  assert.equal((await listed()).some((r) => r.name === 'k1'), false, 'deleted');
  // a hand edit in the database is a change like any other
  await db.pool.query(`UPDATE instances SET view = jsonb_set(view, '{state}', '"paused"') WHERE name = 'v2'`);
  assert.equal((await listed()).find((r) => r.name === 'v2')!.state, 'paused');

  // the listening connections are cut (a PostgreSQL restart, a proxy): changes made meanwhile still show
  const cut = await db.pool.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE '%pg_notify%' AND pid <> pg_backend_pid()`);
  assert.ok(cut.rowCount! >= 2, 'both listeners were found and cut');
  await instances.place({ name: 'k2', host: 'h2', cpus: 1, memory: 64 * MiB, spec: { image: 'tiny' } });
  await db.pool.query(`UPDATE instances SET view = jsonb_set(view, '{state}', '"stopped"') WHERE name = 'v2'`);
  let rows: Array<Record<string, unknown>> = [];
  for (let i = 0; i < 3; i++) {
    // the first list after the cut may fail with it (the pool hands out a dead connection once); never a stale row
    try {
      rows = await listed();
      break;
    } catch (e) {
      if (i === 2) throw e;
    }
  }
  assert.ok(rows.some((r) => r.name === 'k2'));
  assert.equal(rows.find((r) => r.name === 'v2')!.state, 'stopped');
});

test('what the cluster reserves follows a resize the host reports, and the host\'s sums with it; a report from elsewhere does not', async () => {
  const before = (await store.getHost('h2'))!.reserved;
  await instances.place({ name: 'r1', host: 'h2', cpus: 1, memory: 64 * MiB, spec: { image: 'tiny', memory: '64M' } });
  await instances.report('h2', [summary('r1', { cpus: 3, memory: 256 * MiB, updatedAt: '2026-01-01T00:00:01.000Z' })]);
  assert.deepEqual(((i) => [i.cpus, i.memory])((await instances.get('r1'))!), [3, 256 * MiB]);
  const after = (await store.getHost('h2'))!.reserved;
  assert.deepEqual([after.cpus - before.cpus, after.memory - before.memory, after.instances - before.instances], [3, 256 * MiB, 1]);
  // a controller's own call (a PATCH's reply) too
  await instances.setView('r1', 'h2', summary('r1', { cpus: 2, memory: 128 * MiB, updatedAt: '2026-01-01T00:00:02.000Z' }));
  assert.deepEqual(((i) => [i.cpus, i.memory])((await instances.get('r1'))!), [2, 128 * MiB]);
  // another host's word about it changes nothing
  await instances.report('h1', [summary('r1', { cpus: 8, memory: 1024 * MiB, updatedAt: '2026-01-01T00:00:03.000Z' })]);
  assert.deepEqual(((i) => [i.cpus, i.memory])((await instances.get('r1'))!), [2, 128 * MiB]);
  await instances.remove('r1', 'deleted');
  assert.deepEqual((await store.getHost('h2'))!.reserved, before);
});
