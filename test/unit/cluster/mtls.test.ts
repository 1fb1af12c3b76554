/**
 * The cluster's certificates work for mutual TLS in Node: a server with the controller's pair that asks for and
 * checks client certificates against the cluster CA takes an agent's certificate, and refuses at the TLS layer a
 * client with a certificate from another CA or with none; an agent that pins the cluster CA refuses a controller
 * whose certificate is from another CA.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { connect, createServer, type ConnectionOptions, type Server, type TLSSocket } from 'node:tls';
import { makeClusterCa, makeKeyAndCsr, makeServerPair, signHostCsr, verifyPeerCert, type ClusterCa } from '../../../src/cluster/pki.js';

const UUID = '0f8fad5b-d9cb-469f-a165-70867728950e';

interface Pair { certPem: string; keyPem: string }

async function agentPair(ca: ClusterCa, host: string): Promise<Pair> {
  const { keyPem, csrPem } = await makeKeyAndCsr(host);
  const { certPem } = await signHostCsr(ca, csrPem, { host, uuid: UUID, ips: ['127.0.0.1'], role: 'agent' });
  return { certPem, keyPem };
}

let ca: ClusterCa;
let otherCa: ClusterCa;
let agent: Pair;
let stranger: Pair;
let server: Server;
let port: number;
/** What the server saw: the agents it let in (as verifyPeerCert names them) and the handshakes it refused. */
const seen = { hosts: [] as string[], refused: [] as string[] };

before(async () => {
  [ca, otherCa] = await Promise.all([makeClusterCa(), makeClusterCa()]);
  [agent, stranger] = await Promise.all([agentPair(ca, 'agent1'), agentPair(otherCa, 'agent1')]);
  const controller = await makeServerPair(ca, 'controller1', ['127.0.0.1']);
  server = createServer({ key: controller.keyPem, cert: controller.certPem, ca: ca.certPem, requestCert: true, rejectUnauthorized: true }, (socket: TLSSocket) => {
    const raw = socket.getPeerCertificate().raw;
    const peer = verifyPeerCert(ca, new X509Certificate(raw).toString(), { role: 'agent' });
    seen.hosts.push(peer.host);
    socket.end(`hello ${peer.host}`);
  });
  // why Node's TLS layer dropped a client before the connection handler: the certificate check's code, or the handshake's error
  server.on('tlsClientError', (e: Error & { code?: string }, s: TLSSocket) => seen.refused.push(String(s.authorizationError ?? e.code ?? e.message)));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  port = (server.address() as AddressInfo).port;
});

after(() => new Promise<void>((resolve) => server.close(() => resolve())));

/** One connection: what the client read and the error it got, if any, once the socket closed. */
function attempt(opts: ConnectionOptions): Promise<{ data: string; error: string | null }> {
  return new Promise((resolve) => {
    let data = '';
    let error: string | null = null;
    const s = connect({ host: '127.0.0.1', port, ...opts });
    s.setEncoding('utf8');
    s.on('data', (d: string) => { data += d; });
    s.on('error', (e: Error & { code?: string }) => { error = e.code ?? e.message; });
    s.on('close', () => resolve({ data, error }));
  });
}

test('an agent with a certificate from the cluster CA and pinning that CA gets through, and the controller knows its name', async () => {
  const r = await attempt({ ca: ca.certPem, cert: agent.certPem, key: agent.keyPem });
  assert.deepEqual(r, { data: 'hello agent1', error: null });
  assert.deepEqual(seen.hosts, ['agent1']);
});

test('a client with a certificate from another CA is refused by the TLS layer', async () => {
  const before = { hosts: seen.hosts.length, refused: seen.refused.length };
  const r = await attempt({ ca: ca.certPem, cert: stranger.certPem, key: stranger.keyPem });
  assert.equal(r.data, '');
  assert.equal(seen.hosts.length, before.hosts);
  assert.deepEqual(seen.refused.slice(before.refused), ['UNABLE_TO_VERIFY_LEAF_SIGNATURE']);
});

test('a client without a certificate is refused by the TLS layer', async () => {
  const before = { hosts: seen.hosts.length, refused: seen.refused.length };
  const r = await attempt({ ca: ca.certPem });
  assert.equal(r.data, '');
  // the server's alert, or a reset when the socket closes before the client reads it
  assert.match(String(r.error), /^(ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED|ECONNRESET)$/);
  assert.equal(seen.hosts.length, before.hosts);
  assert.deepEqual(seen.refused.slice(before.refused), ['ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE']);
});

test('an agent pinning another cluster\'s CA refuses this controller', async () => {
  const before = seen.hosts.length;
  const r = await attempt({ ca: otherCa.certPem, cert: stranger.certPem, key: stranger.keyPem });
  assert.equal(r.data, '');
  // the controller sends its certificate with the CA's: a CA the agent does not pin
  assert.equal(r.error, 'SELF_SIGNED_CERT_IN_CHAIN');
  assert.equal(seen.hosts.length, before);
});
