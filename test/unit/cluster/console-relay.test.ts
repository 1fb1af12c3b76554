/**
 * The controller's console relay (controller-console.ts) against a stand-in agent: a websocket server with an
 * agent's certificate from the cluster CA that asks for the controller's client certificate. Bytes go both ways;
 * the agent's refusal is the client's HTTP error with the agent's code; an agent showing another certificate than
 * the host joined with is never talked to; a client that does not read stops the relay reading from the agent
 * (the agent's socket fills up, the controller's memory does not) and is cut with CONSOLE_TOO_SLOW.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import websocket from '@fastify/websocket';
import type { FastifyInstance } from 'fastify';
import { WebSocket, WebSocketServer } from 'ws';
import { X509Certificate } from 'node:crypto';
import { installErrorReplies, newApp } from '../../../src/api/app.js';
import { makeClusterCa, makeKeyAndCsr, makeServerPair, signHostCsr, type ClusterCa } from '../../../src/cluster/pki.js';
import { controllerConsoleRoutes } from '../../../src/cluster/controller-console.js';
import { CorralError } from '../../../src/core/errors.js';
import type { HostRow } from '../../../src/cluster/cluster-store.js';

const UUID = '0f8fad5b-d9cb-469f-a165-70867728950e';
let ca: ClusterCa;
let agentServer: Server;
let agentWss: WebSocketServer;
let controller: FastifyInstance;
let host: HostRow;
/** what the stand-in agent does with a console connection: by test */
let onAgentConsole: (ws: WebSocket, path: string) => void = () => undefined;
let agentRefuses: { status: number; code: string } | null = null;

const LIMIT = 64 * 1024;

before(async () => {
  ca = await makeClusterCa();
  const { keyPem, csrPem } = await makeKeyAndCsr('a1');
  const agentCert = await signHostCsr(ca, csrPem, { host: 'a1', uuid: UUID, ips: ['127.0.0.1'], role: 'agent' });
  const ctl = await makeServerPair(ca, 'controller1', ['127.0.0.1']);
  agentServer = createServer({ cert: agentCert.certPem, key: keyPem, ca: ca.certPem, requestCert: true, rejectUnauthorized: true });
  agentWss = new WebSocketServer({ noServer: true });
  agentServer.on('upgrade', (req, socket, head) => {
    if (agentRefuses) {
      const body = JSON.stringify({ error: { code: agentRefuses.code, message: `refused by the agent: ${agentRefuses.code}` } });
      socket.end(`HTTP/1.1 ${agentRefuses.status} No\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\nconnection: close\r\n\r\n${body}`);
      return;
    }
    agentWss.handleUpgrade(req, socket, head, (ws) => onAgentConsole(ws, req.url ?? ''));
  });
  await new Promise<void>((resolve) => agentServer.listen(0, '127.0.0.1', resolve));
  host = {
    name: 'a1', address: `https://127.0.0.1:${(agentServer.address() as AddressInfo).port}`,
    certFingerprint: new X509Certificate(agentCert.certPem).fingerprint256.replace(/:/g, '').toLowerCase(),
  } as HostRow;

  controller = newApp({ https: { cert: ctl.certPem, key: ctl.keyPem } });
  installErrorReplies(controller);
  await controller.register(websocket);
  await controller.register(controllerConsoleRoutes({
    tls: { caPem: ca.certPem, certPem: ctl.certPem, keyPem: ctl.keyPem },
    hostOf: async (name) => {
      if (name !== 'g1') throw new CorralError('INSTANCE_NOT_FOUND', `instance "${name}" does not exist in the cluster`);
      return host;
    },
    maxBufferedBytes: LIMIT, stallMs: 1500, cutGraceMs: 500,
  }));
  await controller.listen({ host: '127.0.0.1', port: 0 });
});

after(async () => {
  await controller.close();
  agentWss.close();
  await new Promise<void>((resolve) => agentServer.close(() => resolve()));
});

function client(name: string): WebSocket {
  return new WebSocket(`wss://127.0.0.1:${(controller.server.address() as AddressInfo).port}/v1/instances/${name}/console`, { ca: ca.certPem });
}

/** How an attach ends before it opens: the HTTP status and the error code of the body. */
function refusal(ws: WebSocket): Promise<{ status: number; code: string }> {
  return new Promise((resolve, reject) => {
    ws.once('open', () => reject(new Error('the console opened')));
    ws.once('unexpected-response', (req, res) => {
      let body = '';
      res.on('data', (c: Buffer) => { body += c.toString(); });
      res.on('end', () => { req.destroy(); resolve({ status: res.statusCode ?? 0, code: JSON.parse(body).error.code }); });
    });
  });
}

test('bytes go both ways, the path is the agent\'s own, and the agent\'s close reaches the client with its code', async () => {
  let agentPath = '';
  onAgentConsole = (ws, path) => {
    agentPath = path;
    ws.send(Buffer.from('login: '));
    ws.on('message', (d: Buffer) => {
      if (d.toString() === 'bye\n') ws.close(4000, 'guest powered off');
      else ws.send(Buffer.concat([Buffer.from('echo:'), d]));
    });
  };
  const ws = client('g1');
  const got: string[] = [];
  const closed = new Promise<[number, string]>((resolve) => ws.on('close', (code, reason) => resolve([code, reason.toString()])));
  ws.on('message', (d: Buffer) => {
    got.push(d.toString());
    if (got.length === 1) ws.send(Buffer.from('root\n'));
    if (got.length === 2) ws.send(Buffer.from('bye\n'));
  });
  assert.deepEqual(await closed, [4000, 'guest powered off']);
  assert.deepEqual(got, ['login: ', 'echo:root\n']);
  assert.equal(agentPath, '/v1/instances/g1/console');
});

test('the agent\'s refusal is the client\'s HTTP error with its code; an unknown instance is refused before any dial', async () => {
  agentRefuses = { status: 409, code: 'CONSOLE_BUSY' };
  try {
    assert.deepEqual(await refusal(client('g1')), { status: 409, code: 'CONSOLE_BUSY' });
  } finally {
    agentRefuses = null;
  }
  assert.deepEqual(await refusal(client('nosuch')), { status: 404, code: 'INSTANCE_NOT_FOUND' });
});

test('an agent showing another certificate than the host joined with is not talked to', async () => {
  const pinned = host.certFingerprint;
  host.certFingerprint = '00'.repeat(32);
  let dialled = false;
  onAgentConsole = () => { dialled = true; };
  try {
    const r = await refusal(client('g1'));
    assert.equal(r.code, 'HOST_UNAVAILABLE');
    assert.equal(dialled, false);
  } finally {
    host.certFingerprint = pinned;
  }
});

test('a client that does not read: the relay stops reading from the agent, then cuts the client with CONSOLE_TOO_SLOW', async () => {
  let agentSide: WebSocket | undefined;
  let sent = 0;
  let flooding = true;
  const agentOpen = new Promise<void>((resolve) => {
    onAgentConsole = (ws) => {
      agentSide = ws;
      resolve();
      const chunk = Buffer.alloc(16 * 1024, 0x41);
      // a chunk per turn of the event loop: while the relay reads, the agent's socket drains as fast as it is
      // written; once the relay stops reading, what the agent writes piles up in its own send buffer
      const flood = (): void => {
        if (!flooding || ws.readyState !== ws.OPEN) return;
        if (ws.bufferedAmount < 2 * 1024 * 1024) {
          ws.send(chunk);
          sent += chunk.length;
          setImmediate(flood);
        } else setTimeout(flood, 20);
      };
      flood();
    };
  });
  const ws = client('g1');
  // the client never reads: its socket is paused once the console opens
  ws.once('open', () => ws.pause());
  const closed = new Promise<number>((resolve) => ws.on('close', (code) => resolve(code)));
  await agentOpen;
  const agentClosed = new Promise<void>((resolve) => agentSide!.once('close', () => resolve()));
  // the agent's socket fills up behind the paused relay: what the agent writes piles up on its side
  const deadline = Date.now() + 10_000;
  while (agentSide!.bufferedAmount < 1024 * 1024 && Date.now() < deadline && agentSide!.readyState === agentSide!.OPEN) await new Promise((r) => setTimeout(r, 50));
  const piledAtAgent = agentSide!.bufferedAmount;
  assert.ok(piledAtAgent >= 1024 * 1024, `the agent's send buffer: ${piledAtAgent} of ${sent} bytes sent`);
  // the relay gives up on the client that stays stalled (stallMs), and lets the agent's console go
  await agentClosed;
  flooding = false;
  ws.resume();
  // the close frame comes after what was waiting; when the grace ran out before it was written, the connection just ends
  assert.ok([4008, 1006].includes(await closed));
});
