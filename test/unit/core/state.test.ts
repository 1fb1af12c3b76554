import { test } from 'node:test';
import assert from 'node:assert/strict';
import { assertCanRun, canRun, STATES, validTransition } from '../../../src/core/state.js';
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
