/**
 * The cluster's events on a private PostgreSQL: each change to hosts and instances records its event with it (and
 * a change refused records none), the replay after an id and a host's newest events, the retention, and a
 * controller's /v1/events: the stored events after ?since= (or Last-Event-ID), then live ones written by any
 * controller (two controllers, two listeners: each sees every event), in a single daemon's wire format.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { request } from 'node:http';
import type { FastifyInstance } from 'fastify';
import { ClusterStore, type NewHost } from '../../../src/cluster/cluster-store.js';
import { ClusterInstances } from '../../../src/cluster/cluster-instances.js';
import { ClusterEvents } from '../../../src/cluster/cluster-events.js';
import { EventFeed } from '../../../src/cluster/event-feed.js';
import { controllerEventRoutes } from '../../../src/cluster/controller-events.js';
import { installErrorReplies, newApp } from '../../../src/api/app.js';
import { openClusterDb, type ClusterDb } from '../../../src/cluster/db.js';
import type { StoredEvent } from '../../../src/store/store.js';
import { startPostgres, type TestPostgres } from '../postgres.js';

const GiB = 1024 ** 3;
const quiet = { info: () => undefined, warn: () => undefined };
let server: TestPostgres;
let db: ClusterDb;
let db2: ClusterDb;
let store: ClusterStore;
let instances: ClusterInstances;
let events: ClusterEvents;

before(async () => {
  server = await startPostgres();
  db = await openClusterDb(server.url);
  db2 = await openClusterDb(server.url);
  store = new ClusterStore(db.pool, { unreachableAfterMs: 4000 });
  instances = new ClusterInstances(db.pool, { unreachableAfterMs: 4000, policy: 'spread' });
  events = new ClusterEvents(db.pool);
});
after(async () => {
  await db?.close();
  await db2?.close();
  await server?.stop();
});

let n = 0;
const newHost = (name: string): NewHost => ({
  name, uuid: randomUUID(), address: `https://10.0.1.${++n}:7443`, certSerial: `0b${n.toString(16).padStart(4, '0')}`, certFingerprint: `fp-${name}`, agentVersion: '0.1.0',
});
const report = (name: string): Promise<boolean> =>
  store.heartbeat(name, { capacity: { cpus: 8, memory: 8 * GiB }, allocation: {}, agentVersion: '0.1.0', sharedPool: '/shared' });
const ageHeartbeat = (name: string, seconds: number): Promise<unknown> =>
  db.pool.query('UPDATE hosts SET last_heartbeat = now() - $2::float8 * interval \'1 second\' WHERE name = $1', [name, seconds]);
/** The events after `id`, as [type, host, instance]. */
const kinds = async (id: number): Promise<Array<[string, unknown, string | null]>> => (await events.since(id)).map((e) => [e.type, e.data.host, e.instance]);
const lastId = async (): Promise<number> => Number((await db.pool.query<{ id: string }>('SELECT coalesce(max(id), 0) AS id FROM events')).rows[0]!.id);

test('hosts: joined, maintenance (on a change only), back after being unreachable, fenced and back, removed; a refused change records nothing', async () => {
  const from = await lastId();
  await store.insertHost(newHost('e1'));
  await assert.rejects(store.insertHost(newHost('e1')), /HOST_EXISTS|already in the cluster/);
  await report('e1');
  await store.setMaintenance('e1', true);
  await store.setMaintenance('e1', true);
  await store.setMaintenance('e1', false);
  await ageHeartbeat('e1', 60);
  await report('e1');
  await report('e1');
  assert.deepEqual(await kinds(from), [
    ['host.joined', 'e1', null], ['host.maintenance', 'e1', null], ['host.maintenance', 'e1', null], ['host.recovered', 'e1', null],
  ]);
  const [joined, on, off, back] = await events.since(from);
  assert.deepEqual(joined!.data, { host: 'e1', address: 'https://10.0.1.1:7443', agentVersion: '0.1.0' });
  assert.deepEqual([on!.data.on, off!.data.on], [true, false]);
  assert.equal(back!.data.from, 'unreachable');
  assert.ok((back!.data.silentMs as number) >= 60_000, JSON.stringify(back!.data));

  // fenced by the deadline (it holds an HA instance), back once the fence is lifted
  await instances.place({ name: 'eha', cpus: 1, memory: GiB, host: 'e1', shared: true, ha: true });
  const mid = await lastId();
  await ageHeartbeat('e1', 60);
  assert.deepEqual((await store.fenceExpired(30_000)).map((h) => h.name), ['e1']);
  assert.deepEqual(await store.fenceExpired(30_000), [], 'fenced once');
  await report('e1');
  await store.setFenced('e1', null, 'its HA instances run elsewhere');
  assert.deepEqual(await kinds(mid), [['host.fenced', 'e1', null], ['host.recovered', 'e1', null]]);
  const [fenced, lifted] = await events.since(mid);
  assert.equal(fenced!.data.by, 'deadline');
  assert.match(fenced!.data.reason as string, /no heartbeat since .*the lease and the host watchdog \(30000 ms together\) have run out/);
  assert.deepEqual([lifted!.data.from, lifted!.data.reason], ['fenced', 'its HA instances run elsewhere']);

  // a host that holds an instance cannot be removed: no event; once empty it is removed, with its event
  const before = await lastId();
  await assert.rejects(store.removeHost('e1'), /HOST_NOT_EMPTY|holds/);
  assert.equal(await lastId(), before);
  await instances.remove('eha', 'deleted on host e1');
  await store.removeHost('e1');
  const tail = (await events.since(before)).map((e) => [e.type, e.instance, e.data.reason ?? e.data.revokedSerial]);
  assert.deepEqual(tail, [['instance.deleted', 'eha', 'deleted on host e1'], ['host.removed', null, '0b0001']]);
});

test('a fence command\'s success fences a host only while its lease is expired; instances placed, moved, put back', async () => {
  for (const h of ['f1', 'f2']) {
    await store.insertHost(newHost(h));
    await report(h);
  }
  await instances.place({ name: 'fha', cpus: 1, memory: GiB, host: 'f1', shared: true, ha: true });
  assert.equal(await store.fenceConfirmed('f1', 4000, 'powered off'), null, 'its lease runs: not fenced');
  assert.deepEqual(await store.lostWithHa(4000), []);
  const from = await lastId();
  await ageHeartbeat('f1', 10);
  assert.deepEqual((await store.lostWithHa(4000)).map((h) => h.name), ['f1']);
  assert.equal((await store.fenceConfirmed('f1', 4000, 'the fence command confirmed it off'))?.state, 'fenced');
  assert.equal(await store.fenceConfirmed('f1', 4000, 'again'), null, 'fenced once');
  assert.deepEqual(await store.lostWithHa(4000), [], 'a fenced host is no longer lost');
  const to = await instances.relocate('fha', 'f1', 'host f1 is fenced: powered off');
  assert.equal(to.name, 'f2');
  await instances.setHost('fha', 'f1', { type: 'instance.ha-failed', host: 'f1', instance: 'fha', data: { from: 'f1', to: 'f2', reason: 'it did not start' } });
  const got = await events.since(from);
  assert.deepEqual(got.map((e) => [e.type, e.data.host, e.instance]), [
    ['host.fenced', 'f1', null], ['instance.ha-restarting', 'f1', 'fha'], ['instance.ha-failed', 'f1', 'fha'],
  ]);
  assert.deepEqual(got[0]!.data, { host: 'f1', reason: 'the fence command confirmed it off', by: 'fence command' });
  assert.deepEqual(got[1]!.data, { host: 'f1', from: 'f1', to: 'f2', reason: 'host f1 is fenced: powered off' });
  assert.equal((await instances.get('fha'))?.host, 'f1', 'put back');
  const placed = (await events.ofHost('f1', 100)).find((e) => e.type === 'instance.placed')!;
  assert.deepEqual(placed.data, { host: 'f1', cpus: 1, memory: GiB, ha: true, reason: 'pinned to host f1' });
});

test('the replay is after an id, oldest first; the newest N are the last N; a host\'s events are its newest; pruning keeps the newest and none too old', async () => {
  const from = await lastId();
  for (let i = 0; i < 5; i++) await events.record({ type: 'test.tick', host: 'p1', data: { i } });
  await events.record({ type: 'test.other', host: 'p2' });
  const all = await events.since(from);
  assert.deepEqual(all.map((e) => e.data.i ?? e.type), [0, 1, 2, 3, 4, 'test.other']);
  assert.deepEqual((await events.since(all[2]!.id, 2)).map((e) => e.data.i), [3, 4]);
  assert.deepEqual((await events.ofHost('p1', 2)).map((e) => e.data.i), [3, 4]);
  // ?last=N (the web console's feed): the cluster's newest, oldest first
  assert.deepEqual((await events.latest(3)).map((e) => e.data.i ?? e.type), [3, 4, 'test.other']);
  assert.ok(all.every((e) => /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/.test(e.time)));

  await db.pool.query(`UPDATE events SET at = now() - interval '31 days' WHERE id = $1`, [all[0]!.id]);
  await events.prune(10_000, 30);
  assert.deepEqual((await events.since(from)).map((e) => e.data.i ?? e.type), [1, 2, 3, 4, 'test.other'], 'older than 30 days: gone');
  await events.prune(3, 30);
  assert.equal((await events.since(0)).length, 3, 'the newest 3 kept');
  assert.deepEqual((await events.since(from)).map((e) => e.data.i ?? e.type), [3, 4, 'test.other']);
});

/** Read a /v1/events stream until `until` says enough: the events (id, type, data) and whether `: connected` came. */
function readStream(port: number, path: string, headers: Record<string, string>, until: (evs: StoredEvent[]) => boolean, onConnected?: () => void): Promise<{ events: StoredEvent[]; connectedAfter: number }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, headers }, (res) => {
      let buf = '';
      const evs: StoredEvent[] = [];
      let connectedAfter = -1;
      res.on('data', (d: Buffer) => {
        buf += d.toString();
        let i;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, i);
          buf = buf.slice(i + 2);
          if (block === ': connected') {
            connectedAfter = evs.length;
            onConnected?.();
          }
          const data = /^data: (.*)$/m.exec(block);
          if (data) {
            const ev = JSON.parse(data[1]!) as StoredEvent;
            assert.equal(/^id: (\d+)$/m.exec(block)?.[1], String(ev.id));
            assert.equal(/^event: (.*)$/m.exec(block)?.[1], ev.type);
            evs.push(ev);
          }
          if (until(evs)) {
            req.destroy();
            resolve({ events: evs, connectedAfter });
          }
        }
      });
    });
    req.on('error', (e) => { if (!req.destroyed) reject(e); });
    req.end();
  });
}

test('/v1/events on two controllers: the replay after ?since= or Last-Event-ID, then live events written by either one', { timeout: 60_000 }, async () => {
  const apps: FastifyInstance[] = [];
  const feeds: EventFeed[] = [];
  const ports: number[] = [];
  for (const d of [db, db2]) {
    const ev = new ClusterEvents(d.pool);
    const feed = new EventFeed(d.pool, ev, quiet);
    await feed.start();
    const app = newApp({});
    installErrorReplies(app);
    await app.register(controllerEventRoutes({ events: ev, feed }));
    await app.listen({ host: '127.0.0.1', port: 0 });
    apps.push(app);
    feeds.push(feed);
    ports.push((app.server.address() as { port: number }).port);
  }
  try {
    const from = await lastId();
    await events.record({ type: 'test.before', host: 'w1', data: { n: 1 } });
    const other = new ClusterEvents(db2.pool);
    const live = (): void => {
      void events.record({ type: 'test.live', host: 'w1', instance: 'i1', data: { n: 2 } });
      void other.record({ type: 'test.live', host: 'w2', data: { n: 3 } });
    };
    const both = (evs: StoredEvent[]): boolean => evs.filter((e) => e.type === 'test.live').length === 2;
    let started = 0;
    const startLive = (): void => { if (++started === 2) live(); };
    const [a, b] = await Promise.all([
      readStream(ports[0]!, `/v1/events?since=${from}`, {}, both, startLive),
      readStream(ports[1]!, '/v1/events', { 'last-event-id': String(from) }, both, startLive),
    ]);
    for (const r of [a, b]) {
      assert.equal(r.connectedAfter, 1, 'the stored event, then `: connected`');
      assert.deepEqual(r.events[0]!.data, { host: 'w1', n: 1 });
      // the two live events come from two controllers' transactions: in either order, each once
      const liveOnes = r.events.slice(1).map((e) => [e.type, e.instance, e.data]).sort((x, y) => JSON.stringify(x).localeCompare(JSON.stringify(y)));
      assert.deepEqual(liveOnes, [['test.live', 'i1', { host: 'w1', n: 2 }], ['test.live', null, { host: 'w2', n: 3 }]]);
      assert.ok(r.events.every((e) => e.id > from));
    }
    const bad = await apps[0]!.inject({ method: 'GET', url: '/v1/events?until=3' });
    assert.equal(bad.statusCode, 400, 'the daemon\'s query: since only');
    const host = await apps[0]!.inject({ method: 'GET', url: '/v1/hosts/w1/events?limit=1' });
    assert.deepEqual(host.json().events.map((e: StoredEvent) => e.data.n), [2]);
  } finally {
    for (const app of apps) await app.close();
    for (const f of feeds) await f.stop();
  }
});

test('a controller whose listening connection is cut listens again and hands out what was written meanwhile, once', { timeout: 30_000 }, async () => {
  const feed = new EventFeed(db2.pool, new ClusterEvents(db2.pool), quiet);
  await feed.start();
  const got: StoredEvent[] = [];
  const unsubscribe = feed.subscribe((ev) => got.push(ev));
  try {
    await events.record({ type: 'test.cut', data: { n: 1 } });
    while (got.length < 1) await new Promise((r) => setTimeout(r, 20));
    // the listener's session is the one whose last statement was its first read of the newest id
    const cut = await db.pool.query<{ ok: boolean }>(
      "SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity WHERE query LIKE 'SELECT coalesce(max(id), 0)%' AND pid <> pg_backend_pid()");
    assert.ok(cut.rows.length >= 1 && cut.rows.every((r) => r.ok));
    await events.record({ type: 'test.cut', data: { n: 2 } });
    await events.record({ type: 'test.cut', data: { n: 3 } });
    while (got.length < 3) await new Promise((r) => setTimeout(r, 50));
    await events.record({ type: 'test.cut', data: { n: 4 } });
    while (got.length < 4) await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(got.map((e) => e.data.n), [1, 2, 3, 4]);
  } finally {
    unsubscribe();
    await feed.stop();
  }
});

test('a host\'s own events join the cluster\'s with their time there, each once whatever a beat repeats; the newest delivered is remembered', async () => {
  await store.insertHost(newHost('own1'));
  await store.insertHost(newHost('own2'));
  assert.equal(await events.ackedOf('own1'), 0, 'none yet');
  const from = (await events.since(0, 100_000)).at(-1)?.id ?? 0;
  const ev = (id: number, type: string, instance: string | null, data: Record<string, unknown> = {}) => ({ id, time: `2026-01-01T00:00:0${id}.000Z`, type, instance, data });
  assert.equal(await events.fromHost('own1', [ev(3, 'instance.created', 'vm1'), ev(4, 'instance.state', 'vm1', { from: 'stopped', to: 'running' })]), 4);
  // a beat whose reply was lost sends them again, with one more; another host's ids are its own
  assert.equal(await events.fromHost('own1', [ev(4, 'instance.state', 'vm1', { from: 'stopped', to: 'running' }), ev(5, 'instance.deleted', 'vm1')]), 5);
  assert.equal(await events.fromHost('own2', [ev(4, 'daemon.started', null)]), 4);
  // an old beat arriving late does not move the mark back
  assert.equal(await events.fromHost('own1', [ev(3, 'instance.created', 'vm1')]), 5);
  assert.equal(await events.ackedOf('own1'), 5);
  const got = (await events.since(from)).map((e) => [e.type, e.data.host, e.instance, e.time]);
  assert.deepEqual(got, [
    ['instance.created', 'own1', 'vm1', '2026-01-01T00:00:03.000Z'],
    ['instance.state', 'own1', 'vm1', '2026-01-01T00:00:04.000Z'],
    ['instance.deleted', 'own1', 'vm1', '2026-01-01T00:00:05.000Z'],
    ['daemon.started', 'own2', null, '2026-01-01T00:00:04.000Z'],
  ]);
  assert.equal((await events.since(from)).find((e) => e.type === 'instance.state')!.data.to, 'running');
});
