/** Request validation: JSON bodies are taken as sent (no type coercion); the query string is coerced. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildApi } from '../../../src/api/server.js';
import { CorralError } from '../../../src/core/errors.js';
import type { Services } from '../../../src/api/services.js';

async function api(calls: unknown[][]) {
  const stop = (...args: unknown[]): never => {
    calls.push(args);
    throw new CorralError('INSTANCE_NOT_FOUND', 'stub');
  };
  const svc = {
    instances: { create: (req: unknown) => stop('create', req), delete: (name: string, force: boolean) => stop('delete', name, force) },
    events: { subscribe: () => () => undefined, since: () => [] },
  } as unknown as Services;
  return buildApi(svc);
}

test('a JSON body is validated as sent: "2" is not a number of CPUs, true is not a string', async () => {
  const calls: unknown[][] = [];
  const app = await api(calls);
  try {
    const bad = await app.inject({ method: 'POST', url: '/v1/instances', payload: { name: 'a', image: 'tiny', cpus: '2' } });
    assert.equal(bad.statusCode, 400);
    assert.equal(bad.json().error.code, 'INVALID_SPEC');
    assert.match(bad.json().error.message, /cpus/);
    const bad2 = await app.inject({ method: 'POST', url: '/v1/instances', payload: { name: 'a', image: 'tiny', start: 'yes' } });
    assert.equal(bad2.statusCode, 400);
    assert.deepEqual(calls, [], 'the service was never asked');
    const ok = await app.inject({ method: 'POST', url: '/v1/instances', payload: { name: 'a', image: 'tiny', cpus: 2, memory: '512M', start: true } });
    assert.equal(ok.statusCode, 404); // the stub's answer: validation let it through
    assert.deepEqual(calls, [['create', { name: 'a', image: 'tiny', cpus: 2, memory: '512M', start: true }]]);
  } finally {
    await app.close();
  }
});

test('display is vnc or none: anything else is refused by the body\'s schema, naming the field, before the service', async () => {
  const calls: unknown[][] = [];
  const app = await api(calls);
  try {
    for (const display of ['gtk', 'VNC', true, null]) {
      const bad = await app.inject({ method: 'POST', url: '/v1/instances', payload: { name: 'a', image: 'tiny', display } });
      assert.equal(bad.statusCode, 400, JSON.stringify(display));
      assert.equal(bad.json().error.code, 'INVALID_SPEC');
      assert.equal(bad.json().error.field, 'display');
    }
    assert.deepEqual(calls, [], 'the service was never asked');
    for (const display of ['vnc', 'none']) await app.inject({ method: 'POST', url: '/v1/instances', payload: { name: 'a', image: 'tiny', display } });
    assert.deepEqual(calls, [['create', { name: 'a', image: 'tiny', display: 'vnc' }], ['create', { name: 'a', image: 'tiny', display: 'none' }]]);
  } finally {
    await app.close();
  }
});

test('the query string is text: ?force=true is the boolean true', async () => {
  const calls: unknown[][] = [];
  const app = await api(calls);
  try {
    const r = await app.inject({ method: 'DELETE', url: '/v1/instances/a?force=true' });
    assert.equal(r.statusCode, 404);
    assert.deepEqual(calls, [['delete', 'a', true]]);
  } finally {
    await app.close();
  }
});
