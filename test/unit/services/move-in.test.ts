/**
 * A stopped instance moved to this host (services/move-in.ts, for `corral host evacuate`): recorded here as its old
 * host had it (uuid, spec), stopped, its root disk on the shared pool taken over, nothing started; what cannot move
 * is refused and nothing is recorded.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after } from 'node:test';
import { CorralError } from '../../../src/core/errors.js';
import { validateCreate } from '../../../src/core/spec.js';
import { moveIn } from '../../../src/services/move-in.js';
import { SharedPool } from '../../../src/services/shared-pool.js';
import { harness } from './lifecycle-harness.js';

const UUID = '0f0e0d0c-0b0a-4908-8706-050403020100';

function setup() {
  const dir = mkdtempSync(join(tmpdir(), 'corral-move-in-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const pool = new SharedPool(dir);
  const h = harness({ sharedPool: pool });
  const spec = validateCreate({ name: 'c1', image: 'tiny', network: 'none', memory: '128M', accel: 'tcg', pool: 'shared' }, { cpus: 8, memory: 16 * 1024 ** 3, cpuList: [0] }).spec;
  spec.nics = [];
  return { h, pool, spec };
}

test('a stopped instance moved in: recorded stopped with its old uuid and spec, nothing started; it starts from the shared disk', async () => {
  const { h, pool, spec } = setup();
  pool.makeInstanceDir('c1');
  writeFileSync(pool.diskOf('c1'), 'disk');
  const view = await moveIn(h.svc, 'c1', { uuid: UUID, spec });
  assert.equal(view.state, 'stopped');
  assert.equal(view.uuid, UUID);
  assert.equal(h.row('c1').spec.rootPool, 'shared');
  assert.equal(h.driver.launches.length, 0, 'nothing started');
  const created = h.store.eventsSince(0, 100).find((e) => e.type === 'instance.created' && e.instance === 'c1');
  assert.match(String(created?.data.reason), /moved here stopped/);
  await h.svc.start('c1');
  assert.equal(h.state('c1'), 'running');
  assert.ok(JSON.stringify(h.driver.launches[0]).includes(pool.diskOf('c1')), 'its disk is the shared pool\'s');
  // a second move of the same name
  await assert.rejects(moveIn(h.svc, 'c1', { uuid: UUID, spec }), (e: CorralError) => e.code === 'ALREADY_EXISTS');
});

test('what cannot move is refused, and nothing is recorded', async () => {
  const { h, spec } = setup();
  // no disk on the shared pool for it
  await assert.rejects(moveIn(h.svc, 'c1', { uuid: UUID, spec }), (e: CorralError) => e.code === 'NOT_MIGRATABLE' && /holds no root disk/.test(e.message));
  // a local root disk
  await assert.rejects(moveIn(h.svc, 'c1', { uuid: UUID, spec: { ...spec, rootPool: 'local' } }), (e: CorralError) => e.code === 'NOT_MIGRATABLE' && /local pool/.test(e.message));
  // malformed requests
  await assert.rejects(moveIn(h.svc, 'c1', { uuid: 'nope', spec }), (e: CorralError) => e.code === 'INVALID_SPEC' && e.details.field === 'uuid');
  await assert.rejects(moveIn(h.svc, 'c1', { uuid: UUID, spec: { cpus: 1 } }), (e: CorralError) => e.code === 'INVALID_SPEC' && e.details.field === 'spec');
  assert.equal(h.store.getInstance('c1'), null);
});
