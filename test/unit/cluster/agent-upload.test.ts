/**
 * A controller's uploads to an agent (AgentClient.upload, relay) against a stand-in agent over mutual TLS
 * with a certificate from the cluster CA: the bytes read before (prefix) then the stream, with its length; the
 * answer as it comes; an agent that answers before the body is all sent is sent nothing more once it has; a JSON
 * upload's answer parsed, or the agent's own error.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import { X509Certificate } from 'node:crypto';
import { makeClusterCa, makeKeyAndCsr, makeServerPair, signHostCsr } from '../../../src/cluster/pki.js';
import { AgentClient, readAll } from '../../../src/cluster/agent-client.js';
import type { HostRow } from '../../../src/cluster/cluster-store.js';
import { isCorralError } from '../../../src/core/errors.js';

let server: Server;
let host: HostRow;
let agents: AgentClient;
/** what the stand-in agent does with a request: by test */
let handle: (req: IncomingMessage, res: ServerResponse) => void = () => undefined;

before(async () => {
  const ca = await makeClusterCa();
  const { keyPem, csrPem } = await makeKeyAndCsr('a1');
  const cert = await signHostCsr(ca, csrPem, { host: 'a1', uuid: '0f8fad5b-d9cb-469f-a165-70867728950e', ips: ['127.0.0.1'], role: 'agent' });
  const ctl = await makeServerPair(ca, 'controller1', ['127.0.0.1']);
  server = createServer({ cert: cert.certPem, key: keyPem, ca: ca.certPem, requestCert: true, rejectUnauthorized: true }, (req, res) => handle(req, res));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  host = {
    name: 'a1', address: `https://127.0.0.1:${(server.address() as AddressInfo).port}`,
    certFingerprint: new X509Certificate(cert.certPem).fingerprint256.replace(/:/g, '').toLowerCase(),
  } as HostRow;
  agents = new AgentClient({ caPem: ca.certPem, certPem: ctl.certPem, keyPem: ctl.keyPem });
});

after(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});

test('relay sends the prefix then the stream, with its length, and gives the answer as it comes', async () => {
  const prefix = Buffer.from('HEAD:');
  const rest = Buffer.alloc(3 * 1024 * 1024, 7);
  let got: { type?: string; length?: string; body: Buffer } = { body: Buffer.alloc(0) };
  handle = (req, res) => {
    void readAll(req).then((body) => {
      got = { type: req.headers['content-type'], length: req.headers['content-length'], body };
      res.writeHead(200, { 'content-type': 'application/x-ndjson' });
      res.write('{"type":"progress"}\n');
      res.end('{"type":"result"}\n');
    });
  };
  const res = await agents.relay(host, 'POST', '/v1/instances/import?name=x', Readable.from([rest.subarray(0, 1000), rest.subarray(1000)]), {
    contentType: 'application/x-tar', length: prefix.length + rest.length, prefix,
  });
  assert.equal(res.statusCode, 200);
  assert.equal((await readAll(res)).toString(), '{"type":"progress"}\n{"type":"result"}\n');
  assert.equal(got.type, 'application/x-tar');
  assert.equal(got.length, String(prefix.length + rest.length));
  assert.ok(got.body.equals(Buffer.concat([prefix, rest])), 'every byte, in order');
});

test('an agent that refuses before reading is sent nothing more once it has answered; a body left to its owner is no longer read', async () => {
  handle = (_req, res) => {
    res.writeHead(409, { 'content-type': 'application/json' });
    res.end('{"error":{"code":"ALREADY_EXISTS","message":"taken"}}');
  };
  let produced = 0;
  const endless = new Readable({
    read() {
      produced += 64 * 1024;
      this.push(Buffer.alloc(64 * 1024));
    },
  });
  const res = await agents.relay(host, 'POST', '/v1/instances/import', endless, { contentType: 'application/x-tar', length: null, rest: 'leave' });
  assert.equal(res.statusCode, 409);
  assert.match((await readAll(res)).toString(), /ALREADY_EXISTS/);
  const at = produced;
  await new Promise((r) => setTimeout(r, 200));
  assert.ok(produced - at <= 2 * 64 * 1024, `the body is no longer read (${produced - at} bytes more)`);
  endless.destroy();
});

test('upload: the JSON answer parsed, or the agent\'s own error naming the host', async () => {
  handle = (req, res) => {
    void readAll(req).then((body) => {
      if (body.length === 0) {
        res.writeHead(400, { 'content-type': 'application/json' });
        return res.end('{"error":{"code":"INVALID_SPEC","message":"empty"}}');
      }
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ bytes: body.length }));
    });
  };
  assert.deepEqual(await agents.upload(host, 'PUT', '/x', Readable.from([Buffer.alloc(10)]), 10), { bytes: 10 });
  await assert.rejects(agents.upload(host, 'PUT', '/x', Readable.from([]), 0), (e: unknown) => isCorralError(e) && e.code === 'INVALID_SPEC' && e.details.host === 'a1');
});
