/**
 * A restarted daemon over the fake hypervisor: VMs that outlived it are adopted (never started twice), the
 * ones that died are crashed (or stopped, if they were stopping), a half-started one is found by its uuid,
 * and one whose monitor does not answer is `error` until it is killed.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Ledger, harness, ledgerHooks, started, until } from './lifecycle-harness.js';

test('a running VM is adopted by the next daemon: same pid, running, adopted hooks; it can be stopped', async () => {
  const h = await started();
  const pid = h.row('vm').pid;
  const ledger = new Ledger();
  const h2 = h.restart([['nics', ledgerHooks('nics', ledger)]]);
  await h2.svc.reconcile();
  assert.equal(h2.state('vm'), 'running');
  assert.equal(h2.row('vm').pid, pid);
  assert.deepEqual(ledger.calls, ['nics.adopted']);
  assert.equal(h2.driver.live().length, 1, 'not started twice');
  await h2.svc.stop('vm', 5);
  assert.equal(h2.state('vm'), 'stopped');
  assert.deepEqual([...ledger.held], []);
});

test('a paused VM is adopted as paused', async () => {
  const h = await started();
  await h.svc.pause('vm');
  const h2 = h.restart();
  await h2.svc.reconcile();
  assert.equal(h2.state('vm'), 'paused');
});

test('a VM that died while the daemon was down is crashed, with the kernel\'s word and exited hooks', async () => {
  const h = await started();
  const ledger = new Ledger();
  const h2 = h.restart([['nics', ledgerHooks('nics', ledger)]]);
  const proc = h2.driver.live()[0]!;
  proc.deathNote = 'Out of memory: Killed process 123 (qemu-system-x86)';
  proc.exit({ signal: 'SIGKILL' });
  await h2.svc.reconcile();
  const row = h2.row('vm');
  assert.equal(row.state, 'crashed');
  assert.equal(row.pid, null);
  assert.match(String(row.lastError), /QEMU died while the daemon was down: Out of memory/);
  assert.equal(h2.exitInfo('vm')?.kernel, 'Out of memory: Killed process 123 (qemu-system-x86)');
  assert.deepEqual(ledger.calls, ['nics.exited']);
  assert.equal(h2.runDirExists('vm'), false);
});

test('a VM that was stopping and is gone is stopped, not crashed', async () => {
  const h = await started();
  h.store.updateInstance(h.row('vm').uuid, { state: 'stopping' });
  const h2 = h.restart();
  h2.driver.live()[0]!.exit({ code: 0 });
  await h2.svc.reconcile();
  assert.equal(h2.state('vm'), 'stopped');
});

test('a half-started VM (the daemon died before recording its pid) is found by its uuid and adopted', async () => {
  const h = await started();
  const pid = h.row('vm').pid;
  h.store.updateInstance(h.row('vm').uuid, { state: 'starting', pid: null, pidStart: null });
  const h2 = h.restart();
  await h2.svc.reconcile();
  assert.equal(h2.state('vm'), 'running');
  assert.equal(h2.row('vm').pid, pid);
  assert.equal(h2.driver.live().length, 1);
});

test('a start the daemon died in before any QEMU ran did not happen: stopped, and it can start again', async () => {
  const h = harness();
  h.add('vm');
  h.store.updateInstance(h.row('vm').uuid, { state: 'starting' });
  const h2 = h.restart();
  await h2.svc.reconcile();
  assert.equal(h2.state('vm'), 'stopped');
  await h2.svc.start('vm');
  assert.equal(h2.state('vm'), 'running');
});

test('a live VM whose monitor does not answer is error; kill ends the process and stops it; delete works after', async () => {
  const h = await started();
  const h2 = h.restart();
  const proc = h2.driver.live()[0]!;
  proc.monitorDead = true;
  await h2.svc.reconcile();
  assert.equal(h2.state('vm'), 'error');
  assert.equal(h2.row('vm').pid, proc.pid, 'the pid is kept, so that kill can end it');
  await h2.svc.kill('vm');
  await until(() => !proc.alive, 'the process killed');
  assert.equal(h2.state('vm'), 'stopped');
  await h2.svc.delete('vm');
  assert.equal(h2.store.getInstance('vm'), null);
});

test('a second adoption that reaches the monitor moves an error instance back to running', async () => {
  const h = await started();
  const h2 = h.restart();
  const proc = h2.driver.live()[0]!;
  proc.monitorDead = true;
  await h2.svc.reconcile();
  assert.equal(h2.state('vm'), 'error');
  proc.monitorDead = false;
  const h3 = h2.restart();
  await h3.svc.reconcile();
  assert.equal(h3.state('vm'), 'running');
});

test('a pid reused by another process is not adopted (the start time tells them apart)', async () => {
  const h = await started();
  h.store.updateInstance(h.row('vm').uuid, { pidStart: 1 });
  const h2 = h.restart();
  await h2.svc.reconcile();
  assert.equal(h2.state('vm'), 'crashed');
});
