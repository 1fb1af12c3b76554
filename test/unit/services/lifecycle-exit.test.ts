/**
 * Stop, kill and exits over the fake hypervisor: every end of a QEMU goes through one path (state, exit
 * record, exited hooks once); a kill during a stop, two exits and a monitor that goes away stay consistent.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CorralError } from '../../../src/core/errors.js';
import { Ledger, ledgerHooks, started, until } from './lifecycle-harness.js';

async function running(ledger = new Ledger()) {
  const h = await started({ hooks: [['nics', ledgerHooks('nics', ledger)]] });
  const proc = h.driver.live()[0]!;
  return { h, proc, ledger };
}

test('stop: ACPI power-off, the guest powers off, stopped; the exit record says so', async () => {
  const { h, proc, ledger } = await running();
  const view = await h.svc.stop('vm', 5);
  assert.equal(view.state, 'stopped');
  assert.equal(proc.alive, false);
  assert.ok(proc.calls.includes('system_powerdown'));
  assert.deepEqual(h.transitions('vm'), ['stopped->starting', 'starting->running', 'running->stopping', 'stopping->stopped']);
  assert.deepEqual([...ledger.held], []);
  assert.equal(h.exitInfo('vm')?.reason, 'the guest powered off');
  assert.equal(h.runDirExists('vm'), false);
});

test('stop of a paused guest resumes it first, or it could not see the power button', async () => {
  const { h, proc } = await running();
  await h.svc.pause('vm');
  await h.svc.stop('vm', 5);
  assert.deepEqual(proc.calls.filter((c) => ['cont', 'system_powerdown'].includes(c)), ['cont', 'system_powerdown']);
  assert.equal(h.state('vm'), 'stopped');
});

test('a guest that ignores ACPI is killed at the timeout: stopped, not crashed, with a stop-timeout event', async () => {
  const { h, proc } = await running();
  proc.acpi = false;
  await h.svc.stop('vm', 0.05);
  assert.equal(h.state('vm'), 'stopped');
  assert.equal(proc.alive, false);
  assert.match(String(h.exitInfo('vm')?.reason), /did not power off within 0.05s/);
  assert.ok(h.store.eventsSince(0, 1000).some((e) => e.type === 'instance.stop-timeout'));
});

test('a guest that ignores ACPI is asked through its guest agent after half the timeout, and powers off: stopped, not killed', async () => {
  const { h, proc } = await running();
  proc.acpi = false;
  const asked: number[] = [];
  const t0 = Date.now();
  h.svc.setGuestShutdown(async (row) => {
    asked.push(Date.now() - t0);
    assert.equal(row.state, 'stopping');
    setImmediate(() => proc.exit({ code: 0, shutdown: 'guest-shutdown' }));
  });
  const view = await h.svc.stop('vm', 0.4);
  assert.equal(view.state, 'stopped');
  assert.equal(asked.length, 1);
  assert.ok(asked[0]! >= 150, `asked after ${asked[0]} ms: half of the 400 ms timeout goes to ACPI first`);
  const types = h.store.eventsSince(0, 1000).map((e) => e.type);
  assert.ok(types.includes('instance.stop-agent'));
  assert.ok(!types.includes('instance.stop-timeout'));
  assert.equal(h.exitInfo('vm')?.reason, 'the guest powered off');
});

test('a guest that honours ACPI never hears from its agent; one that ignores both is killed at the timeout', async () => {
  const { h, proc } = await running();
  let calls = 0;
  h.svc.setGuestShutdown(async () => { calls++; throw new CorralError('AGENT_UNAVAILABLE', 'the guest agent did not answer'); });
  await h.svc.stop('vm', 5);
  assert.equal(proc.alive, false);
  assert.equal(calls, 0);
  await h.svc.start('vm');
  const again = h.driver.live()[0]!;
  again.acpi = false;
  await h.svc.stop('vm', 0.1);
  assert.equal(calls, 1);
  assert.equal(again.alive, false);
  assert.ok(h.store.eventsSince(0, 1000).some((e) => e.type === 'instance.stop-timeout'));
  assert.match(String(h.exitInfo('vm')?.reason), /did not power off within 0.1s/);
  assert.ok(h.warnings.some((w) => /guest agent's shutdown failed/.test(w)));
});

test('an instance without the agent channel is never asked through it', async () => {
  const h = await started();
  h.store.updateInstance(h.row('vm').uuid, { spec: { ...h.row('vm').spec, agent: false } });
  const proc = h.driver.live()[0]!;
  proc.acpi = false;
  let calls = 0;
  h.svc.setGuestShutdown(async () => { calls++; });
  await h.svc.stop('vm', 0.1);
  assert.equal(calls, 0);
  assert.equal(proc.alive, false);
});

test('kill during a stop: the kill waits for the stop, which ends the QEMU; the kill then finds it stopped', async () => {
  const { h, proc, ledger } = await running();
  proc.acpi = false;
  const stop = h.svc.stop('vm', 0.2);
  await until(() => h.state('vm') === 'stopping', 'stopping');
  const kill = h.svc.kill('vm');
  await stop;
  await assert.rejects(kill, (e) => e instanceof CorralError && e.code === 'INVALID_STATE' && /it is stopped/.test(e.message));
  assert.equal(ledger.calls.filter((c) => c === 'nics.exited').length, 1);
  assert.deepEqual(h.transitions('vm').slice(2), ['running->stopping', 'stopping->stopped']);
});

test('a QEMU that exits on its own while stopping (the guest powered off late) is stopped', async () => {
  const { h, proc } = await running();
  proc.acpi = false;
  const stop = h.svc.stop('vm', 5);
  await until(() => h.state('vm') === 'stopping', 'stopping');
  proc.exit({ code: 0 });
  await stop;
  assert.equal(h.state('vm'), 'stopped');
});

test('kill: SIGKILL, stopped with the reason', async () => {
  const { h, proc } = await running();
  await h.svc.kill('vm');
  assert.equal(proc.alive, false);
  assert.equal(h.state('vm'), 'stopped');
  assert.equal(h.exitInfo('vm')?.reason, 'killed by user');
});

test('a crash: crashed with the signal, the kernel note and exited hooks; the next start is a new QEMU', async () => {
  const { h, proc, ledger } = await running();
  proc.deathNote = 'qemu-system-x86[1]: segfault at 18 ip 0 sp 0 error 4 in libc.so.6';
  proc.exit({ signal: 'SIGSEGV' });
  await until(() => h.state('vm') === 'crashed', 'crashed');
  const row = h.row('vm');
  assert.equal(row.pid, null);
  assert.match(String(row.lastError), /QEMU \d+ was killed by SIGSEGV: qemu-system-x86\[1\]: segfault/);
  assert.equal(h.exitInfo('vm')?.signal, 'SIGSEGV');
  await until(() => ledger.held.size === 0, 'the exited hooks');
  await h.svc.start('vm');
  assert.notEqual(h.row('vm').pid, proc.pid);
});

test('two exits of one QEMU move the state once and run the exited hooks once', async () => {
  const { h, proc, ledger } = await running();
  proc.exit({ signal: 'SIGSEGV' });
  proc.exit({ code: 0 });
  await until(() => h.state('vm') === 'crashed', 'crashed');
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(h.transitions('vm').slice(2), ['running->crashed']);
  assert.equal(ledger.calls.filter((c) => c === 'nics.exited').length, 1);
});

test('the exit of an old QEMU reported after a new start does not touch the new one', async () => {
  const { h, proc } = await running();
  const oldVm = h.svc.live('vm').vm;
  await h.svc.kill('vm');
  await h.svc.start('vm');
  const now = h.row('vm').pid;
  // a late event and a second exit of the old process
  proc.emit({ event: 'STOP', data: {} });
  proc.exit({ signal: 'SIGKILL' });
  await oldVm.exited;
  assert.equal(h.state('vm'), 'running');
  assert.equal(h.row('vm').pid, now);
});

test('the guest powering off by itself: stopped, "the guest powered off"', async () => {
  const { h, proc } = await running();
  proc.setShutdown('guest-shutdown');
  proc.exit({ code: 0 });
  await until(() => h.state('vm') === 'stopped', 'stopped');
  assert.equal(h.row('vm').lastError, null);
  assert.equal(h.exitInfo('vm')?.reason, 'the guest powered off');
});

test('a guest kernel panic ends the QEMU and the instance is crashed once it is gone', async () => {
  const { h, proc } = await running();
  proc.emit({ event: 'GUEST_PANICKED', data: { action: 'pause' } });
  await until(() => h.state('vm') === 'crashed', 'crashed');
  assert.equal(proc.alive, false);
  assert.equal(h.row('vm').lastError, 'the guest kernel panicked');
});

test('QMP STOP and RESUME from the guest side move running <-> paused', async () => {
  const { h, proc } = await running();
  proc.status = 'paused';
  proc.emit({ event: 'STOP', data: {} });
  assert.equal(h.state('vm'), 'paused');
  proc.emit({ event: 'RESUME', data: {} });
  assert.equal(h.state('vm'), 'running');
});

test('the monitor going away during pause is VM_GONE (409), not INTERNAL; a silent one is TIMEOUT', async () => {
  const { h, proc } = await running();
  const release = proc.hold('stop');
  const pause = h.svc.pause('vm');
  await until(() => proc.calls.includes('stop'), 'the stop command');
  proc.alive = false; // the socket closes under the command; the exit itself is reported afterwards
  release();
  await assert.rejects(pause, (e) => e instanceof CorralError && e.code === 'VM_GONE' && e.status === 409);
  proc.alive = true;
  proc.monitorDead = true;
  await assert.rejects(h.svc.pause('vm'), (e) => e instanceof CorralError && e.code === 'TIMEOUT' && e.status === 504);
});

test('delete --force of a running instance kills it; the row and the run dir are gone', async () => {
  const { h, proc, ledger } = await running();
  await h.svc.delete('vm', true);
  assert.equal(proc.alive, false);
  assert.equal(h.store.getInstance('vm'), null);
  assert.deepEqual([...ledger.held], []);
});

test('an exit the state table does not allow (a row changed behind the daemon) is refused and logged, not applied', async () => {
  const { h, proc } = await running();
  h.store.updateInstance(h.row('vm').uuid, { state: 'stopped' });
  proc.exit({ signal: 'SIGSEGV' });
  await until(() => h.warnings.some((w) => w.includes('illegal state transition from stopped to crashed')), 'the warning');
  assert.equal(h.state('vm'), 'stopped');
});
