/** Stored specs are checked against the spec schema when read back: a corrupt or foreign record is CORRUPT_RECORD. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { CorralError } from '../../../src/core/errors.js';
import { normalizeSpec } from '../../../src/core/spec.js';
import { SqliteStore } from '../../../src/store/sqlite.js';
import type { InstanceRow } from '../../../src/store/store.js';

const MiB = 1024 * 1024;
const MAC = '52:54:00:12:34:56';

function setup(): { file: string; store: SqliteStore; setSpec(name: string, text: string): void } {
  const file = join(mkdtempSync(join(tmpdir(), 'corral-store-')), 'corral.db');
  const store = new SqliteStore(file);
  const now = new Date().toISOString();
  for (const name of ['good', 'bad']) {
    const row: InstanceRow = {
      uuid: `uuid-${name}`, name, spec: normalizeSpec({ image: 'tiny', cpus: 1, memory: 256 * MiB }, MAC), state: 'stopped', accel: null,
      pid: null, pidStart: null, mac: MAC, createdAt: now, startedAt: null, lastError: null, updatedAt: now,
    };
    store.insertInstance(row);
  }
  const setSpec = (name: string, text: string): void => {
    const db = new Database(file);
    db.prepare('UPDATE instances SET spec = ? WHERE name = ?').run(text, name);
    db.close();
  };
  return { file, store, setSpec };
}

function corrupt(fn: () => unknown, field: string): CorralError {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  assert.ok(err instanceof CorralError, `expected CORRUPT_RECORD, got ${String(err)}`);
  assert.equal(err.code, 'CORRUPT_RECORD');
  assert.equal(err.status, 500);
  assert.equal(err.details.name, 'bad');
  assert.equal(err.details.field, field);
  assert.match(err.message, /instance "bad"/);
  return err;
}

test('a valid spec reads back as written; an old record (network, no NIC list) gets its defaults', () => {
  const { store, setSpec } = setup();
  assert.equal(store.getInstance('good')!.spec.nics[0]!.mac, MAC);
  setSpec('bad', JSON.stringify({ image: 'tiny', cpus: 2, memory: 512 * MiB, network: 'none' }));
  const old = store.getInstance('bad')!.spec;
  assert.deepEqual(old.nics, []);
  assert.equal(old.maxCpus, 2);
  assert.equal(old.rootBus, 'virtio-blk');
});

test('a spec with a wrong field, a foreign record or a non-JSON one is CORRUPT_RECORD naming the instance and the field', () => {
  const { store, setSpec } = setup();
  const spec = store.getInstance('good')!.spec;
  setSpec('bad', JSON.stringify({ ...spec, cpus: 'two' }));
  const e = corrupt(() => store.getInstance('bad'), 'cpus');
  assert.match(e.message, /cpus/);
  setSpec('bad', JSON.stringify({ ...spec, nics: [{ ...spec.nics[0], model: 'ne2000' }] }));
  corrupt(() => store.getInstance('bad'), 'nics.0.model');
  setSpec('bad', JSON.stringify({ kind: 'Deployment', replicas: 3 }));
  corrupt(() => store.getInstance('bad'), 'image');
  setSpec('bad', '{"image": "tiny", ');
  corrupt(() => store.listInstances(), '');
  setSpec('bad', '[1, 2]');
  corrupt(() => store.getInstance('bad'), '');
  assert.equal(store.getInstance('good')!.name, 'good', 'the other instances still read');
});

test('a spec read back once and corrupted afterwards is checked again (only unchanged text skips the check)', () => {
  const { store, setSpec } = setup();
  assert.equal(store.getInstance('bad')!.spec.cpus, 1);
  assert.equal(store.listInstances().length, 2);
  setSpec('bad', JSON.stringify({ image: 'tiny', cpus: 'many', memory: 256 * MiB, nics: [] }));
  corrupt(() => store.getInstance('bad'), 'cpus');
  corrupt(() => store.listInstances(), 'cpus');
});
