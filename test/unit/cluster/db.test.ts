/**
 * Opening the cluster database: the schema is migrated on open; a PostgreSQL that is not there, does not answer,
 * or has no such database is DATABASE_UNAVAILABLE within the connect timeout, and the message never holds the
 * URL's password; a server that goes away under a running store makes its calls DATABASE_UNAVAILABLE, and they
 * work again once it is back.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server, type Socket } from 'node:net';
import pg from 'pg';
import { isCorralError } from '../../../src/core/errors.js';
import { ClusterStore } from '../../../src/cluster/cluster-store.js';
import { openClusterDb } from '../../../src/cluster/db.js';
import { MIGRATIONS } from '../../../src/cluster/migrations.js';
import { startPostgres, type TestPostgres } from '../postgres.js';

let server: TestPostgres;
before(async () => { server = await startPostgres(); });
after(async () => { await server?.stop(); });

const PASSWORD = 'pa55-Secret-xyzzy';

/** A TCP server on 127.0.0.1 that accepts connections and never says a word. */
async function silentServer(): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const srv: Server = createServer((s) => { sockets.add(s); s.on('error', () => undefined); });
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const port = (srv.address() as { port: number }).port;
  return { port, close: () => new Promise((resolve) => { for (const s of sockets) s.destroy(); srv.close(() => resolve()); }) };
}

/** A port of 127.0.0.1 nothing listens on (bound and closed again). */
async function closedPort(): Promise<number> {
  const s = await silentServer();
  await s.close();
  return s.port;
}

function unavailable(e: unknown): true {
  assert.ok(isCorralError(e), String(e));
  assert.equal(e.code, 'DATABASE_UNAVAILABLE');
  assert.equal(e.status, 503);
  assert.ok(!e.message.includes(PASSWORD), e.message);
  assert.ok(!JSON.stringify(e.toJSON()).includes(PASSWORD));
  return true;
}

test('open migrates the schema once; a second open finds it done; close twice is harmless', async () => {
  const url = await server.newDatabase();
  const a = await openClusterDb(url);
  assert.deepEqual(a.schema.applied, MIGRATIONS.map((m) => m.version));
  const b = await openClusterDb(url);
  assert.deepEqual(b.schema, { from: MIGRATIONS.length, to: MIGRATIONS.length, applied: [] });
  const r = await b.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM schema_migrations');
  assert.equal(r.rows[0]!.n, MIGRATIONS.length);
  await a.close();
  await a.close();
  await b.close();
});

test('a closed port is DATABASE_UNAVAILABLE naming the URL without its password', { timeout: 30_000 }, async () => {
  const port = await closedPort();
  await assert.rejects(openClusterDb(`postgres://corral:${PASSWORD}@127.0.0.1:${port}/corral`, { connectTimeoutMs: 5000 }), (e: unknown) => {
    unavailable(e);
    assert.match((e as Error).message, new RegExp(`^cannot reach PostgreSQL at postgres://corral:\\*\\*\\*@127\\.0\\.0\\.1:${port}/corral: .*ECONNREFUSED`));
    return true;
  });
});

test('a server that never answers is DATABASE_UNAVAILABLE once the connect timeout passes', { timeout: 30_000 }, async () => {
  const silent = await silentServer();
  try {
    await assert.rejects(openClusterDb(`postgres://corral:${PASSWORD}@127.0.0.1:${silent.port}/corral?password=${PASSWORD}`, { connectTimeoutMs: 300 }), (e: unknown) => {
      unavailable(e);
      assert.match((e as Error).message, /timeout/i);
      return true;
    });
  } finally {
    await silent.close();
  }
});

test('a database that does not exist is DATABASE_UNAVAILABLE saying so', { timeout: 30_000 }, async () => {
  const url = server.url.replace(/\/corral$/, '/no_such_db');
  await assert.rejects(openClusterDb(url), (e: unknown) => {
    unavailable(e);
    assert.match((e as Error).message, /database "no_such_db" does not exist/);
    return true;
  });
});

test('a schema newer than the code is refused by open, and its pool is closed', async () => {
  const url = await server.newDatabase();
  const db = await openClusterDb(url);
  await db.pool.query("INSERT INTO schema_migrations (version, name) VALUES (1000, 'future')");
  await db.close();
  await assert.rejects(openClusterDb(url), (e: unknown) => isCorralError(e) && e.code === 'SCHEMA_TOO_NEW');
  const c = new pg.Client({ connectionString: server.url });
  await c.connect();
  try {
    const n = await c.query<{ n: number }>("SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'corral-controller'");
    assert.equal(n.rows[0]!.n, 0, 'no controller connection is left open');
  } finally {
    await c.end();
  }
});

test('a server that goes away makes store calls DATABASE_UNAVAILABLE; they work again once it is back', { timeout: 120_000 }, async () => {
  const db = await openClusterDb(await server.newDatabase(), { connectTimeoutMs: 2000 });
  const store = new ClusterStore(db.pool);
  try {
    assert.deepEqual(await store.listHosts(), []);
    await server.pause();
    await assert.rejects(store.listHosts(), unavailable);
    await assert.rejects(store.getCa(), unavailable);
    await server.resume();
    assert.deepEqual(await store.listHosts(), []);
    assert.equal(await store.initCa({ certPem: 'cert', keyPem: 'key' }), true);
  } finally {
    await server.resume();
    await db.close();
  }
});
