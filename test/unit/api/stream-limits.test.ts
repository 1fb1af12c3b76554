/**
 * Event streams and console websockets cannot grow the daemon's memory: a client that never reads is cut once
 * the bytes waiting for it pass the bound, and a cap on concurrent event streams refuses one more (429).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import WebSocket from 'ws';
import { buildApi, closeApi } from '../../../src/api/server.js';
import type { Services } from '../../../src/api/services.js';
import { EVENT_WRITE_WINDOW, TOO_SLOW_EVENT, type StreamLimits } from '../../../src/api/stream-limits.js';
import { EventBus } from '../../../src/services/events.js';
import { memoryStore } from './memory-store.js';

interface Setup { dir: string; socket: string; events: EventBus; guest: Server; guestConns: Socket[]; serverSockets: Socket[]; app: Awaited<ReturnType<typeof buildApi>> }

async function setup(streams: Partial<StreamLimits>): Promise<Setup> {
  const dir = mkdtempSync(join(tmpdir(), 'corral-streams-'));
  const guestConns: Socket[] = [];
  const guest = createServer((c) => { guestConns.push(c); c.on('error', () => undefined); });
  await new Promise<void>((r) => guest.listen(join(dir, 'console.sock'), r));
  const events = new EventBus(memoryStore());
  const instances = { consoleSocket: () => join(dir, 'console.sock') };
  const app = await buildApi({ events, instances } as unknown as Services, { streams });
  const serverSockets: Socket[] = [];
  app.server.on('connection', (s: Socket) => serverSockets.push(s));
  const socket = join(dir, 'api.sock');
  await app.listen({ path: socket });
  return { dir, socket, events, guest, guestConns, serverSockets, app };
}

async function teardown(s: Setup): Promise<void> {
  await closeApi(s.app, 500);
  s.guest.close();
  rmSync(s.dir, { recursive: true, force: true });
}

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

/** A raw client of /v1/events that sends its request and then never reads. */
function stalledEventsClient(socket: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const c = connect(socket, () => {
      c.write('GET /v1/events HTTP/1.1\r\nHost: corral\r\n\r\n');
      c.pause();
      resolve(c);
    });
    c.on('error', reject);
  });
}

function readToEnd(c: Socket): Promise<string> {
  return new Promise((resolve) => {
    let text = '';
    c.on('data', (d: Buffer) => { text += d.toString(); });
    c.on('close', () => resolve(text));
    c.resume();
  });
}

test('an event stream whose client never reads is ended with events.too-slow; the bytes the daemon holds for it stay bounded', { timeout: 60_000 }, async () => {
  const limit = 256 * 1024;
  const s = await setup({ maxBufferedBytes: limit, cutGraceMs: 30_000 });
  try {
    const client = await stalledEventsClient(s.socket);
    while (s.serverSockets.length === 0) await tick();
    const server = s.serverSockets[0]!;
    const blob = 'x'.repeat(16 * 1024);
    let most = 0;
    let published = 0;
    // Far more than the kernel's socket buffers and the bound together: the stream must end before this runs out.
    for (; published < 4000 && !server.writableEnded; published++) {
      s.events.publish('instance.noise', 'web1', { blob });
      most = Math.max(most, server.writableLength);
      await tick();
    }
    assert.equal(server.writableEnded, true, `the stream was not ended after ${published} events of 16 KiB`);
    // written ahead at most the window and one event; what waits beyond that is queued and counted against the bound
    assert.ok(most <= EVENT_WRITE_WINDOW + 2 * (blob.length + 200), `the daemon buffered ${most} bytes in the socket`);
    const text = await readToEnd(client);
    const at = text.lastIndexOf('event: '); // each event is one chunk of the chunked body
    const last = text.slice(at, text.indexOf('\n\n', at));
    assert.match(last, new RegExp(`^event: ${TOO_SLOW_EVENT.replace('.', '\\.')}\ndata: `));
    const ev = JSON.parse(last.split('\ndata: ')[1]!) as { data: { reason: string; resumeFrom: number } };
    assert.match(ev.data.reason, /did not read its events: \d+ bytes were waiting/);
    // resumeFrom is the last event the client was sent: ?since=resumeFrom loses nothing
    const ids = [...text.matchAll(/^id: (\d+)$/gm)].map((m) => Number(m[1]));
    assert.equal(ev.data.resumeFrom, ids.at(-1));
    assert.ok(ids.length < published, 'events published after the cut are not sent');
  } finally {
    await teardown(s);
  }
});

test('a client that reads gets every event, even a burst larger than what is written ahead', { timeout: 60_000 }, async () => {
  const s = await setup({ maxBufferedBytes: 512 * 1024 }); // the burst below (about 240 KiB) is under the bound
  try {
    const got = new Promise<string>((resolve, reject) => {
      const req = request({ socketPath: s.socket, path: '/v1/events' }, (res) => {
        let text = '';
        res.on('data', (c: Buffer) => {
          text += c.toString();
          if (text.includes('event: last\n') || text.includes(TOO_SLOW_EVENT)) { req.destroy(); resolve(text); }
        });
        res.on('end', () => resolve(text));
      });
      req.on('error', reject);
      req.end();
    });
    while (s.serverSockets.length === 0) await tick();
    await new Promise((r) => setTimeout(r, 50)); // the stream is subscribed once its headers are out
    for (let i = 0; i < 200; i++) s.events.publish('instance.noise', 'web1', { blob: 'y'.repeat(1024) });
    s.events.publish('last', null, {});
    const text = await got;
    assert.equal(text.match(/event: instance\.noise\n/g)?.length, 200);
    assert.doesNotMatch(text, /too-slow/);
  } finally {
    await teardown(s);
  }
});

test('a replay larger than what is written ahead is all sent before the stream says it is connected', { timeout: 30_000 }, async () => {
  const s = await setup({});
  try {
    const n = Math.ceil((2 * EVENT_WRITE_WINDOW) / 1024);
    for (let i = 0; i < n; i++) s.events.publish('instance.noise', 'web1', { blob: 'z'.repeat(1024) });
    const text = await new Promise<string>((resolve, reject) => {
      const req = request({ socketPath: s.socket, path: '/v1/events?since=0' }, (res) => {
        let body = '';
        res.on('data', (c: Buffer) => {
          body += c.toString();
          if (body.includes(': connected\n\n')) { req.destroy(); resolve(body); }
        });
      });
      req.on('error', reject);
      req.end();
    });
    const before = text.slice(0, text.indexOf(': connected\n\n'));
    assert.equal(before.match(/event: instance\.noise\n/g)?.length, n, 'every stored event comes before ": connected"');
  } finally {
    await teardown(s);
  }
});

function getEvents(socket: string): Promise<{ status: number; body: string; close: () => void }> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath: socket, path: '/v1/events' }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => {
        body += c.toString();
        if (res.statusCode === 200) resolve({ status: 200, body, close: () => req.destroy() });
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, close: () => req.destroy() }));
    });
    req.on('error', reject);
    req.end();
  });
}

test('one event stream more than the cap is refused with TOO_MANY_CLIENTS (429); a closed one frees its place', { timeout: 30_000 }, async () => {
  const s = await setup({ maxEventStreams: 2 });
  try {
    const a = await getEvents(s.socket);
    const b = await getEvents(s.socket);
    assert.deepEqual([a.status, b.status], [200, 200]);
    const c = await getEvents(s.socket);
    assert.equal(c.status, 429);
    assert.equal(JSON.parse(c.body).error.code, 'TOO_MANY_CLIENTS');
    assert.equal(JSON.parse(c.body).error.limit, 2);
    a.close();
    let d = await getEvents(s.socket);
    while (d.status === 429) d = await getEvents(s.socket); // until the daemon has seen the close
    assert.equal(d.status, 200);
    b.close();
    d.close();
  } finally {
    await teardown(s);
  }
});

test('a console viewer that never reads is cut once the bytes waiting for it pass the bound', { timeout: 60_000 }, async () => {
  const limit = 256 * 1024;
  const s = await setup({ maxBufferedBytes: limit, cutGraceMs: 30_000 });
  try {
    const ws = new WebSocket(`ws+unix://${s.socket}:/v1/instances/web1/console`);
    await new Promise<void>((resolve, reject) => { ws.once('open', () => resolve()); ws.once('error', reject); });
    (ws as unknown as { _socket: Socket })._socket.pause(); // never reads
    while (s.guestConns.length === 0) await tick();
    const guest = s.guestConns[0]!;
    let guestCut = false;
    guest.on('end', () => { guestCut = true; });
    guest.on('close', () => { guestCut = true; });
    const [serverWs] = [...s.app.websocketServer.clients];
    assert.ok(serverWs);
    const chunk = Buffer.alloc(16 * 1024, 0x41);
    let most = 0;
    for (let i = 0; i < 4000 && !guestCut; i++) {
      if (!guest.destroyed) guest.write(chunk);
      most = Math.max(most, serverWs.bufferedAmount);
      await tick();
    }
    assert.equal(guestCut, true, 'the console connection was not let go');
    assert.ok(most <= limit + 2 * chunk.length + 64 * 1024, `the daemon buffered ${most} bytes for the viewer`);
    assert.notEqual(serverWs.readyState, WebSocket.OPEN);
  } finally {
    await teardown(s);
  }
});
