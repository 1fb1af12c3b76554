import { test } from 'node:test';
import assert from 'node:assert/strict';
import { assertCanRun, assertTransition, canRun, STATES, validTransition } from '../../../src/core/state.js';
import { CorralError } from '../../../src/core/errors.js';

test('start is allowed only from stopped, crashed and error', () => {
  const allowed = STATES.filter((s) => canRun('start', s));
  assert.deepEqual(allowed, ['stopped', 'crashed', 'error']);
});

test('a refused operation is INVALID_STATE (409) naming the current state', () => {
  assert.throws(() => assertCanRun('pause', 'stopped', 'web'), (e: unknown) => {
    assert.ok(e instanceof CorralError);
    assert.equal(e.code, 'INVALID_STATE');
    assert.equal(e.status, 409);
    assert.match(e.message, /it is stopped/);
    assert.equal(e.details.state, 'stopped');
    return true;
  });
});

test('delete refuses active instances; kill and stop refuse stopped ones', () => {
  for (const s of ['running', 'paused', 'starting', 'stopping'] as const) assert.equal(canRun('delete', s), false);
  assert.equal(canRun('kill', 'stopped'), false);
  assert.equal(canRun('stop', 'stopped'), false);
  assert.equal(canRun('resume', 'running'), false);
});

test('transitions: stopped cannot jump to running; running can crash; crashed can start again', () => {
  assert.equal(validTransition('stopped', 'running'), false);
  assert.equal(validTransition('running', 'crashed'), true);
  assert.equal(validTransition('crashed', 'starting'), true);
  assert.equal(validTransition('paused', 'running'), true);
});

/** The transitions the lifecycle makes, written out again so that a change to the table is a deliberate one. */
const EXPECTED: Record<string, string[]> = {
  stopped: ['starting'],
  starting: ['running', 'paused', 'stopped', 'crashed', 'error', 'stopping'],
  running: ['paused', 'stopping', 'stopped', 'crashed', 'error'],
  paused: ['running', 'stopping', 'stopped', 'crashed', 'error'],
  stopping: ['stopped', 'crashed', 'error', 'running', 'paused'],
  crashed: ['starting', 'stopped'],
  error: ['starting', 'stopped', 'running', 'paused'],
};

for (const from of STATES) {
  for (const to of STATES) {
    const allowed = from === to || EXPECTED[from]!.includes(to);
    test(`transition ${from} -> ${to} is ${allowed ? 'allowed' : 'refused as INTERNAL naming both states'}`, () => {
      assert.equal(validTransition(from, to), allowed);
      if (allowed) {
        assert.doesNotThrow(() => assertTransition(from, to, 'vm'));
      } else {
        assert.throws(() => assertTransition(from, to, 'vm'), (e: unknown) => {
          assert.ok(e instanceof CorralError);
          assert.equal(e.code, 'INTERNAL');
          assert.match(e.message, new RegExp(`from ${from} to ${to}`));
          assert.deepEqual([e.details.from, e.details.to], [from, to]);
          return true;
        });
      }
    });
  }
}
