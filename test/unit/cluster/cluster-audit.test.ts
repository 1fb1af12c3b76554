/**
 * The cluster's audit table: what one controller writes another reads back, oldest first, in the shape of a
 * daemon's audit log; an accepted heartbeat is not written, a refused one is; the table keeps its latest rows; a
 * write that fails never throws and is said once until one succeeds again.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { ClusterAudit } from '../../../src/cluster/cluster-audit.js';
import { openClusterDb, type ClusterDb } from '../../../src/cluster/db.js';
import type { AuditEntry } from '../../../src/services/audit.js';
import { startPostgres, type TestPostgres } from '../postgres.js';

let server: TestPostgres;

before(async () => { server = await startPostgres(); });
after(async () => { await server?.stop(); });

const entry = (i: number, over: Partial<AuditEntry> = {}): AuditEntry => ({
  time: new Date(Date.UTC(2026, 0, 1, 0, 0, i)).toISOString(), who: `t${i}`, role: 'operator', via: 'tcp', peer: '10.0.0.9',
  method: 'POST', path: `/v1/instances/web${i}/start`, resource: `web${i}`, status: 200, code: null, ms: 1.5, ...over,
});

async function withDbs<T>(fn: (a: ClusterDb, b: ClusterDb) => Promise<T>): Promise<T> {
  const url = await server.newDatabase();
  const a = await openClusterDb(url);
  const b = await openClusterDb(url);
  try {
    return await fn(a, b);
  } finally {
    await a.close();
    await b.close();
  }
}

test('entries written by two controllers are read back by either, oldest first, as a daemon\'s log has them', () => withDbs(async (a, b) => {
  const one = new ClusterAudit(a.pool);
  const two = new ClusterAudit(b.pool);
  await one.record(entry(1));
  await two.record(entry(2, { who: null, role: null, status: 401, code: 'UNAUTHORIZED', resource: null, method: 'GET', path: '/v1/instances' }));
  await one.record(entry(3, { who: 'agent h1', role: null, path: '/v1/cluster/heartbeat', resource: null, status: 403, code: 'UNTRUSTED_PEER' }));
  await one.record(entry(4, { who: 'agent h1', role: null, path: '/v1/cluster/heartbeat', resource: null }));
  assert.deepEqual(await two.recent(100), [
    entry(1),
    entry(2, { who: null, role: null, status: 401, code: 'UNAUTHORIZED', resource: null, method: 'GET', path: '/v1/instances' }),
    entry(3, { who: 'agent h1', role: null, path: '/v1/cluster/heartbeat', resource: null, status: 403, code: 'UNTRUSTED_PEER' }),
  ], 'an accepted heartbeat is not written, a refused one is');
  assert.deepEqual((await one.recent(1)).map((e) => e.who), ['agent h1'], 'the latest');
}));

test('the table keeps its latest rows', () => withDbs(async (a) => {
  const audit = new ClusterAudit(a.pool, { keep: 10 });
  for (let i = 0; i < 1000; i++) await audit.record(entry(i % 60, { who: `n${i}` }));
  const { rows } = await a.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM audit');
  assert.equal(rows[0]!.n, 10, 'pruned at the 1000th write to the latest 10');
  assert.deepEqual((await audit.recent(3)).map((e) => e.who), ['n997', 'n998', 'n999']);
}));

test('a write that fails never throws, and is said once until one succeeds again', () => withDbs(async (a) => {
  const said: string[] = [];
  const audit = new ClusterAudit(a.pool, { warn: (m) => said.push(m) });
  await a.pool.query('ALTER TABLE audit RENAME TO audit_away');
  await audit.record(entry(1));
  await audit.record(entry(2));
  assert.equal(said.length, 1);
  assert.match(said[0]!, /cannot write the cluster's audit table .*requests go on, unaudited/);
  await a.pool.query('ALTER TABLE audit_away RENAME TO audit');
  await audit.record(entry(3));
  assert.deepEqual(said.slice(1), ['corral: the cluster\'s audit table is written again']);
  assert.deepEqual((await audit.recent(10)).map((e) => e.who), ['t3']);
}));
