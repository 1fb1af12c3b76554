/**
 * What the store answers without reading every instance. Its index of NICs (instance_nics): planning a NIC asks
 * whether a MAC is taken and which NICs forward host ports; it follows every spec write and is made again at each
 * open. Instances by state: admission reads only the active ones.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { normalizeSpec } from '../../../src/core/spec.js';
import type { InstanceNic } from '../../../src/core/spec-schema.js';
import { SqliteStore } from '../../../src/store/sqlite.js';
import type { InstanceRow } from '../../../src/store/store.js';

const MiB = 1024 * 1024;

function row(name: string, mac: string): InstanceRow {
  const now = new Date().toISOString();
  return {
    uuid: `uuid-${name}`, name, spec: normalizeSpec({ image: 'tiny', cpus: 1, memory: 256 * MiB }, mac), state: 'stopped', accel: null,
    pid: null, pidStart: null, mac, createdAt: now, startedAt: null, lastError: null, updatedAt: now,
  };
}

const forwarded = (nic: InstanceNic): InstanceNic => ({ ...nic, forwards: [{ proto: 'tcp', hostAddr: '127.0.0.1', hostPort: 2222, guestPort: 22 }] });

test('a MAC is taken from the insert of its instance to its delete, and follows spec changes', () => {
  const store = new SqliteStore(':memory:');
  assert.equal(store.macInUse('52:54:00:00:00:01'), false);
  const a = row('a', '52:54:00:00:00:01');
  store.insertInstance(a);
  assert.equal(store.macInUse('52:54:00:00:00:01'), true);
  assert.equal(store.macInUse('52:54:00:00:00:02'), false);

  const second = { ...a.spec.nics[0]!, id: 'net1', mac: '52:54:00:00:00:02' };
  store.updateInstance(a.uuid, { spec: { ...a.spec, nics: [...a.spec.nics, second] } });
  assert.equal(store.macInUse('52:54:00:00:00:02'), true);
  store.updateInstance(a.uuid, { state: 'running' }); // a write without a spec keeps the index
  assert.equal(store.macInUse('52:54:00:00:00:02'), true);
  store.updateInstance(a.uuid, { spec: { ...a.spec, nics: [] } });
  assert.equal(store.macInUse('52:54:00:00:00:01'), false);
  assert.equal(store.macInUse('52:54:00:00:00:02'), false);

  store.updateInstance(a.uuid, { spec: a.spec });
  store.deleteInstance(a.uuid);
  assert.equal(store.macInUse('52:54:00:00:00:01'), false);
});

test('the NICs that forward host ports, with their instance', () => {
  const store = new SqliteStore(':memory:');
  const a = row('a', '52:54:00:00:00:01');
  a.spec.nics = [forwarded(a.spec.nics[0]!)];
  store.insertInstance(a);
  store.insertInstance(row('b', '52:54:00:00:00:02'));
  const got = store.nicsWithForwards();
  assert.deepEqual(got.map((n) => [n.instance, n.nic.mac, n.nic.forwards?.[0]?.hostPort]), [['a', '52:54:00:00:00:01', 2222]]);
  store.deleteInstance(a.uuid);
  assert.deepEqual(store.nicsWithForwards(), []);
});

test('the index is made again from the specs at open: a database from before it, or edited by hand', () => {
  const file = join(mkdtempSync(join(tmpdir(), 'corral-nics-')), 'corral.db');
  const store = new SqliteStore(file);
  store.insertInstance(row('a', '52:54:00:00:00:01'));
  store.close();
  const db = new Database(file);
  db.exec('DROP TABLE instance_nics'); // as a database from before the index
  db.prepare('UPDATE instances SET spec = ? WHERE name = ?').run(JSON.stringify({ image: 'tiny', cpus: 1, memory: 256 * MiB, network: 'default' }), 'a');
  db.close();
  const again = new SqliteStore(file);
  // an old record without a NIC list gets its one NIC from the row's MAC, and the index has it
  assert.equal(again.macInUse('52:54:00:00:00:01'), true);
  again.close();
});

test('instances by state: only those in the states asked for, by name', () => {
  const store = new SqliteStore(':memory:');
  for (const [name, state] of [['c', 'running'], ['a', 'paused'], ['b', 'stopped'], ['d', 'crashed']] as const) {
    store.insertInstance({ ...row(name, `52:54:00:00:00:0${name.charCodeAt(0) - 96}`), state });
  }
  assert.deepEqual(store.listInstances(['running', 'paused', 'starting']).map((r) => r.name), ['a', 'c']);
  assert.deepEqual(store.listInstances(['stopped']).map((r) => r.name), ['b']);
  assert.deepEqual(store.listInstances([]).map((r) => r.name), []);
  assert.deepEqual(store.listInstances().map((r) => r.name), ['a', 'b', 'c', 'd']);
});
