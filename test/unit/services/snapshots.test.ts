/** The snapshot service over the fake hypervisor: freeze and thaw around one transaction, nothing half-made, reconcile. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { isCorralError } from '../../../src/core/errors.js';
import { instancePaths } from '../../../src/core/paths.js';
import { writeJsonAtomic } from '../../../src/host/fs-atomic.js';
import { SnapshotService } from '../../../src/services/snapshots.js';
import type { InstanceRow } from '../../../src/store/store.js';
import { started, type Harness } from './lifecycle-harness.js';

interface Agent { calls: string[]; frozen: number | null }

function service(h: Harness, agent: Agent): SnapshotService {
  return new SnapshotService({
    instances: h.svc, volumes: () => [], events: h.events, log: { warn: () => {} }, pollMs: 1,
    agent: {
      freeze: async (_row: InstanceRow) => { agent.calls.push('freeze'); return agent.frozen; },
      thaw: async () => { agent.calls.push('thaw'); return true; },
    },
  });
}

const proc = (h: Harness) => [...h.driver.processes.values()].find((p) => p.alive)!;
const file = (h: Harness) => join(instancePaths(h.dataDir, h.row('vm').uuid).dir, 'snapshots.json');
const onRoot = (h: Harness) => (proc(h).nodeSnapshots.get('disk0-fmt') ?? []).map((s) => s.name);

test('a disk-only snapshot of a running guest: frozen by the agent, one transaction over every disk, thawed after', async () => {
  const h = await started();
  const agent: Agent = { calls: [], frozen: 1 };
  const s = service(h, agent);
  const v = await s.create('vm', 'before');
  assert.deepEqual([v.memory, v.frozen, v.instanceState, v.disks], [false, true, 'running', ['root']]);
  assert.deepEqual(agent.calls, ['freeze', 'thaw']);
  assert.ok(proc(h).calls.includes('transaction'));
  assert.deepEqual(onRoot(h), ['before']);
  assert.deepEqual(s.list('vm').map((x) => x.name), ['before']);
  assert.deepEqual(h.events.since(0).filter((e) => e.type === 'instance.snapshot-created').map((e) => [e.data.snapshot, e.data.frozen]), [['before', true]]);
  await assert.rejects(s.create('vm', 'before'), (e: unknown) => isCorralError(e) && e.code === 'ALREADY_EXISTS');
});

test('an agent that does not answer: crash-consistent (frozen false), and the thaw is still sent', async () => {
  const h = await started();
  const agent: Agent = { calls: [], frozen: null };
  const v = await service(h, agent).create('vm', 'plain');
  assert.equal(v.frozen, false);
  assert.deepEqual(agent.calls, ['freeze', 'thaw']);
});

test('a transaction QEMU refuses: the guest is thawed and no record is left', async () => {
  const h = await started();
  const agent: Agent = { calls: [], frozen: 1 };
  const s = service(h, agent);
  proc(h).failNext('transaction');
  await assert.rejects(s.create('vm', 'bad'), (e: unknown) => isCorralError(e) && e.code === 'QEMU_FAILED');
  assert.deepEqual(agent.calls, ['freeze', 'thaw']);
  assert.deepEqual(s.list('vm'), []);
  assert.deepEqual(JSON.parse(readFileSync(file(h), 'utf8')), { snapshots: [] });
});

test('memory: snapshot-save; a restore needs --force while running and loads into the same QEMU; a lost snapshot is SNAPSHOT_MISMATCH', async () => {
  const h = await started();
  const s = service(h, { calls: [], frozen: 1 });
  const v = await s.create('vm', 'm1', { memory: true });
  assert.deepEqual([v.memory, v.frozen, v.vmStateSize], [true, false, 4096]);
  assert.ok(proc(h).calls.includes('snapshot-save'));
  await assert.rejects(s.restore('vm', 'm1'), (e: unknown) => isCorralError(e) && e.code === 'INVALID_STATE' && /--force/.test(e.message));
  const pid = h.row('vm').pid;
  const r = await s.restore('vm', 'm1', { force: true });
  assert.equal(r.state, 'running');
  assert.equal(h.row('vm').pid, pid);
  assert.ok(proc(h).calls.includes('snapshot-load'));
  await assert.rejects(s.restore('vm', 'nope', { force: true }), (e: unknown) => isCorralError(e) && e.code === 'SNAPSHOT_NOT_FOUND');
  proc(h).nodeSnapshots.set('disk0-fmt', []);
  const loads = proc(h).calls.filter((c) => c === 'snapshot-load').length;
  await assert.rejects(s.restore('vm', 'm1', { force: true }), (e: unknown) => isCorralError(e) && e.code === 'SNAPSHOT_MISMATCH' && /root disk no longer holds it/.test(e.message));
  assert.equal(proc(h).calls.filter((c) => c === 'snapshot-load').length, loads, 'nothing was loaded');
  await assert.rejects(s.create('vm', 'Bad'), (e: unknown) => isCorralError(e) && e.code === 'INVALID_SPEC');
});

test('reconcile: a snapshot a crash left `creating` is deleted from the disks that hold it and its record dropped', async () => {
  const h = await started();
  const s = service(h, { calls: [], frozen: 1 });
  await s.create('vm', 'whole');
  // as a daemon killed between the transaction and the record's `ready` leaves it
  await proc(h).call('transaction', () => undefined);
  proc(h).nodeSnapshots.get('disk0-fmt')!.push({ id: '9', name: 'half', 'vm-state-size': 0, 'date-sec': 1, 'date-nsec': 0 });
  const recs = JSON.parse(readFileSync(file(h), 'utf8')).snapshots;
  writeJsonAtomic(file(h), { snapshots: [...recs, { ...recs[0], name: 'half', phase: 'creating', disks: [] }] });
  assert.deepEqual(await s.reconcile(), ['snapshot half of vm']);
  assert.deepEqual(onRoot(h), ['whole']);
  assert.deepEqual(JSON.parse(readFileSync(file(h), 'utf8')).snapshots.map((x: { name: string }) => x.name), ['whole']);
  assert.ok(existsSync(file(h)));
});

test('--memory of a stopped instance is INVALID_STATE, and nothing is recorded', async () => {
  const h = await started();
  await h.svc.kill('vm');
  const s = service(h, { calls: [], frozen: 1 });
  await assert.rejects(s.create('vm', 'm1', { memory: true }), (e: unknown) => isCorralError(e) && e.code === 'INVALID_STATE' && /running guest's RAM/.test(e.message));
  assert.equal(existsSync(file(h)), false);
});
