/**
 * Start, over the fake hypervisor: a start that fails at any step leaves nothing behind (no process, no run
 * dir, no host resource a hook made) and the instance where it was; concurrent operations stay consistent.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CorralError } from '../../../src/core/errors.js';
import { HOOK_ORDER } from '../../../src/services/instance-hooks.js';
import { Ledger, harness, ledgerHooks, until, type HookStep } from './lifecycle-harness.js';

function coded(code: string, message?: RegExp) {
  return (e: unknown): boolean => {
    assert.ok(e instanceof CorralError, `a coded error, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    if (message) assert.match(e.message, message);
    return true;
  };
}

test('a start runs the hooks in HOOK_ORDER whatever order they were added in, and ends running', async () => {
  const ledger = new Ledger();
  const h = harness({ hooks: [['nics', ledgerHooks('nics', ledger)], ['cpu', ledgerHooks('cpu', ledger)], ['passthrough', ledgerHooks('passthrough', ledger)]] });
  h.add('vm');
  const view = await h.svc.start('vm');
  assert.equal(view.state, 'running');
  assert.deepEqual(ledger.calls, [
    'cpu.beforeLaunch', 'nics.beforeLaunch', 'passthrough.beforeLaunch',
    'cpu.beforeSpawn', 'nics.beforeSpawn', 'passthrough.beforeSpawn',
    'cpu.launched', 'nics.launched', 'passthrough.launched',
  ]);
  assert.equal(h.driver.live().length, 1);
  assert.equal(h.row('vm').pid, h.driver.live()[0]!.pid);
  assert.deepEqual(h.transitions('vm'), ['stopped->starting', 'starting->running']);
  assert.ok(HOOK_ORDER.indexOf('cpu') < HOOK_ORDER.indexOf('nics'));
});

test('hooks of one service added twice are refused', () => {
  const h = harness();
  h.svc.addHooks('cpu', {});
  assert.throws(() => h.svc.addHooks('cpu', {}), coded('INTERNAL', /twice/));
});

test('a start the pool cannot admit is INSUFFICIENT_RESOURCES: no hook runs, no process, still stopped', async () => {
  const ledger = new Ledger();
  const h = harness({ host: { cpus: 1, memory: 128 * 1024 * 1024 }, hooks: [['cpu', ledgerHooks('cpu', ledger)]] });
  h.add('vm');
  await assert.rejects(h.svc.start('vm'), coded('INSUFFICIENT_RESOURCES'));
  assert.equal(h.state('vm'), 'stopped');
  assert.deepEqual(ledger.calls, []);
  assert.equal(h.driver.launches.length, 0);
  assert.equal(h.runDirExists('vm'), false);
  assert.deepEqual(h.transitions('vm'), []);
});

for (const step of ['beforeLaunch', 'beforeSpawn', 'launched'] as HookStep[]) {
  for (const owner of ['cpu', 'nics', 'passthrough'] as const) {
    test(`a start whose ${owner} ${step} hook fails leaves nothing behind`, async () => {
      const ledger = new Ledger();
      const error = new CorralError('DEVICE_UNAVAILABLE', `${owner} cannot`);
      const h = harness({
        hooks: (['cpu', 'nics', 'passthrough'] as const).map((o) => [o, ledgerHooks(o, ledger, o === owner ? { step, error } : {})]),
      });
      h.add('vm');
      await assert.rejects(h.svc.start('vm'), (e) => e === error);
      assert.deepEqual([...ledger.held], [], 'every exited hook undid what the others made');
      assert.equal(ledger.calls.filter((c) => c.endsWith('.exited')).length, 3, 'each exited hook ran once');
      assert.equal(h.driver.live().length, 0, 'no QEMU left running');
      assert.equal(h.driver.launches.length, step === 'launched' ? 1 : 0);
      assert.equal(h.runDirExists('vm'), false);
      const row = h.row('vm');
      assert.equal(row.state, 'stopped');
      assert.equal(row.pid, null);
      assert.equal(row.lastError, `${owner} cannot`);
      assert.deepEqual(h.transitions('vm'), ['stopped->starting', 'starting->stopped']);
      assert.equal(h.exitInfo('vm'), null, 'a QEMU the start killed is not a crash to report');
    });
  }
}

test('a bug in a hook (a plain Error) is INTERNAL, not QEMU_FAILED', async () => {
  const h = harness({ hooks: [['memory', ledgerHooks('memory', new Ledger(), { step: 'launched', error: new TypeError('x is undefined') })]] });
  h.add('vm');
  await assert.rejects(h.svc.start('vm'), coded('INTERNAL', /x is undefined/));
  assert.equal(h.driver.live().length, 0);
  assert.ok(h.warnings.some((w) => w.includes('unexpected error') && w.includes('TypeError')), 'the stack is logged');
});

test('QEMU refusing the plan: QEMU_FAILED with its line; a monitor that never greets: killed, QEMU_FAILED', async () => {
  const ledger = new Ledger();
  const h = harness({ hooks: [['nics', ledgerHooks('nics', ledger)]] });
  h.add('vm');
  h.driver.failNextLaunch({ fail: "-device foo: 'foo' is not a valid device model name" });
  await assert.rejects(h.svc.start('vm'), coded('QEMU_FAILED', /not a valid device model/));
  assert.equal(h.row('vm').lastError, "qemu-system-x86_64: -device foo: 'foo' is not a valid device model name");
  h.driver.failNextLaunch({ noGreeting: true });
  await assert.rejects(h.svc.start('vm'), coded('QEMU_FAILED', /did not answer on QMP/));
  assert.equal(h.driver.live().length, 0);
  assert.deepEqual([...ledger.held], []);
  assert.equal(h.state('vm'), 'stopped');
  // and the next start works
  await h.svc.start('vm');
  assert.equal(h.state('vm'), 'running');
});

test('a failed start from crashed or error goes back there', async () => {
  const h = harness();
  h.add('vm');
  await h.svc.start('vm');
  h.driver.live()[0]!.exit({ signal: 'SIGSEGV' });
  await until(() => h.state('vm') === 'crashed', 'crashed');
  h.driver.failNextLaunch({ fail: 'boom' });
  await assert.rejects(h.svc.start('vm'), coded('QEMU_FAILED'));
  assert.equal(h.state('vm'), 'crashed');
});

test('QEMU dying during the start (a launched hook waiting on it): the start fails, stopped, the exit recorded, exited hooks once', async () => {
  const ledger = new Ledger();
  const h = harness({
    hooks: [['cpu', ledgerHooks('cpu', ledger)], ['memory', {
      launched: async (_row, vm) => {
        h.driver.processes.get(vm.pid)!.exit({ signal: 'SIGSEGV' });
        await vm.status();
      },
    }]],
  });
  h.add('vm');
  await assert.rejects(h.svc.start('vm'), coded('VM_GONE'));
  assert.equal(h.state('vm'), 'stopped');
  assert.deepEqual(h.transitions('vm'), ['stopped->starting', 'starting->stopped']);
  assert.equal(ledger.calls.filter((c) => c === 'cpu.exited').length, 1);
  assert.deepEqual([...ledger.held], []);
  const exit = h.exitInfo('vm');
  assert.equal(exit?.signal, 'SIGSEGV');
  assert.equal(exit?.state, 'crashed');
});

test('two starts at once: one runs, the other is INVALID_STATE; one QEMU', async () => {
  const h = harness();
  h.add('vm');
  const release = h.driver.holdLaunch();
  const a = h.svc.start('vm');
  const b = h.svc.start('vm');
  await until(() => h.driver.launches.length === 1, 'the first launch');
  assert.equal(h.state('vm'), 'starting');
  release();
  await a;
  await assert.rejects(b, coded('INVALID_STATE', /it is running/));
  assert.equal(h.driver.live().length, 1);
});

test('operations queue behind a start: a pause asked during the launch runs once the start is done', async () => {
  const h = harness();
  h.add('vm');
  const release = h.driver.holdLaunch();
  const order: string[] = [];
  const start = h.svc.start('vm').then(() => order.push('start'));
  await until(() => h.driver.launches.length === 1, 'the launch');
  const pause = h.svc.pause('vm').then((v) => { order.push('pause'); return v; });
  await new Promise((r) => setImmediate(r));
  assert.equal(h.state('vm'), 'starting', 'the pause did not run during the start');
  release();
  const paused = await pause;
  await start;
  assert.deepEqual(order, ['start', 'pause']);
  assert.equal(paused.state, 'paused');
  assert.deepEqual(h.transitions('vm'), ['stopped->starting', 'starting->running', 'running->paused']);
});

test('concurrent starts of two instances cannot oversubscribe the pool', async () => {
  const h = harness({ host: { cpus: 2, memory: 400 * 1024 * 1024 } });
  h.add('a');
  h.add('b');
  const results = await Promise.allSettled([h.svc.start('a'), h.svc.start('b')]);
  const ok = results.filter((r) => r.status === 'fulfilled').length;
  assert.equal(ok, 1, 'one fits in 400 MiB, two do not');
  const failed = results.find((r) => r.status === 'rejected') as PromiseRejectedResult;
  assert.equal((failed.reason as CorralError).code, 'INSUFFICIENT_RESOURCES');
  assert.equal(h.driver.live().length, 1);
});
