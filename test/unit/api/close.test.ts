/** Closing the API (the daemon stopping) does not wait on its clients: event streams and consoles are told and closed. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import WebSocket from 'ws';
import { buildApi, closeApi } from '../../../src/api/server.js';
import type { Services } from '../../../src/api/services.js';
import { EventBus } from '../../../src/services/events.js';
import { memoryStore } from './memory-store.js';

interface Setup { dir: string; socket: string; events: EventBus; guest: Server; app: Awaited<ReturnType<typeof buildApi>> }

/** The API on a unix socket, with one "running" instance whose console socket is a plain unix server. */
async function setup(): Promise<Setup> {
  const dir = mkdtempSync(join(tmpdir(), 'corral-close-'));
  const guest = createServer((c) => c.on('error', () => undefined));
  await new Promise<void>((r) => guest.listen(join(dir, 'console.sock'), r));
  const events = new EventBus(memoryStore());
  const instances = { consoleSocket: () => join(dir, 'console.sock') };
  const app = await buildApi({ events, instances } as unknown as Services);
  const socket = join(dir, 'api.sock');
  await app.listen({ path: socket });
  return { dir, socket, events, guest, app };
}

function openEvents(socket: string): Promise<{ text: () => string; ended: Promise<void> }> {
  return new Promise((resolve, reject) => {
    let text = '';
    const req = request({ socketPath: socket, path: '/v1/events' }, (res) => {
      const ended = new Promise<void>((r) => {
        res.on('end', r);
        res.on('close', r);
        res.on('error', () => r());
      });
      res.on('data', (c: Buffer) => { text += c.toString(); });
      res.once('data', () => resolve({ text: () => text, ended }));
    });
    req.on('error', reject);
    req.end();
  });
}

function openConsole(socket: string): Promise<{ closed: Promise<{ code: number; reason: string }> }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws+unix://${socket}:/v1/instances/web1/console`);
    const closed = new Promise<{ code: number; reason: string }>((r) => ws.on('close', (code, reason) => r({ code, reason: reason.toString() })));
    ws.once('open', () => resolve({ closed }));
    ws.once('error', reject);
  });
}

test('closing the API ends open event streams with a daemon.stopping event, and closes console websockets with 1001', { timeout: 20_000 }, async () => {
  const s = await setup();
  try {
    const stream = await openEvents(s.socket);
    const consoleWs = await openConsole(s.socket);
    s.events.publish('instance.created', 'web1', {});
    const t0 = Date.now();
    assert.equal(await closeApi(s.app, 2000), true);
    assert.ok(Date.now() - t0 < 1500, `close took ${Date.now() - t0} ms`);
    await stream.ended;
    assert.match(stream.text(), /event: instance\.created\n/);
    assert.match(stream.text(), /event: daemon\.stopping\ndata: \{.*"type":"daemon\.stopping".*\}\n\n$/);
    assert.deepEqual(await consoleWs.closed, { code: 1001, reason: 'the corral daemon is stopping' });
  } finally {
    s.guest.close();
    rmSync(s.dir, { recursive: true, force: true });
  }
});

test('a daemon.stopping event the daemon published is the stream\'s last one, not sent twice', { timeout: 20_000 }, async () => {
  const s = await setup();
  try {
    const stream = await openEvents(s.socket);
    s.events.publish('daemon.stopping', null, { pid: 1, signal: 'SIGTERM' });
    const t0 = Date.now();
    assert.equal(await closeApi(s.app, 2000), true);
    assert.ok(Date.now() - t0 < 1500, `close took ${Date.now() - t0} ms`);
    await stream.ended;
    assert.equal(stream.text().match(/event: daemon\.stopping/g)?.length, 1);
    assert.match(stream.text(), /id: 1\nevent: daemon\.stopping\n.*"signal":"SIGTERM"/);
  } finally {
    s.guest.close();
    rmSync(s.dir, { recursive: true, force: true });
  }
});

test('a connection that never ends (a slow request) is cut after the grace time', { timeout: 20_000 }, async () => {
  const s = await setup();
  try {
    // A request whose body never finishes: Fastify waits for it, closeApi cuts it.
    const req = request({ socketPath: s.socket, method: 'POST', path: '/v1/instances', headers: { 'content-type': 'application/json', 'content-length': '100' } });
    req.on('error', () => undefined);
    req.write('{"name":');
    await new Promise((r) => setTimeout(r, 100));
    const t0 = Date.now();
    assert.equal(await closeApi(s.app, 500), true);
    const took = Date.now() - t0;
    assert.ok(took >= 400 && took < 1500, `close took ${took} ms`);
  } finally {
    s.guest.close();
    rmSync(s.dir, { recursive: true, force: true });
  }
});
