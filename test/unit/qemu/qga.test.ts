/** The guest agent client (src/qemu/qga.ts) against a fake agent on a unix socket. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { CorralError } from '../../../src/core/errors.js';
import { QgaClient, QgaFramer, type QgaFrame } from '../../../src/qemu/qga.js';
import { AgentError, FakeAgent, NO_REPLY } from './fake-qga.js';

async function withAgent(handlers: ConstructorParameters<typeof FakeAgent>[0], fn: (a: FakeAgent, c: QgaClient) => Promise<void>): Promise<void> {
  const a = new FakeAgent(handlers);
  await a.start();
  const c = new QgaClient(a.socket, 'instance "t"');
  try {
    await fn(a, c);
  } finally {
    c.close();
    await a.close();
  }
}

const coded = (code: string, re: RegExp) => (e: unknown): boolean => {
  assert.ok(e instanceof CorralError, String(e));
  assert.equal(e.code, code, e.message);
  assert.match(e.message, re);
  return true;
};

test('framer: objects found by their braces (braces and quotes inside strings too), 0xFF marks, a half object dropped at 0xFF', () => {
  const f = new QgaFramer();
  const text = '{"return": {"a": "x}{\\"y"}}  \n{"return":1}\xff{"broken": \xff{"return": 2}junk{"x": [1, {"y": 2}]}';
  const bytes = Buffer.from(text, 'latin1');
  for (const b of bytes) f.push(Buffer.from([b])); // a byte at a time
  const frames: QgaFrame[] = [];
  for (let x = f.next(); x; x = f.next()) frames.push(x);
  assert.deepEqual(frames, [
    { kind: 'message', value: { return: { a: 'x}{"y' } } },
    { kind: 'message', value: { return: 1 } },
    { kind: 'sentinel' },
    { kind: 'sentinel' },
    { kind: 'message', value: { return: 2 } },
    { kind: 'message', value: { x: [1, { y: 2 }] } },
  ]);
});

test('a call syncs first (0xFF + guest-sync-delimited with a random id), then sends the command and returns its answer', async () => {
  await withAgent({ 'guest-info': () => ({ version: '7.2.22' }) }, async (a, c) => {
    assert.deepEqual(await c.call('guest-info'), { version: '7.2.22' });
    assert.deepEqual(await c.call('guest-info'), { version: '7.2.22' });
    assert.deepEqual(a.received, ['sync', 'guest-info', 'sync', 'guest-info']);
    assert.equal(a.connections, 1, 'the connection is kept between calls');
  });
});

test('stale answers left in the channel (a caller that gave up, an old sync) are skipped; answers a byte at a time without newlines are read', async () => {
  await withAgent({ 'guest-get-osinfo': () => ({ id: 'debian' }) }, async (a, c) => {
    a.stale = true;
    a.trickle = true;
    assert.deepEqual(await c.call('guest-get-osinfo'), { id: 'debian' });
  });
});

test('an agent that does not answer: AGENT_UNAVAILABLE within the timeout, the connection dropped; the next call connects again', async () => {
  await withAgent({ 'guest-ping': () => ({}) }, async (a, c) => {
    a.mute = true;
    await assert.rejects(c.call('guest-ping', undefined, 150), coded('AGENT_UNAVAILABLE', /did not answer guest-ping within 0\.1s \(no answer to guest-sync-delimited\): is qemu-guest-agent installed and running/));
    a.mute = false;
    assert.deepEqual(await c.call('guest-ping'), {});
    assert.equal(a.connections, 2);
  });
});

test('an agent that answers the sync but not the command: AGENT_UNAVAILABLE naming the command', async () => {
  await withAgent({ 'guest-exec-status': () => new Promise(() => undefined) }, async (_a, c) => {
    await assert.rejects(c.call('guest-exec-status', { pid: 1 }, 200), coded('AGENT_UNAVAILABLE', /did not answer guest-exec-status .*\(no answer to the command\)/));
  });
});

test('the agent\'s refusal is AGENT_FAILED with its description and class; the channel stays usable', async () => {
  await withAgent({ 'guest-exec': () => { throw new AgentError('GenericError', 'Guest agent command failed, error was \'Failed to execute child process "nope"\''); }, 'guest-ping': () => ({}) }, async (_a, c) => {
    await assert.rejects(c.call('guest-exec', { path: 'nope' }), (e: unknown) => {
      coded('AGENT_FAILED', /refused guest-exec: Guest agent command failed, error was 'Failed to execute child process "nope"' \(GenericError\)/)(e);
      assert.equal((e as CorralError).details.class, 'GenericError');
      return true;
    });
    await assert.rejects(c.call('guest-bogus'), coded('AGENT_FAILED', /CommandNotFound/));
    assert.deepEqual(await c.call('guest-ping'), {});
  });
});

test('no socket (its QEMU is not running): AGENT_UNAVAILABLE saying so', async () => {
  const c = new QgaClient(join(tmpdir(), 'corral-no-such-dir', 'qga.sock'), 'instance "t"');
  await assert.rejects(c.call('guest-ping'), (e: unknown) => {
    coded('AGENT_UNAVAILABLE', /is not open \(ENOENT\): its QEMU is not running/)(e);
    assert.equal((e as CorralError).details.reason, 'not-running');
    return true;
  });
});

test('the channel closing in the middle of a call (QEMU gone): AGENT_UNAVAILABLE, not a hang', async () => {
  let agent!: FakeAgent;
  await withAgent({ 'guest-exec-status': () => { setTimeout(() => agent.dropClients(), 20); return new Promise(() => undefined); } }, async (a, c) => {
    agent = a;
    await assert.rejects(c.call('guest-exec-status', { pid: 1 }, 10_000), coded('AGENT_UNAVAILABLE', /closed/));
  });
});

test('callers take turns: a second call waits for the first, whose answer is never taken by the second', async () => {
  let n = 0;
  await withAgent({ 'guest-count': async () => { const mine = ++n; await new Promise((r) => setTimeout(r, 30)); return mine; } }, async (a, c) => {
    const [x, y, z] = await Promise.all([c.call('guest-count'), c.call('guest-count'), c.call('guest-count')]);
    assert.deepEqual([x, y, z], [1, 2, 3]);
    assert.deepEqual(a.received, ['sync', 'guest-count', 'sync', 'guest-count', 'sync', 'guest-count']);
  });
});

test('the wait for the turn counts in a call\'s timeout', async () => {
  await withAgent({ 'guest-slow': () => new Promise((r) => setTimeout(() => r(1), 300)), 'guest-ping': () => ({}) }, async (_a, c) => {
    const slow = c.call('guest-slow', undefined, 5000);
    await assert.rejects(c.call('guest-ping', undefined, 100), coded('AGENT_UNAVAILABLE', /another call to the agent was still running/));
    assert.equal(await slow, 1);
  });
});

test('a command that answers nothing when it works (guest-shutdown): reply: false returns once it is sent after a sync', async () => {
  let asked: unknown;
  await withAgent({ 'guest-shutdown': (args) => { asked = args; return NO_REPLY; }, 'guest-ping': () => ({}) }, async (a, c) => {
    assert.equal(await c.call('guest-shutdown', { mode: 'powerdown' }, 1000, { reply: false }), undefined);
    assert.deepEqual(await c.call('guest-ping'), {});
    assert.deepEqual(asked, { mode: 'powerdown' });
    assert.deepEqual(a.received, ['sync', 'guest-shutdown', 'sync', 'guest-ping']);
  });
});
