/**
 * Schema migrations on a private PostgreSQL: two controllers migrating at once apply each migration once, a rerun
 * changes nothing, a later migration is applied on top of an older schema, a schema newer than the code is refused.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { isCorralError } from '../../../src/core/errors.js';
import { migrate, MIGRATIONS, type Migration } from '../../../src/cluster/migrations.js';
import { startPostgres, type TestPostgres } from '../postgres.js';

let server: TestPostgres;
before(async () => { server = await startPostgres(); });
after(async () => { await server?.stop(); });

/** Run fn with a client of its own pool (a controller of its own), closed after. */
async function withClient<T>(url: string, fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
  const pool = new pg.Pool({ connectionString: url });
  const c = await pool.connect();
  try {
    return await fn(c);
  } finally {
    c.release();
    await pool.end();
  }
}

async function rows(url: string): Promise<Array<{ version: number; name: string; applied: boolean }>> {
  return withClient(url, async (c) => (await c.query(
    'SELECT version, name, applied_at IS NOT NULL AS applied FROM schema_migrations ORDER BY version')).rows);
}

async function tables(url: string): Promise<string[]> {
  return withClient(url, async (c) => (await c.query<{ t: string }>(
    "SELECT table_name AS t FROM information_schema.tables WHERE table_schema = 'public' ORDER BY table_name")).rows.map((r) => r.t));
}

test('two controllers migrating at once apply each migration once; a rerun is a no-op', async () => {
  const url = await server.newDatabase();
  // a migration that fails if it runs twice (a plain CREATE TABLE), and counts its runs in a sequence
  const list: Migration[] = [...MIGRATIONS, { version: MIGRATIONS.length + 1, name: 'probe', sql: 'CREATE TABLE probe (x int); CREATE SEQUENCE probe_runs; SELECT nextval(\'probe_runs\')' }];
  const [a, b] = await Promise.all([withClient(url, (c) => migrate(c, list)), withClient(url, (c) => migrate(c, list))]);
  const applied = [a.applied, b.applied].sort((x, y) => y.length - x.length);
  assert.deepEqual(applied[0], list.map((m) => m.version), 'one of them applies all');
  assert.deepEqual(applied[1], [], 'the other finds the work done');
  assert.deepEqual([a.to, b.to], [list.length, list.length]);

  assert.deepEqual(await rows(url), list.map((m) => ({ version: m.version, name: m.name, applied: true })));
  assert.deepEqual(await tables(url), ['api_tokens', 'audit', 'cluster', 'events', 'hosts', 'instances', 'join_tokens', 'named_tokens', 'probe', 'revoked_certs', 'schema_migrations', 'web_sessions']);
  const runs = await withClient(url, async (c) => (await c.query<{ last_value: string }>('SELECT last_value FROM probe_runs')).rows[0]!.last_value);
  assert.equal(runs, '1');

  const again = await withClient(url, (c) => migrate(c, list));
  assert.deepEqual(again, { from: list.length, to: list.length, applied: [] });
  assert.equal((await rows(url)).length, list.length);
});

test('a later migration is applied on top of an older schema, and only it', async () => {
  const url = await server.newDatabase();
  assert.deepEqual((await withClient(url, (c) => migrate(c))).applied, MIGRATIONS.map((m) => m.version));
  const next: Migration = { version: MIGRATIONS.length + 1, name: 'hosts get a zone', sql: 'ALTER TABLE hosts ADD COLUMN zone text' };
  const r = await withClient(url, (c) => migrate(c, [...MIGRATIONS, next]));
  assert.deepEqual(r, { from: MIGRATIONS.length, to: next.version, applied: [next.version] });
  const cols = await withClient(url, async (c) => (await c.query<{ c: string }>(
    "SELECT column_name AS c FROM information_schema.columns WHERE table_name = 'hosts' AND column_name = 'zone'")).rows);
  assert.equal(cols.length, 1);
});

test('a database migrated by a newer controller is refused, naming both versions, and is left as it was', async () => {
  const url = await server.newDatabase();
  await withClient(url, (c) => migrate(c));
  const newer = MIGRATIONS.length + 2;
  await withClient(url, (c) => c.query("INSERT INTO schema_migrations (version, name) VALUES ($1, 'from the future')", [newer]));
  const before = await rows(url);
  await assert.rejects(withClient(url, (c) => migrate(c)), (e: unknown) => {
    assert.ok(isCorralError(e));
    assert.equal(e.code, 'SCHEMA_TOO_NEW');
    assert.match(e.message, new RegExp(`version ${newer}\\b`));
    assert.match(e.message, new RegExp(`version ${MIGRATIONS.length}\\b`));
    assert.match(e.message, /upgrade this controller/);
    return true;
  });
  assert.deepEqual(await rows(url), before);
});

test('a failing migration leaves nothing behind: the whole migration is one transaction', async () => {
  const url = await server.newDatabase();
  const bad: Migration[] = [...MIGRATIONS, { version: MIGRATIONS.length + 1, name: 'broken', sql: 'CREATE TABLE half (x int); SELECT no_such_function()' }];
  await assert.rejects(withClient(url, (c) => migrate(c, bad)), /no_such_function/);
  assert.deepEqual(await tables(url), [], 'not even schema_migrations or migration 1');
});

test('migration 10 adds the events table to a cluster at version 9, indexed after an id and by host; a new event is notified at its commit; 11 adds each host\'s own events, kept once each', async () => {
  const url = await server.newDatabase();
  await withClient(url, (c) => migrate(c, MIGRATIONS.slice(0, 9)));
  assert.deepEqual((await withClient(url, (c) => migrate(c, MIGRATIONS.slice(0, 10)))).applied, [10]);
  const indexes = await withClient(url, async (c) => (await c.query<{ d: string }>(
    "SELECT indexdef AS d FROM pg_indexes WHERE tablename = 'events' ORDER BY indexname")).rows.map((r) => r.d.replace(/^.* USING /, '')));
  assert.deepEqual(indexes, ['btree (at)', 'btree (host, id) WHERE (host IS NOT NULL)', 'btree (id)']);

  const pool = new pg.Pool({ connectionString: url });
  const listener = await pool.connect();
  try {
    const heard: string[] = [];
    listener.on('notification', (n) => heard.push(`${n.channel} ${n.payload}`));
    await listener.query('LISTEN corral_events');
    const writer = await pool.connect();
    await writer.query('BEGIN');
    const id = (await writer.query<{ id: string }>("INSERT INTO events (type, host) VALUES ('host.joined', 'h1') RETURNING id")).rows[0]!.id;
    await listener.query('SELECT 1');
    assert.deepEqual(heard, [], 'nothing before the commit');
    await writer.query('COMMIT');
    writer.release();
    for (let i = 0; i < 50 && heard.length === 0; i++) await listener.query('SELECT pg_sleep(0.02)');
    assert.deepEqual(heard, [`corral_events ${id}`]);
    const row = (await listener.query('SELECT type, host, instance, data, at IS NOT NULL AS at FROM events')).rows[0];
    assert.deepEqual(row, { type: 'host.joined', host: 'h1', instance: null, data: {}, at: true });
    // migration 11: a host's event id is kept once per host
    assert.deepEqual((await withClient(url, (c) => migrate(c))).applied, MIGRATIONS.slice(10).map((m) => m.version));
    await listener.query("INSERT INTO events (type, host, source_id) VALUES ('instance.state', 'h1', 7), ('instance.state', 'h2', 7)");
    await assert.rejects(listener.query("INSERT INTO events (type, host, source_id) VALUES ('instance.state', 'h1', 7)"), /events_source/);
  } finally {
    listener.release();
    await pool.end();
  }
});
