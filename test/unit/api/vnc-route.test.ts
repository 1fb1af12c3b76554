/**
 * The graphical console's websocket (/v1/instances/NAME/vnc) against a stand-in for QEMU's VNC socket: RFB bytes go
 * both ways as they are; an instance without a display is NO_DISPLAY (409) before any upgrade; viewers past the cap
 * are TOO_MANY_CLIENTS (429); a viewer that never reads makes the daemon stop reading from QEMU (so what it holds
 * stays bounded) and is cut after the stall time.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import WebSocket from 'ws';
import { buildApi, closeApi } from '../../../src/api/server.js';
import type { Services } from '../../../src/api/services.js';
import { CorralError } from '../../../src/core/errors.js';
import type { StreamLimits } from '../../../src/api/stream-limits.js';

interface Setup { dir: string; api: string; qemu: Server; conns: Socket[]; app: Awaited<ReturnType<typeof buildApi>> }

const GREETING = 'RFB 003.008\n';

async function setup(streams: Partial<StreamLimits> = {}): Promise<Setup> {
  const dir = mkdtempSync(join(tmpdir(), 'corral-vnc-'));
  const conns: Socket[] = [];
  // QEMU's VNC server as far as the bridge can tell: it greets, then echoes what it is sent
  const qemu = createServer((c) => {
    conns.push(c);
    c.on('error', () => undefined);
    c.write(GREETING);
    c.on('data', (d) => c.write(d));
  });
  await new Promise<void>((r) => qemu.listen(join(dir, 'vnc.sock'), r));
  const instances = {
    vncSocket: (name: string) => {
      if (name === 'plain') throw new CorralError('NO_DISPLAY', `instance "${name}" has no display`, { instance: name });
      if (name === 'nosuch') throw new CorralError('INSTANCE_NOT_FOUND', `no instance "${name}"`);
      return join(dir, 'vnc.sock');
    },
  };
  const app = await buildApi({ instances } as unknown as Services, { streams });
  const api = join(dir, 'api.sock');
  await app.listen({ path: api });
  return { dir, api, qemu, conns, app };
}

async function teardown(s: Setup): Promise<void> {
  await closeApi(s.app, 500);
  s.qemu.close();
  rmSync(s.dir, { recursive: true, force: true });
}

/** Open the websocket: the open socket, or the HTTP status and JSON body of a refused upgrade. */
function attach(s: Setup, name: string): Promise<{ ws: WebSocket } | { status: number; body: { error: { code: string; limit?: number } } }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws+unix://${s.api}:/v1/instances/${name}/vnc`);
    ws.once('open', () => resolve({ ws }));
    ws.once('unexpected-response', (_req, res) => {
      let text = '';
      res.on('data', (c: Buffer) => { text += c.toString(); });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) as { error: { code: string } } }));
    });
    ws.once('error', reject);
  });
}

const opened = (r: Awaited<ReturnType<typeof attach>>): WebSocket => {
  assert.ok('ws' in r, `refused: ${JSON.stringify(r)}`);
  return r.ws;
};

function nextMessage(ws: WebSocket): Promise<Buffer> {
  return new Promise((resolve) => ws.once('message', (d: Buffer, binary: boolean) => { assert.equal(binary, true); resolve(d); }));
}

test('RFB bytes go both ways unchanged, in binary frames', { timeout: 30_000 }, async () => {
  const s = await setup();
  try {
    const ws = opened(await attach(s, 'web1'));
    const greeting = await nextMessage(ws);
    assert.equal(greeting.toString(), GREETING);
    const bytes = Buffer.from([0x52, 0x46, 0x42, 0x00, 0xff, 0x0a]);
    const echo = nextMessage(ws);
    ws.send(bytes);
    assert.deepEqual(await echo, bytes);
    const gone = new Promise((r) => s.conns[0]!.once('close', r));
    ws.close();
    await gone; // the viewer's close lets go of QEMU's socket
  } finally {
    await teardown(s);
  }
});

test('an instance without a display is NO_DISPLAY (409) and an unknown one INSTANCE_NOT_FOUND, before any upgrade', { timeout: 30_000 }, async () => {
  const s = await setup();
  try {
    const plain = await attach(s, 'plain');
    assert.ok('status' in plain);
    assert.equal(plain.status, 409);
    assert.equal(plain.body.error.code, 'NO_DISPLAY');
    const missing = await attach(s, 'nosuch');
    assert.ok('status' in missing);
    assert.equal(missing.body.error.code, 'INSTANCE_NOT_FOUND');
    assert.equal(s.conns.length, 0, 'QEMU\'s socket was never dialled');
  } finally {
    await teardown(s);
  }
});

test('viewers past the cap are TOO_MANY_CLIENTS (429); one that leaves frees its place', { timeout: 30_000 }, async () => {
  const s = await setup({ maxVncClients: 2 });
  try {
    const a = opened(await attach(s, 'web1'));
    const b = opened(await attach(s, 'web1'));
    const c = await attach(s, 'web1');
    assert.ok('status' in c);
    assert.equal(c.status, 429);
    assert.equal(c.body.error.code, 'TOO_MANY_CLIENTS');
    assert.equal(c.body.error.limit, 2);
    a.close();
    let d = await attach(s, 'web1');
    while ('status' in d) d = await attach(s, 'web1'); // until the daemon has seen the close
    d.ws.close();
    b.close();
  } finally {
    await teardown(s);
  }
});

test('a viewer that never reads: the daemon stops reading QEMU\'s socket (bounded), then cuts the viewer', { timeout: 60_000 }, async () => {
  const limit = 256 * 1024;
  const s = await setup({ maxBufferedBytes: limit, vncStallMs: 1500, cutGraceMs: 500 });
  try {
    const ws = opened(await attach(s, 'web1'));
    (ws as unknown as { _socket: Socket })._socket.pause(); // never reads
    while (s.conns.length === 0) await new Promise((r) => setImmediate(r));
    const qemu = s.conns[0]!;
    let cut = false;
    qemu.on('close', () => { cut = true; });
    // QEMU writes screen updates while its socket takes them: once the daemon stops reading, the socket fills up
    const chunk = Buffer.alloc(64 * 1024, 0x5a);
    let written = 0;
    const t0 = Date.now();
    while (!cut && Date.now() - t0 < 20_000) {
      if (qemu.writableLength < chunk.length) {
        qemu.write(chunk);
        written += chunk.length;
      }
      await new Promise((r) => setTimeout(r, 2));
    }
    assert.ok(cut, 'the stalled viewer was cut (and QEMU\'s socket let go)');
    // far less than 20 s of writing would make: what the daemon took is its bound plus the kernel's socket buffers
    assert.ok(written < 16 * 1024 * 1024, `the daemon read ${written} bytes for a viewer that reads nothing`);
  } finally {
    await teardown(s);
  }
});
