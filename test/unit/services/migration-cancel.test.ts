/**
 * A cancel that reaches the source before its migration has started (the controller still setting up the
 * destination and the pairs) is refused, saying so: a no-op that the migration then outlived would let a caller
 * believe it cancelled (the cluster-migrate integration test asks until one is taken).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MigrationService } from '../../../src/services/migration.js';
import { started } from './lifecycle-harness.js';

test('cancel with no migration started here: INVALID_STATE, nothing to cancel now', async () => {
  const h = await started();
  const m = new MigrationService({ instances: h.svc, events: h.events, log: { warn: () => undefined } });
  await assert.rejects(m.cancel('vm'), (e: Error & { code?: string }) => {
    assert.equal(e.code, 'INVALID_STATE');
    assert.match(e.message, /not being migrated from this host \(not yet, or not at all\): nothing to cancel now/);
    return true;
  });
  assert.equal(h.state('vm'), 'running');
});

test('an instance with snapshots is not live-migrated: NOT_MIGRATABLE naming them, and its QEMU is never asked to migrate', async () => {
  const h = await started();
  const m = new MigrationService({ instances: h.svc, events: h.events, log: { warn: () => undefined }, snapshots: () => ['before-upgrade'] });
  await assert.rejects(m.start('vm', { uri: 'tcp:127.0.0.1:4444' }), (e: Error & { code?: string }) => e.code === 'NOT_MIGRATABLE' && /snapshots \(before-upgrade\)/.test(e.message));
  const calls = [...h.driver.processes.values()].flatMap((p) => p.calls);
  assert.ok(!calls.includes('migrate'));
});
