/**
 * A controller's relay of an upload to the target host (controller-per-host.ts, upload-relay.ts), between a real
 * client and a fake agent over HTTP: the body goes on as it comes with its length, held back while the agent does
 * not read (never buffered whole), and the agent's lines come back as they come; the agent's refusal comes back as
 * it is while the client is still sending; a client that goes away mid-way cuts the agent's request.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { createServer, request, type IncomingMessage, type Server, type ServerResponse, type ClientRequest } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { FastifyInstance } from 'fastify';
import { installErrorReplies, newApp } from '../../../src/api/app.js';
import { controllerPerHostRoutes } from '../../../src/cluster/controller-per-host.js';
import { relayBody, relayHeaders } from '../../../src/cluster/upload-relay.js';
import type { HostRow } from '../../../src/cluster/cluster-store.js';

const MiB = 1024 * 1024;
let agent: Server;
let agentUrl: string;
let handler: (req: IncomingMessage, res: ServerResponse) => void = (_q, s) => s.end();
let app: FastifyInstance;
let ctlPort: number;

const a1 = { name: 'a1', state: 'up' } as HostRow;

before(async () => {
  agent = createServer((req, res) => handler(req, res));
  agent.listen(0, '127.0.0.1');
  await once(agent, 'listening');
  agentUrl = `http://127.0.0.1:${(agent.address() as AddressInfo).port}`;
  app = newApp({});
  installErrorReplies(app);
  await app.register(controllerPerHostRoutes({
    store: { getHost: async (n) => (n === 'a1' ? a1 : null), listHosts: async () => [a1] },
    agents: {
      call: async () => { throw new Error('not called here'); },
      stream: async () => { throw new Error('not streamed here'); },
      // AgentClient.relay over plain HTTP: the same relay, without the cluster's TLS
      relay: (_h, method, path, body, head) => relayBody(request(`${agentUrl}${path}`, { method, headers: relayHeaders(head.contentType, head.length) }), body, (e) => e),
    },
  }));
  await app.listen({ port: 0, host: '127.0.0.1' });
  ctlPort = (app.server.address() as AddressInfo).port;
});

after(async () => {
  await app.close();
  agent.closeAllConnections();
  agent.close();
});

/** A client's upload to the controller: the request (not yet written to) and its response once its head came. */
function upload(length: number, target: string | null = 'a1'): { req: ClientRequest; res: Promise<IncomingMessage> } {
  const req = request({
    host: '127.0.0.1', port: ctlPort, method: 'POST', path: '/v1/images/img1/upload?format=qcow2',
    headers: { 'content-type': 'application/octet-stream', 'content-length': String(length), ...(target ? { 'x-corral-target': target } : {}) },
  });
  const res = new Promise<IncomingMessage>((resolve, reject) => { req.on('response', resolve); req.on('error', reject); });
  return { req, res };
}

const chunk = (i: number): Buffer => Buffer.alloc(MiB, i % 251);

/** Lines of a response as they come, and a promise of all of them. */
function lines(res: IncomingMessage): { seen: string[]; all: Promise<string[]> } {
  const seen: string[] = [];
  let buf = '';
  res.setEncoding('utf8');
  res.on('data', (c: string) => {
    buf += c;
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) { seen.push(buf.slice(0, nl)); buf = buf.slice(nl + 1); }
  });
  return { seen, all: once(res, 'end').then(() => (buf === '' ? seen : [...seen, buf])) };
}

const until = async (ok: () => boolean, ms: number, what: string): Promise<void> => {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
};

test('an upload goes on as it comes, with its length, held back while the host does not read; the host\'s lines come back as they come', async () => {
  const total = 48;
  let reading = false;
  let got: { length: string | undefined; target: string | undefined; bytes: number; sha: string } | null = null;
  let agentReq: IncomingMessage | null = null;
  handler = (req, res) => {
    agentReq = req;
    req.pause();
    res.writeHead(200, { 'content-type': 'application/x-ndjson' });
    res.write(`${JSON.stringify({ type: 'progress', step: 'receive', percent: 0 })}\n`);
    const h = createHash('sha256');
    let bytes = 0;
    req.on('data', (c: Buffer) => { h.update(c); bytes += c.length; });
    req.on('end', () => {
      got = { length: req.headers['content-length'], target: req.headers['x-corral-target'] as string | undefined, bytes, sha: h.digest('hex') };
      res.end(`${JSON.stringify({ type: 'result', image: { name: 'img1' } })}\n`);
    });
  };
  const { req, res } = upload(total * MiB);
  const sent = createHash('sha256');
  let accepted = 0;
  const writer = (async () => {
    for (let i = 0; i < total; i++) {
      const c = chunk(i);
      sent.update(c);
      if (!req.write(c)) await once(req, 'drain');
      accepted += c.length;
    }
    req.end();
  })();
  const r = await res;
  assert.equal(r.statusCode, 200);
  assert.equal(r.headers['content-type'], 'application/x-ndjson');
  const out = lines(r);
  // the host's first line is here before the body has gone: the answer is relayed as it comes
  await until(() => out.seen.length === 1, 5000, 'the first progress line');
  // the host reads nothing: the client is held back, well short of the whole file (pipes and socket buffers only)
  await new Promise((x) => setTimeout(x, 800));
  assert.ok(agentReq !== null && accepted < 32 * MiB, `the client could send ${accepted / MiB} MiB while the host read nothing`);
  reading = true;
  (agentReq as IncomingMessage).resume();
  await writer;
  const all = await out.all;
  assert.ok(reading);
  assert.deepEqual(got, { length: String(total * MiB), target: undefined, bytes: total * MiB, sha: sent.digest('hex') });
  assert.deepEqual(all.map((l) => JSON.parse(l).type), ['progress', 'result']);
});

test('the host\'s refusal comes back as it is while the client is still sending', async () => {
  let read = 0;
  const refusal = { error: { code: 'TOO_LARGE', message: 'the upload of image "img1" takes 10 MiB, more than this daemon takes in one upload (1 MiB, CORRAL_UPLOAD_MAX)', field: 'file', size: 10 * MiB, max: MiB } };
  handler = (req, res) => {
    req.on('data', (c: Buffer) => { read += c.length; });
    res.writeHead(413, { 'content-type': 'application/json; charset=utf-8' });
    res.end(JSON.stringify(refusal));
  };
  const { req, res } = upload(10 * MiB);
  req.write(chunk(0));
  const r = await res;
  assert.equal(r.statusCode, 413);
  assert.deepEqual(JSON.parse((await lines(r).all).join('')), refusal);
  // the client stops sending once it has the answer (as the CLI does)
  req.destroy();
  assert.ok(read <= MiB);
});

test('a client that goes away mid-way cuts the host\'s request short', async () => {
  let ended: { bytes: number; complete: boolean } | null = null;
  let bytes = 0;
  handler = (req) => {
    req.on('data', (c: Buffer) => { bytes += c.length; });
    req.on('error', () => undefined);
    req.on('close', () => { ended = { bytes, complete: req.complete }; });
  };
  const { req, res } = upload(16 * MiB);
  res.catch(() => undefined);
  req.on('error', () => undefined);
  for (let i = 0; i < 3; i++) if (!req.write(chunk(i))) await once(req, 'drain');
  // the host has some of it before the client goes away
  await until(() => bytes > 0, 5000, 'the first bytes on the host');
  req.destroy();
  await until(() => ended !== null, 5000, 'the host\'s request to end');
  const e = ended as unknown as { bytes: number; complete: boolean };
  assert.equal(e.complete, false);
  assert.ok(e.bytes < 16 * MiB, `${e.bytes}`);
});

test('an upload without a target is TARGET_REQUIRED, one to an unknown host HOST_NOT_FOUND: nothing is sent on', async () => {
  let asked = 0;
  handler = (_q, s) => { asked++; s.end(); };
  for (const [target, status, code] of [[null, 400, 'TARGET_REQUIRED'], ['zz', 404, 'HOST_NOT_FOUND']] as const) {
    const { req, res } = upload(MiB, target);
    req.end(chunk(0));
    const r = await res;
    assert.equal(r.statusCode, status);
    assert.equal(JSON.parse((await lines(r).all).join('')).error.code, code);
  }
  assert.equal(asked, 0);
});
