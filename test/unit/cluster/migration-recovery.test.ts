/**
 * The recovery of live migrations nobody drives (cluster/migration-recovery.ts, migration-locks.ts), on a private
 * PostgreSQL with stand-in agents whose QEMUs are a few fields: a controller that died while the source sent leaves
 * a migration that is cancelled and rolled back; one that died after the destination ran, or once the whole guest
 * had arrived, is completed there; a destination gone while the source waits in postmigrate resumes the source; a
 * host that does not answer is waited for (recorded once), never guessed at; a migration whose driver holds its lock
 * is left alone, and the lock goes with the driver's session. The heartbeat's leftovers, and HA waiting for a
 * migration's recovery.
 */
import { after, before, beforeEach, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { ClusterStore, type HostRow } from '../../../src/cluster/cluster-store.js';
import { ClusterInstances } from '../../../src/cluster/cluster-instances.js';
import { ClusterEvents } from '../../../src/cluster/cluster-events.js';
import { openClusterDb, type ClusterDb } from '../../../src/cluster/db.js';
import { MigrationLocks } from '../../../src/cluster/migration-locks.js';
import { MigrationRecovery } from '../../../src/cluster/migration-recovery.js';
import type { AgentReply } from '../../../src/cluster/agent-client.js';
import { startPostgres, type TestPostgres } from '../postgres.js';

const MiB = 1024 ** 2;
const quiet = { info: () => undefined, warn: () => undefined };
let server: TestPostgres;
let db: ClusterDb;
let store: ClusterStore;
let instances: ClusterInstances;
let recovery: MigrationRecovery;

interface Qemu { uuid: string; run: string | null; migration: string; incoming: boolean }
/** what each stand-in host has, by instance name; a host in `silent` does not answer */
const hosts = new Map<string, Map<string, Qemu>>();
const silent = new Set<string>();
const calls: string[] = [];
/** the same, each with the instance's name first */
const named: string[] = [];

const reply = (status: number, body: unknown): AgentReply => ({ status, contentType: 'application/json', body: Buffer.from(JSON.stringify(body)) });
const notFound = (name: string): AgentReply => reply(404, { error: { code: 'INSTANCE_NOT_FOUND', message: `no instance "${name}"` } });
const summary = (name: string, q: Qemu) => ({ name, uuid: q.uuid, state: q.run === 'running' ? 'running' : 'paused', image: 'tiny', cpus: 1, memory: 128 * MiB, accel: 'tcg', pid: 77, startedAt: null, lastError: null, updatedAt: new Date().toISOString() });

/** The agents' migration routes, as the agent side answers them (services/migration-recovery.ts, migration.ts). */
const agents = {
  call: async (h: HostRow, method: string, path: string): Promise<AgentReply> => {
    const m = /^\/v1\/instances\/([^/?]+)(\/[^?]*)?(\?.*)?$/.exec(path)!;
    const name = decodeURIComponent(m[1]!);
    const tail = m[2] ?? '';
    if (method !== 'GET') calls.push(`${h.name} ${method} ${tail || '/'}`);
    if (method !== 'GET') named.push(`${name} ${h.name} ${method} ${tail || '/'}`);
    if (silent.has(h.name)) throw new Error(`host ${h.name} cannot be reached`);
    const here = hosts.get(h.name)!;
    const q = here.get(name);
    if (!q) return notFound(name);
    if (method === 'GET' && tail === '/migration/facts') return reply(200, { name, uuid: q.uuid, state: 'paused', run: q.run, migration: q.migration, incoming: q.incoming });
    if (method === 'GET' && tail === '') return reply(200, summary(name, q));
    if (method === 'POST' && tail === '/migration/cancel') {
      q.migration = 'cancelled';
      // the destination's QEMU ends when its stream is cut
      for (const other of hosts.values()) {
        const d = other.get(name);
        if (d && d !== q && d.run === 'inmigrate') d.run = null;
      }
      return reply(200, { status: 'cancelled' });
    }
    if (method === 'POST' && tail === '/migration/finish') {
      if (q.incoming) {
        Object.assign(q, { run: 'running', incoming: false });
        return reply(200, { side: 'destination', instance: summary(name, q) });
      }
      here.delete(name);
      return reply(200, { side: 'source', instance: null });
    }
    if (method === 'POST' && tail === '/migration/resume-source') {
      if (q.run !== 'postmigrate') return reply(409, { error: { code: 'INVALID_STATE', message: 'not in postmigrate' } });
      q.run = 'running';
      return reply(200, {});
    }
    if (method === 'DELETE') {
      here.delete(name);
      return reply(200, {});
    }
    throw new Error(`unexpected ${method} ${path}`);
  },
};

before(async () => {
  server = await startPostgres();
  db = await openClusterDb(server.url);
  store = new ClusterStore(db.pool, { unreachableAfterMs: 60_000 });
  instances = new ClusterInstances(db.pool, { unreachableAfterMs: 60_000, policy: 'spread' });
  for (const name of ['h1', 'h2', 'h3', 'h4']) {
    await store.insertHost({ name, uuid: randomUUID(), address: `https://10.0.0.${name.slice(1)}:7443`, certSerial: `0${name}`, certFingerprint: `fp-${name}` });
    await store.heartbeat(name, { capacity: { cpus: 16, memory: 16 * 1024 * MiB }, allocation: {}, agentVersion: '0.1.0', sharedPool: '/shared' });
    hosts.set(name, new Map());
  }
  recovery = new MigrationRecovery({ pool: db.pool, store, instances, agents, events: new ClusterEvents(db.pool), log: quiet, settleMs: 1 });
});
after(async () => {
  recovery?.stop();
  await db?.close();
  await server?.stop();
});
beforeEach(() => {
  calls.length = 0;
  silent.clear();
});

/** An instance on h1 being migrated to h2 (the row marked, as a driver left it), with its QEMUs on both hosts. */
async function migrating(name: string, source: Partial<Qemu> | null, destination: Partial<Qemu> | null, o: { ha?: boolean; to?: string } = {}): Promise<string> {
  const uuid = randomUUID();
  const to = o.to ?? 'h2';
  await instances.place({ name, cpus: 1, memory: 128 * MiB, host: 'h1', shared: true, ha: o.ha === true });
  await instances.setUuid(name, uuid);
  await instances.reserveMigration(name, 'h1', to);
  if (source) hosts.get('h1')!.set(name, { uuid, run: 'running', migration: 'active', incoming: false, ...source });
  if (destination) hosts.get(to)!.set(name, { uuid, run: 'inmigrate', migration: 'active', incoming: true, ...destination });
  return uuid;
}

const rowOf = async (name: string): Promise<{ host: string; migrating_to: string | null }> =>
  (await db.pool.query('SELECT host, migrating_to FROM instances WHERE name = $1', [name])).rows[0];
const eventsOf = async (name: string): Promise<Array<{ type: string; data: Record<string, unknown> }>> =>
  (await db.pool.query('SELECT type, data FROM events WHERE instance = $1 ORDER BY id', [name])).rows;
const recovered = async (name: string): Promise<Record<string, unknown> | undefined> => (await eventsOf(name)).find((e) => e.type === 'instance.migration-recovered')?.data;

test('the controller died while the source sent: the migration is cancelled, the destination removed, the source runs on h1', async () => {
  await migrating('c1', {}, {});
  const out = await recovery.sweep();
  assert.deepEqual(out.map((o) => `${o.name} ${o.action}`), ['c1 rollback']);
  assert.deepEqual(calls, ['h1 POST /migration/cancel', 'h2 DELETE /']);
  assert.deepEqual(await rowOf('c1'), { host: 'h1', migrating_to: null });
  assert.equal(hosts.get('h2')!.has('c1'), false);
  assert.equal(hosts.get('h1')!.get('c1')!.run, 'running');
  const ev = await recovered('c1');
  assert.equal(ev?.decision, 'rolled-back');
  assert.equal(ev?.cancelled, true);
  assert.match(String(ev?.reason), /destination has no live QEMU and the source runs the guest/);
  assert.deepEqual(await recovery.sweep(), [], 'nothing marked any more');
});

test('the controller died after the destination ran: the row moves there and the source waiting in postmigrate goes', async () => {
  await migrating('c2', { run: 'postmigrate', migration: 'completed' }, { run: 'running', migration: 'completed', incoming: false });
  assert.deepEqual((await recovery.sweep()).map((o) => o.action), ['complete']);
  assert.deepEqual(calls, ['h1 POST /migration/finish'], 'nothing is resumed: the destination runs already');
  assert.deepEqual(await rowOf('c2'), { host: 'h2', migrating_to: null });
  assert.equal(hosts.get('h1')!.has('c2'), false);
  assert.equal((await recovered('c2'))?.decision, 'completed');
});

test('a destination that runs but is still marked incoming (its agent died right after resuming it) is finished there: no longer an incoming side', async () => {
  await migrating('c2b', { run: 'postmigrate', migration: 'completed' }, { run: 'running', migration: 'completed', incoming: true });
  await recovery.sweep();
  assert.deepEqual(calls, ['h2 POST /migration/finish', 'h1 POST /migration/finish']);
  assert.equal(hosts.get('h2')!.get('c2b')!.incoming, false);
  assert.deepEqual(await rowOf('c2b'), { host: 'h2', migrating_to: null });
});

test('the whole guest arrived and the source completed: the destination is resumed and owns it', async () => {
  await migrating('c3', { run: 'postmigrate', migration: 'completed' }, { run: 'paused', migration: 'completed' });
  await recovery.sweep();
  assert.deepEqual(calls, ['h2 POST /migration/finish', 'h1 POST /migration/finish']);
  assert.deepEqual(await rowOf('c3'), { host: 'h2', migrating_to: null });
  assert.equal(hosts.get('h2')!.get('c3')!.run, 'running');
  const view = (await db.pool.query('SELECT view FROM instances WHERE name = $1', ['c3'])).rows[0].view;
  assert.equal(view?.host, 'h2', 'the list shows it on h2 at once');
});

test('the destination is gone and the source waits in postmigrate: the source runs again', async () => {
  await migrating('c4', { run: 'postmigrate', migration: 'completed' }, null);
  await recovery.sweep();
  assert.deepEqual(calls, ['h1 POST /migration/resume-source']);
  assert.deepEqual(await rowOf('c4'), { host: 'h1', migrating_to: null });
  assert.equal(hosts.get('h1')!.get('c4')!.run, 'running');
});

test('a destination that does not answer while the source waits in postmigrate: nothing is done, the mark stays, the wait is recorded once; settled once it answers', async () => {
  await migrating('c5', { run: 'postmigrate', migration: 'completed' }, { run: 'paused', migration: 'completed' });
  silent.add('h2');
  for (let i = 0; i < 3; i++) assert.deepEqual((await recovery.sweep()).map((o) => o.action), ['wait']);
  assert.deepEqual(calls, [], 'the source is not resumed: the destination may run');
  assert.deepEqual(await rowOf('c5'), { host: 'h1', migrating_to: 'h2' });
  assert.equal((await eventsOf('c5')).filter((e) => e.type === 'instance.migration-unresolved').length, 1);
  silent.delete('h2');
  assert.deepEqual((await recovery.sweep()).map((o) => o.action), ['complete']);
  assert.deepEqual(await rowOf('c5'), { host: 'h2', migrating_to: null });
});

test('the source\'s host is fenced and the instance is HA: its QEMU is dead, so a destination that has the whole guest takes it', async () => {
  await migrating('c6', { run: 'postmigrate', migration: 'completed' }, { run: 'paused', migration: 'completed' }, { ha: true });
  silent.add('h1');
  assert.deepEqual((await recovery.sweep()).map((o) => o.action), ['wait'], 'not fenced: it may still run');
  await store.setFenced('h1', 'test: lease and watchdog expired');
  try {
    assert.deepEqual((await recovery.sweep()).map((o) => o.action), ['complete']);
    assert.deepEqual(await rowOf('c6'), { host: 'h2', migrating_to: null });
    assert.equal(hosts.get('h2')!.get('c6')!.run, 'running');
  } finally {
    await store.setFenced('h1', null);
  }
});

test('a lost destination host of an HA instance\'s migration is fenced like the hosts of HA instances; its incoming side is then dead, and a source in postmigrate runs again', async () => {
  await migrating('c9', { run: 'postmigrate', migration: 'completed' }, { run: 'paused', migration: 'completed' }, { ha: true, to: 'h4' });
  silent.add('h4');
  assert.deepEqual((await recovery.sweep()).map((o) => o.action), ['wait']);
  await db.pool.query('UPDATE hosts SET last_heartbeat = now() - interval \'1 hour\' WHERE name = \'h4\'');
  assert.deepEqual((await store.lostWithHa(60_000)).map((h) => h.name), ['h4'], 'the fence command is run for it');
  assert.deepEqual((await store.fenceExpired(60_000)).map((h) => h.name), ['h4']);
  assert.deepEqual((await recovery.sweep()).map((o) => o.action), ['rollback']);
  assert.deepEqual(calls, ['h1 POST /migration/resume-source']);
  assert.deepEqual(await rowOf('c9'), { host: 'h1', migrating_to: null });
});

test('a migration whose driver holds its lock is left alone; the lock goes with the driver\'s session', async () => {
  await migrating('c7', {}, {});
  const driver = new MigrationLocks(db.pool, quiet);
  const lock = await driver.acquire('c7');
  assert.ok(lock);
  assert.equal(await driver.acquire('c7'), null, 'one driver per migration, in this controller too');
  const other = new MigrationLocks(db.pool, quiet);
  assert.equal(await other.acquire('c7'), null, 'nor in another');
  assert.deepEqual(await recovery.sweep(), []);
  assert.deepEqual(calls, []);
  // the driver's controller dies: PostgreSQL ends its session
  await db.pool.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND query LIKE \'%pg_try_advisory_lock%\' AND state = \'idle\'');
  await new Promise((r) => setTimeout(r, 200));
  assert.equal(lock.lost, true);
  const out = await recovery.sweep();
  assert.deepEqual(out.map((o) => `${o.name} ${o.action}`), ['c7 rollback']);
  await other.close();
  await driver.close();
});

test('the heartbeat\'s leftovers: those no migration will finish', async () => {
  const uuid = await migrating('l1', {}, {});
  await migrating('l2', {}, {});
  const moved = await migrating('l3', {}, {});
  await instances.completeMigration('l3', 'h2', { type: 'instance.migrated', instance: 'l3' });
  const marks = (host: string, list: Array<[string, string, 'incoming' | 'outgoing']>) => recovery.leftovers(host, list.map(([name, u, side]) => ({ name, uuid: u, side })));
  assert.deepEqual(await marks('h2', [['l1', uuid, 'incoming']]), [], 'the destination of a marked migration');
  assert.deepEqual(await marks('h3', [['l1', uuid, 'incoming']]), ['l1'], 'an incoming side on a host it does not migrate to');
  assert.deepEqual(await marks('h2', [['l1', randomUUID(), 'incoming']]), ['l1'], 'another instance of that name');
  assert.deepEqual(await marks('h2', [['gone', randomUUID(), 'incoming']]), ['gone'], 'none of that name');
  assert.deepEqual(await marks('h1', [['l2', (await db.pool.query('SELECT uuid::text FROM instances WHERE name = $1', ['l2'])).rows[0].uuid, 'outgoing']]), [], 'the source of a marked migration');
  assert.deepEqual(await marks('h1', [['l3', moved, 'outgoing']]), ['l3'], 'a source whose row moved away');
  assert.deepEqual(await marks('h2', [['l3', moved, 'incoming']]), [], 'the row names this host: it is the owner');
});

test('HA waits for a migration\'s recovery: an instance being migrated is not moved by the HA manager', async () => {
  await migrating('h-ha', {}, {}, { ha: true });
  await assert.rejects(instances.relocate('h-ha', 'h1', 'test'), (e: Error & { code?: string }) => e.code === 'INVALID_STATE' && /being live-migrated to host h2/.test(e.message));
});

test('several controllers: a migration is recovered by one of them at a time', async () => {
  await migrating('c8', {}, {});
  const second = new MigrationRecovery({ pool: db.pool, store, instances, agents, events: new ClusterEvents(db.pool), log: quiet, settleMs: 20 });
  const [a, b] = await Promise.all([recovery.sweep(), second.sweep()]);
  assert.deepEqual([...a, ...b].filter((o) => o.name === 'c8' && o.action !== 'none').map((o) => o.action), ['rollback']);
  assert.deepEqual(named.filter((c) => c.startsWith('c8 ')), ['c8 h1 POST /migration/cancel', 'c8 h2 DELETE /']);
  second.stop();
});
