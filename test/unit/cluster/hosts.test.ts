/**
 * Hosts in the cluster database: insert (a taken name or uuid is HOST_EXISTS), list by name, the state computed
 * on the database's clock (unreachable until a heartbeat, up after one, unreachable again once it is older than
 * the limit, maintenance, fenced above all), and removal, which revokes the host's certificate serial.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { isCorralError } from '../../../src/core/errors.js';
import { ClusterStore, type NewHost } from '../../../src/cluster/cluster-store.js';
import { openClusterDb, type ClusterDb } from '../../../src/cluster/db.js';
import { startPostgres, type TestPostgres } from '../postgres.js';

let server: TestPostgres;
let db: ClusterDb;
let store: ClusterStore;
before(async () => {
  server = await startPostgres();
  db = await openClusterDb(server.url);
  store = new ClusterStore(db.pool);
});
after(async () => {
  await db?.close();
  await server?.stop();
});

let serials = 0;
const newHost = (name: string, more: Partial<NewHost> = {}): NewHost => ({
  name, uuid: randomUUID(), address: `https://10.0.0.${++serials}:7443`, certSerial: `0a${serials.toString(16).padStart(4, '0')}`,
  certFingerprint: `fp-${name}`, ...more,
});

const coded = (code: string, ...words: string[]) => (e: unknown): boolean => {
  assert.ok(isCorralError(e), String(e));
  assert.equal(e.code, code);
  for (const w of words) assert.ok(e.message.includes(w), `${e.message} names ${w}`);
  return true;
};

/** Move a host's last heartbeat back by `seconds` (as if it had stopped reporting). */
const ageHeartbeat = (name: string, seconds: number): Promise<unknown> =>
  db.pool.query('UPDATE hosts SET last_heartbeat = now() - $2::float8 * interval \'1 second\' WHERE name = $1', [name, seconds]);

test('a new host is stored as given, unreachable until its first heartbeat', async () => {
  const h = newHost('alpha', { labels: { zone: 'a', ssd: 'yes' }, agentVersion: '0.1.0' });
  const row = await store.insertHost(h);
  assert.deepEqual(await store.getHost('alpha'), row);
  assert.deepEqual({ ...row, joinedAt: undefined }, {
    name: 'alpha', uuid: h.uuid, address: h.address, certSerial: h.certSerial, certFingerprint: h.certFingerprint,
    labels: { zone: 'a', ssd: 'yes' }, maintenance: false, sharedPool: null, reserved: { cpus: 0, memory: 0, instances: 0 }, fencedAt: null, fenceReason: null, capacity: null, allocation: null,
    agentVersion: '0.1.0', joinedAt: undefined, lastHeartbeat: null, heartbeatAgeMs: null, state: 'unreachable', cpuReport: null, memoryReport: null,
  });
  const joined = await db.pool.query<{ ok: boolean }>('SELECT abs(extract(epoch FROM joined_at - $2::timestamptz)) < 0.001 AS ok FROM hosts WHERE name = $1', ['alpha', row.joinedAt]);
  assert.equal(joined.rows[0]!.ok, true, 'joinedAt is the database time, to the millisecond');
  assert.equal(await store.getHost('nobody'), null);
});

test('a taken name or uuid is HOST_EXISTS naming the host; the first host is unchanged', async () => {
  const first = await store.insertHost(newHost('beta'));
  await assert.rejects(store.insertHost(newHost('beta')), coded('HOST_EXISTS', '"beta"'));
  await assert.rejects(store.insertHost(newHost('gamma', { uuid: first.uuid })), coded('HOST_EXISTS', first.uuid, '"gamma"'));
  assert.equal(await store.getHost('gamma'), null);
  assert.deepEqual(await store.getHost('beta'), first);
  await assert.rejects(store.insertHost(newHost('delta', { uuid: 'not-a-uuid' })), coded('INVALID_SPEC', 'uuid'));
});

test('hosts are listed by name', async () => {
  for (const n of ['list-c', 'list-a', 'list-b']) await store.insertHost(newHost(n));
  const names = (await store.listHosts()).map((h) => h.name).filter((n) => n.startsWith('list-'));
  assert.deepEqual(names, ['list-a', 'list-b', 'list-c']);
});

test('a heartbeat makes a host up and stores its report; one older than the limit makes it unreachable', async () => {
  await store.insertHost(newHost('hb'));
  const report = { capacity: { cpus: 16, memory: 64 }, allocation: [{ vm: 'a', cpus: 2 }], agentVersion: '0.2.0' };
  assert.equal(await store.heartbeat('hb', report), true);
  let h = (await store.getHost('hb'))!;
  assert.equal(h.state, 'up');
  assert.deepEqual([h.capacity, h.allocation, h.agentVersion], [report.capacity, report.allocation, '0.2.0']);
  assert.ok(h.lastHeartbeat !== null && h.heartbeatAgeMs !== null && h.heartbeatAgeMs >= 0);

  await ageHeartbeat('hb', 20);
  h = (await store.getHost('hb'))!;
  assert.equal(h.state, 'unreachable', 'default limit 15 s');
  assert.ok(h.heartbeatAgeMs! >= 20_000, String(h.heartbeatAgeMs));
  const patient = new ClusterStore(db.pool, { unreachableAfterMs: 60_000 });
  assert.equal((await patient.getHost('hb'))!.state, 'up', 'a longer limit: still up');

  assert.equal(await store.heartbeat('hb', report), true);
  assert.equal((await store.getHost('hb'))!.state, 'up');
  assert.equal(await store.heartbeat('no-such-host', report), false);
});

test('maintenance and fencing: fenced above maintenance above the heartbeat; the first fence time is kept', async () => {
  await store.insertHost(newHost('mf'));
  await store.heartbeat('mf', { capacity: {}, allocation: {}, agentVersion: '0.1.0' });
  assert.equal((await store.setMaintenance('mf', true)).state, 'maintenance');
  assert.equal((await store.getHost('mf'))!.maintenance, true);

  const fenced = await store.setFenced('mf', 'lease expired');
  assert.equal(fenced.state, 'fenced');
  assert.equal(fenced.fenceReason, 'lease expired');
  assert.ok(fenced.fencedAt !== null);
  const again = await store.setFenced('mf', 'fenced by watchdog');
  assert.equal(again.fencedAt, fenced.fencedAt);
  assert.equal(again.fenceReason, 'fenced by watchdog');

  const unfenced = await store.setFenced('mf', null);
  assert.deepEqual([unfenced.state, unfenced.fencedAt, unfenced.fenceReason], ['maintenance', null, null]);
  assert.equal((await store.setMaintenance('mf', false)).state, 'up');
  await ageHeartbeat('mf', 3600);
  assert.equal((await store.setFenced('mf', 'gone')).state, 'fenced', 'fenced though unreachable');

  await assert.rejects(store.setMaintenance('nobody', true), coded('HOST_NOT_FOUND', '"nobody"'));
  await assert.rejects(store.setFenced('nobody', 'x'), coded('HOST_NOT_FOUND', '"nobody"'));
});

test('removing a host deletes it and revokes its certificate serial; the name may join again', async () => {
  const h = newHost('gone');
  const row = await store.insertHost(h);
  assert.equal(await store.isRevoked(h.certSerial), false);
  assert.deepEqual(await store.removeHost('gone'), row);
  assert.equal(await store.getHost('gone'), null);
  assert.equal(await store.isRevoked(h.certSerial), true);
  const rev = await db.pool.query<{ host: string }>('SELECT host FROM revoked_certs WHERE serial = $1', [h.certSerial]);
  assert.deepEqual(rev.rows, [{ host: 'gone' }]);
  assert.equal(await store.heartbeat('gone', { capacity: {}, allocation: {}, agentVersion: '0.1.0' }), false);
  assert.equal(await store.removeHost('gone'), null);

  const back = newHost('gone');
  await store.insertHost(back);
  assert.equal(await store.isRevoked(back.certSerial), false);
  assert.equal(await store.isRevoked(h.certSerial), true);
});
