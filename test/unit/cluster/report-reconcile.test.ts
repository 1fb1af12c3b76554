/**
 * Reports reconciled with the cluster (report-reconcile.ts), on a private PostgreSQL and a stand-in agent: a
 * stranger the agent confirms is adopted at the size it has (reserved on its host, an event), one the agent no
 * longer has (a heartbeat older than a delete) is not; a row the host stopped reporting is forgotten only when
 * the agent says INSTANCE_NOT_FOUND, never when it still has it or gives no clear answer; a name taken meanwhile
 * is left alone.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { ClusterStore, type HostRow } from '../../../src/cluster/cluster-store.js';
import { ClusterInstances } from '../../../src/cluster/cluster-instances.js';
import { openClusterDb, type ClusterDb } from '../../../src/cluster/db.js';
import { ReportReconciler, type Reconciled } from '../../../src/cluster/report-reconcile.js';
import type { AgentReply } from '../../../src/cluster/agent-client.js';
import type { InstanceSummary } from '../../../src/services/instance-view.js';
import { startPostgres, type TestPostgres } from '../postgres.js';

const MiB = 1024 ** 2;
let server: TestPostgres;
let db: ClusterDb;
let store: ClusterStore;
let instances: ClusterInstances;
let host: HostRow;
/** what the stand-in agent has now, by name; a name mapped to null answers HTTP 500 */
const onAgent = new Map<string, InstanceSummary | null>();
const asked: string[] = [];
const quiet = { info: () => undefined, warn: () => undefined };

function summary(name: string, more: Partial<InstanceSummary> = {}): InstanceSummary {
  return {
    name, uuid: randomUUID(), state: 'running', image: 'tiny', cpus: 2, memory: 192 * MiB, accel: 'tcg', pid: 4242,
    startedAt: '2026-01-01T00:00:00.000Z', lastError: null, updatedAt: '2026-01-01T00:00:01.000Z', ...more,
  };
}

const agents = {
  call: async (_h: HostRow, method: string, path: string): Promise<AgentReply> => {
    assert.equal(method, 'GET');
    const name = decodeURIComponent(path.replace('/v1/instances/', ''));
    asked.push(name);
    const json = (status: number, body: unknown): AgentReply => ({ status, contentType: 'application/json', body: Buffer.from(JSON.stringify(body)) });
    if (!onAgent.has(name)) return json(404, { error: { code: 'INSTANCE_NOT_FOUND', message: `no instance "${name}"` } });
    const s = onAgent.get(name);
    return s ? json(200, { ...s, disk: null, uptime: 5, rss: 1 }) : json(500, { error: { code: 'INTERNAL', message: 'boom' } });
  },
};

let reconciler: ReportReconciler;

before(async () => {
  server = await startPostgres();
  db = await openClusterDb(server.url);
  store = new ClusterStore(db.pool, { unreachableAfterMs: 60_000 });
  instances = new ClusterInstances(db.pool, { unreachableAfterMs: 60_000, policy: 'spread' });
  for (const name of ['h1', 'h2']) {
    await store.insertHost({ name, uuid: randomUUID(), address: `https://10.0.0.${name.slice(1)}:7443`, certSerial: `0${name}`, certFingerprint: `fp-${name}` });
    await store.heartbeat(name, { capacity: { cpus: 16, memory: 16 * 1024 * MiB }, allocation: {}, agentVersion: '0.1.0' });
  }
  host = (await store.getHost('h1'))!;
  reconciler = new ReportReconciler({ pool: db.pool, agents, log: quiet });
});
after(async () => {
  await db?.close();
  await server?.stop();
});

/** A report of h1 as the heartbeat route handles it: report() first, then the reconciler with its answer. */
async function reportOfH1(list: InstanceSummary[]): Promise<Reconciled> {
  const strangers = await instances.report('h1', list);
  return reconciler.reconcile(host, strangers, list.map((s) => s.name));
}

const eventsOf = async (name: string): Promise<string[]> =>
  (await db.pool.query<{ type: string }>('SELECT type FROM events WHERE instance = $1 ORDER BY id', [name])).rows.map((r) => r.type);

test('a stranger the agent confirms is adopted at its size; one it no longer has, or answers nothing clear about, is not', async () => {
  const before = (await store.getHost('h1'))!.reserved;
  const made = summary('by-hand');
  onAgent.set('by-hand', made);
  onAgent.set('flaky', null);
  // "deleted-meanwhile" is in the beat but gone from the agent by now
  const r = await reportOfH1([made, summary('deleted-meanwhile'), summary('flaky')]);
  assert.deepEqual(r, { adopted: ['by-hand'], removed: [] });
  const row = (await instances.get('by-hand'))!;
  assert.deepEqual([row.host, row.uuid, row.cpus, row.memory, row.ha, row.pool], ['h1', made.uuid, 2, 192 * MiB, false, 'local']);
  const now = (await store.getHost('h1'))!.reserved;
  assert.deepEqual([now.cpus - before.cpus, now.memory - before.memory, now.instances - before.instances], [2, 192 * MiB, 1]);
  assert.equal(await instances.get('deleted-meanwhile'), null);
  assert.equal(await instances.get('flaky'), null);
  assert.deepEqual(await eventsOf('by-hand'), ['instance.adopted']);
  // listed from its view, as any other
  const listed = (JSON.parse(await instances.listJson()).instances as Array<Record<string, unknown>>).find((x) => x.name === 'by-hand')!;
  assert.deepEqual([listed.state, listed.host, listed.pid], ['running', 'h1', 4242]);
});

test('a name the cluster holds on another host is never adopted from this one', async () => {
  await instances.place({ name: 'taken', host: 'h2', cpus: 1, memory: 64 * MiB, spec: { image: 'tiny' } });
  onAgent.set('taken', summary('taken'));
  asked.length = 0;
  const r = await reportOfH1([summary('by-hand'), summary('taken')]);
  assert.deepEqual(r, { adopted: [], removed: [] });
  assert.deepEqual(asked, [], 'not even asked: report() knows the name');
  assert.equal((await instances.get('taken'))!.host, 'h2');
});

test('a row the host stopped reporting is forgotten only once the agent says INSTANCE_NOT_FOUND', async () => {
  const before = (await store.getHost('h1'))!.reserved;
  // still on the agent (the beat was older than its create's reply): kept
  let r = await reportOfH1([]);
  assert.deepEqual(r, { adopted: [], removed: [] });
  assert.ok(await instances.get('by-hand'));
  // no clear answer: kept
  onAgent.set('by-hand', null);
  r = await reportOfH1([]);
  assert.deepEqual(r.removed, []);
  // gone there: forgotten, its reservation given back
  onAgent.delete('by-hand');
  r = await reportOfH1([]);
  assert.deepEqual(r, { adopted: [], removed: ['by-hand'] });
  assert.equal(await instances.get('by-hand'), null);
  const now = (await store.getHost('h1'))!.reserved;
  assert.deepEqual([now.cpus - before.cpus, now.memory - before.memory, now.instances - before.instances], [-2, -192 * MiB, -1]);
  assert.deepEqual(await eventsOf('by-hand'), ['instance.adopted', 'instance.deleted']);
  // a row never reported by its host (a create in flight) is not a candidate
  await instances.place({ name: 'in-flight', host: 'h1', cpus: 1, memory: 64 * MiB, spec: { image: 'tiny' } });
  asked.length = 0;
  r = await reportOfH1([]);
  assert.deepEqual(asked, []);
  assert.ok(await instances.get('in-flight'));
});

test('check() runs in the background, one host at a time, the latest report waiting for its turn', async () => {
  const done: Array<[string, Reconciled]> = [];
  const bg = new ReportReconciler({ pool: db.pool, agents, log: quiet, done: (h, r) => done.push([h, r]) });
  onAgent.set('bg1', summary('bg1'));
  onAgent.set('bg2', summary('bg2'));
  const s1 = await instances.report('h1', [summary('bg1')]);
  const s2 = await instances.report('h1', [summary('bg1'), summary('bg2')]);
  bg.check(host, s1, ['bg1']);
  bg.check(host, s2, ['bg1', 'bg2']);
  for (let i = 0; i < 100 && done.flatMap(([, r]) => r.adopted).length < 2; i++) await new Promise((res) => setTimeout(res, 20));
  assert.deepEqual(done.flatMap(([, r]) => r.adopted).sort(), ['bg1', 'bg2']);
});
