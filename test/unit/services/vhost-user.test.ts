/** The registry of vhost-user back ends: add, list, remove; in use; a hand-edited file. */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isCorralError } from '../../../src/core/errors.js';
import { VhostUserStore } from '../../../src/network/vhost-user-store.js';
import { VhostUserService } from '../../../src/services/vhost-user.js';

const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function fresh(): { svc: VhostUserService; store: VhostUserStore; events: string[]; dataDir: string } {
  const dataDir = mkdtempSync(join(tmpdir(), 'corral-vu-'));
  dirs.push(dataDir);
  const store = new VhostUserStore(dataDir);
  const events: string[] = [];
  const svc = new VhostUserService({ store, dataDir, events: { publish: (type: string) => { events.push(type); return {} as never; } }, now: () => new Date(0) });
  return { svc, store, events, dataDir };
}

async function rejects(p: Promise<unknown>, code: string, field?: string): Promise<void> {
  await assert.rejects(p, (e: unknown) => isCorralError(e) && e.code === code && (field === undefined || e.details.field === field), code);
}

test('add and list: name -> socket, written 0600; the socket need not exist yet', async () => {
  const e = fresh();
  const b = await e.svc.add({ name: 'ovs1', socket: '/run/openvswitch/vhu1.sock' });
  await e.svc.add({ name: 'ovs0', socket: '/run/openvswitch/vhu0.sock' });
  assert.deepEqual(b, { name: 'ovs1', socket: '/run/openvswitch/vhu1.sock', createdAt: '1970-01-01T00:00:00.000Z' });
  assert.deepEqual(e.svc.list().map((x) => x.name), ['ovs0', 'ovs1']);
  assert.equal(statSync(e.store.file).mode & 0o777, 0o600);
  assert.deepEqual(e.svc.view(b), { ...b, listening: false, usedBy: [] });
  assert.deepEqual(e.events, ['vhost-user.added', 'vhost-user.added']);
  assert.equal(e.svc.get('ovs0').socket, '/run/openvswitch/vhu0.sock');
  assert.throws(() => e.svc.get('nope'), (err: unknown) => isCorralError(err) && err.code === 'NOT_FOUND' && /corral vhost-user add/.test(err.message));
});

test('refused: a taken name or socket, a bad path, a socket in the data dir; nothing is written', async () => {
  const e = fresh();
  await e.svc.add({ name: 'ovs0', socket: '/run/vhu0.sock' });
  const before = readFileSync(e.store.file, 'utf8');
  await rejects(e.svc.add({ name: 'ovs0', socket: '/run/other.sock' }), 'ALREADY_EXISTS', 'name');
  await rejects(e.svc.add({ name: 'ovs9', socket: '/run/vhu0.sock' }), 'ALREADY_EXISTS', 'socket');
  await rejects(e.svc.add({ name: 'ovs9', socket: '/run/../vhu0.sock' }), 'INVALID_SPEC', 'socket');
  await rejects(e.svc.add({ name: 'ovs9', socket: join(e.dataDir, 'corral.sock') }), 'INVALID_SPEC', 'socket');
  await rejects(e.svc.add({ name: 'Bad Name', socket: '/run/x.sock' }), 'INVALID_SPEC', 'name');
  assert.equal(readFileSync(e.store.file, 'utf8'), before);
});

test('remove: refused while a NIC uses the back end (DEVICE_IN_USE naming it), then gone', async () => {
  const e = fresh();
  await e.svc.add({ name: 'ovs0', socket: '/run/vhu0.sock' });
  let users = ['web1/net1'];
  e.svc.setUsers((b) => (b.name === 'ovs0' ? users : []));
  await assert.rejects(e.svc.remove('ovs0'), (err: unknown) => isCorralError(err) && err.code === 'DEVICE_IN_USE' && err.status === 409 && /web1\/net1/.test(err.message));
  assert.deepEqual(e.svc.view(e.svc.get('ovs0')).usedBy, ['web1/net1']);
  users = [];
  await e.svc.remove('ovs0');
  assert.deepEqual(e.svc.list(), []);
  await rejects(e.svc.remove('ovs0'), 'NOT_FOUND');
});

test('listening: true once a unix socket is there', async () => {
  const e = fresh();
  const path = join(e.dataDir, '..', `corral-vu-test-${process.pid}.sock`);
  const server = createServer().listen(path);
  await new Promise((r) => server.once('listening', r));
  try {
    const b = await e.svc.add({ name: 'live', socket: path });
    assert.equal(e.svc.view(b).listening, true);
  } finally {
    server.close();
  }
});

test('a hand-edited registry: entries that validation would refuse are left out', async () => {
  const e = fresh();
  writeFileSync(e.store.file, JSON.stringify({ backends: [
    { name: 'ok', socket: '/run/ok.sock', createdAt: null },
    { name: 'comma', socket: '/run/a,server=on.sock', createdAt: null },
    { name: 'mine', socket: join(e.dataDir, 'run', 'x', 'vu-d.sock'), createdAt: null },
    { name: 'ok', socket: '/run/twice.sock', createdAt: null },
    'junk',
  ] }));
  assert.deepEqual(e.svc.list().map((b) => [b.name, b.socket]), [['ok', '/run/ok.sock']]);
  writeFileSync(e.store.file, 'not json');
  assert.deepEqual(e.svc.list(), []);
});
