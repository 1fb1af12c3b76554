/**
 * The audit log as the API writes it, read back from the file on disk: who, from where, what, the result; every
 * state-changing request, console websockets and refused requests; never a secret; and a log that cannot be
 * written never fails a request.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import WebSocket from 'ws';
import type { FastifyInstance } from 'fastify';
import { buildApi } from '../../../src/api/server.js';
import type { Services } from '../../../src/api/services.js';
import { CorralError } from '../../../src/core/errors.js';
import { AuditLog, type AuditEntry } from '../../../src/services/audit.js';
import { authSetup, bearer, LEGACY_TOKEN, type AuthSetup } from './auth-setup.js';
import { recordingServices } from './recording-services.js';

function withSetup(fn: (s: AuthSetup) => Promise<void>, real: Partial<Services> = {}): () => Promise<void> {
  return async () => {
    const s = await authSetup(real);
    try {
      await fn(s);
    } finally {
      await s.close();
    }
  };
}

/**
 * Open an instance's console websocket through a real connection (TCP on 127.0.0.1, or a unix socket): 101 once it
 * opens (then it is closed), or the status that refused the upgrade.
 */
async function openConsole(where: { port: number } | { socket: string }, headers: Record<string, string> = {}): Promise<number> {
  const path = '/v1/instances/web1/console';
  const ws = 'port' in where ? new WebSocket(`ws://127.0.0.1:${where.port}${path}`, { headers }) : new WebSocket(`ws+unix://${where.socket}:${path}`);
  return new Promise((resolve) => {
    ws.on('open', () => { ws.close(); resolve(101); });
    ws.on('unexpected-response', (_req, res) => { res.resume(); resolve(res.statusCode ?? 0); });
    ws.on('error', () => undefined);
  });
}

async function listenTcp(app: FastifyInstance): Promise<{ port: number }> {
  await app.listen({ host: '127.0.0.1', port: 0 });
  return { port: (app.server.address() as { port: number }).port };
}

/** The file's lines, once the response hooks have run. */
async function lines(s: AuthSetup): Promise<AuditEntry[]> {
  await new Promise((r) => setTimeout(r, 20));
  return readFileSync(s.auditFile, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as AuditEntry);
}

/** An entry without its time and duration, which vary. */
const fixed = ({ time, ms, ...rest }: AuditEntry): Omit<AuditEntry, 'time' | 'ms'> => {
  assert.ok(!Number.isNaN(Date.parse(time)) && typeof ms === 'number' && ms >= 0, `time ${time}, ms ${ms}`);
  return rest;
};

test('a state-changing TCP request is one line: who, role, peer, method, path without query, resource, status, error code', withSetup(async (s) => {
  await s.tcp.inject({ method: 'POST', url: '/v1/instances/web1/start', headers: bearer(s.secret.operator), payload: {} });
  await s.tcp.inject({ method: 'DELETE', url: '/v1/instances/web1?force=true', headers: bearer(s.secret.operator) });
  await s.tcp.inject({ method: 'GET', url: '/v1/instances', headers: bearer(s.secret.operator) });
  await s.tcp.inject({ method: 'POST', url: '/v1/volumes', headers: bearer(s.secret.operator), payload: { name: 'data', size: '1G' } });
  const base = { who: 'operator1', role: 'operator', via: 'tcp', peer: '127.0.0.1', status: 409, code: 'INVALID_STATE' } as const;
  assert.deepEqual((await lines(s)).map(fixed), [
    { ...base, method: 'POST', path: '/v1/instances/web1/start', resource: 'web1' },
    { ...base, method: 'DELETE', path: '/v1/instances/web1', resource: 'web1' },
    { ...base, method: 'POST', path: '/v1/volumes', resource: 'data' },
  ]);
}));

test('refused TCP requests are audited too: 401 with no caller, 403 with the caller and FORBIDDEN, reads included', withSetup(async (s) => {
  await s.tcp.inject({ method: 'GET', url: '/v1/instances' });
  await s.tcp.inject({ method: 'GET', url: '/v1/tokens', headers: bearer(s.secret.viewer) });
  await s.tcp.inject({ method: 'POST', url: '/v1/networks', headers: bearer(s.secret.operator), payload: { name: 'lan' } });
  assert.equal(await openConsole(await listenTcp(s.tcp), bearer(s.secret.viewer)), 403);
  assert.deepEqual((await lines(s)).map(fixed), [
    { who: null, role: null, via: 'tcp', peer: '127.0.0.1', method: 'GET', path: '/v1/instances', resource: null, status: 401, code: 'UNAUTHORIZED' },
    { who: 'viewer1', role: 'viewer', via: 'tcp', peer: '127.0.0.1', method: 'GET', path: '/v1/tokens', resource: null, status: 403, code: 'FORBIDDEN' },
    { who: 'operator1', role: 'operator', via: 'tcp', peer: '127.0.0.1', method: 'POST', path: '/v1/networks', resource: null, status: 403, code: 'FORBIDDEN' },
    { who: 'viewer1', role: 'viewer', via: 'tcp', peer: '127.0.0.1', method: 'GET', path: '/v1/instances/web1/console', resource: 'web1', status: 403, code: 'FORBIDDEN' },
  ]);
}));

test('no secret reaches the log: not the created token, not a bearer token, not the token file\'s', withSetup(async (s) => {
  const r = await s.tcp.inject({ method: 'POST', url: '/v1/tokens?x=1', headers: bearer(LEGACY_TOKEN), payload: { name: 'deploy', role: 'operator', expires: '30d' } });
  assert.equal(r.statusCode, 201);
  const made = (r.json() as { token: string }).token;
  await s.tcp.inject({ method: 'DELETE', url: '/v1/tokens/deploy', headers: bearer(s.secret.admin) });
  await s.tcp.inject({ method: 'POST', url: '/v1/instances/web1/stop', headers: bearer(made), payload: {} });
  const text = readFileSync(s.auditFile, 'utf8');
  for (const secret of [made, LEGACY_TOKEN, s.secret.admin, made.slice('corral_'.length)]) assert.ok(!text.includes(secret), 'a secret in the audit log');
  assert.doesNotMatch(text, /Bearer|authorization/i);
  assert.deepEqual((await lines(s)).map(fixed), [
    { who: 'token-file', role: 'admin', via: 'tcp', peer: '127.0.0.1', method: 'POST', path: '/v1/tokens', resource: 'deploy', status: 201, code: null },
    { who: 'admin1', role: 'admin', via: 'tcp', peer: '127.0.0.1', method: 'DELETE', path: '/v1/tokens/deploy', resource: 'deploy', status: 200, code: null },
    { who: null, role: null, via: 'tcp', peer: '127.0.0.1', method: 'POST', path: '/v1/instances/web1/stop', resource: 'web1', status: 401, code: 'UNAUTHORIZED' },
  ]);
}));

test('the unix socket\'s requests are the unix-socket caller\'s; an opened console is a 101 line', async () => {
  const guestDir = mkdtempSync(join(tmpdir(), 'corral-guest-'));
  const guest = createServer((c) => c.on('error', () => undefined));
  await new Promise<void>((r) => guest.listen(join(guestDir, 'console.sock'), r));
  const consoleSocket = (): string => join(guestDir, 'console.sock');
  await withSetup(async (s) => {
    await s.unix.inject({ method: 'POST', url: '/v1/networks', payload: { name: 'lan' } });
    const socket = join(s.dir, 'api.sock');
    await s.unix.listen({ path: socket });
    assert.equal(await openConsole({ socket }), 101);
    assert.equal(await openConsole(await listenTcp(s.tcp), bearer(s.secret.operator)), 101);
    const unix = { who: 'unix-socket', role: 'admin', via: 'unix', peer: null } as const;
    assert.deepEqual((await lines(s)).map(fixed), [
      { ...unix, resource: 'lan', method: 'POST', path: '/v1/networks', status: 409, code: 'INVALID_STATE' },
      { ...unix, resource: 'web1', method: 'GET', path: '/v1/instances/web1/console', status: 101, code: null },
      { who: 'operator1', role: 'operator', via: 'tcp', peer: '127.0.0.1', resource: 'web1', method: 'GET', path: '/v1/instances/web1/console', status: 101, code: null },
    ]);
  }, { instances: { consoleSocket } as unknown as Services['instances'] })();
  guest.close();
  rmSync(guestDir, { recursive: true, force: true });
});

test('a job that fails after its 200 (an image build) is audited with its error code', withSetup(async (s) => {
  const r = await s.unix.inject({ method: 'POST', url: '/v1/images/build-tiny', payload: {} });
  assert.equal(r.statusCode, 200);
  assert.match(r.body, /"type":"error".*"QEMU_FAILED"/);
  assert.deepEqual((await lines(s)).map(fixed), [
    { who: 'unix-socket', role: 'admin', via: 'unix', peer: null, method: 'POST', path: '/v1/images/build-tiny', resource: null, status: 200, code: 'QEMU_FAILED' },
  ]);
}, { images: { buildTiny: async () => { throw new CorralError('QEMU_FAILED', 'qemu-img: boom'); } } as unknown as Services['images'] }));

test('GET /v1/audit?limit=N: the latest N entries, oldest first (admin only)', withSetup(async (s) => {
  for (const a of ['start', 'stop', 'pause']) await s.unix.inject({ method: 'POST', url: `/v1/instances/web1/${a}`, payload: {} });
  await lines(s);
  const r = await s.tcp.inject({ method: 'GET', url: '/v1/audit?limit=2', headers: bearer(s.secret.admin) });
  assert.equal(r.statusCode, 200);
  assert.deepEqual((r.json() as { entries: AuditEntry[] }).entries.map((e) => e.path), ['/v1/instances/web1/stop', '/v1/instances/web1/pause']);
  const bad = await s.tcp.inject({ method: 'GET', url: '/v1/audit?limit=0', headers: bearer(s.secret.admin) });
  assert.equal(bad.statusCode, 400);
  assert.equal(bad.json().error.code, 'INVALID_SPEC');
}));

test('an audit log that cannot be written fails no request and is said once', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'corral-audit-'));
  const said: string[] = [];
  const audit = new AuditLog(join(dir, 'missing', 'audit.log'), { warn: (m) => said.push(m) });
  const calls: string[] = [];
  const app = await buildApi(recordingServices(calls), { audit });
  try {
    for (let i = 0; i < 3; i++) {
      const r = await app.inject({ method: 'POST', url: '/v1/instances/web1/start', payload: {} });
      assert.equal(r.statusCode, 409);
      assert.equal(r.json().error.code, 'INVALID_STATE');
    }
    await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual(calls, ['instances.start', 'instances.start', 'instances.start']);
    assert.equal(said.length, 1);
    assert.match(said[0]!, /cannot write the audit log .*missing\/audit\.log \(ENOENT/);
  } finally {
    await app.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
