/**
 * The controller's part of a migration's TLS (cluster/migration-transport.ts, pki.ts's makeMigrationPair): with the
 * setting on, each side gets a pair of its own from the cluster CA, for this migration only (a tag of its own), of
 * the right usage, naming its host; neither is accepted as a Corral peer; the destination lets in exactly the
 * source's name and the source checks the destination's. With the setting off, nothing is made.
 */
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createPrivateKey, createPublicKey, X509Certificate } from 'node:crypto';
import { makeClusterCa, makeMigrationPair, verifyPeerCert, type ClusterCa } from '../../../src/cluster/pki.js';
import { MigrationTransport } from '../../../src/cluster/migration-transport.js';
import type { HostRow } from '../../../src/cluster/cluster-store.js';

let ca: ClusterCa;
before(async () => { ca = await makeClusterCa(); });

const a1 = { name: 'a1' } as HostRow;
const a2 = { name: 'a2' } as HostRow;

const samePublicKey = (certPem: string, keyPem: string): boolean =>
  new X509Certificate(certPem).publicKey.export({ format: 'pem', type: 'spki' }) === createPublicKey(createPrivateKey(keyPem)).export({ format: 'pem', type: 'spki' });

test('a migration pair: from the cluster CA, CN/O/OU, SANs, one usage, a day; no Corral role, so no peer takes it', async () => {
  const p = await makeMigrationPair(ca, { host: 'a2', ips: ['10.0.0.12'], tag: '00112233445566aa', usage: 'server' });
  const x = new X509Certificate(p.certPem);
  assert.ok(x.checkIssued(new X509Certificate(ca.certPem)) && x.verify(new X509Certificate(ca.certPem).publicKey));
  assert.equal(x.subject, 'CN=a2\nO=corral-migration\nOU=00112233445566aa');
  assert.equal(x.subjectAltName, 'DNS:a2, IP Address:10.0.0.12');
  assert.ok(x.checkHost('a2') && x.checkIP('10.0.0.12'));
  assert.deepEqual(x.keyUsage, ['1.3.6.1.5.5.7.3.1'], 'serverAuth only');
  assert.ok(Date.parse(x.validTo) - Date.parse(x.validFrom) <= 86_400_000);
  assert.ok(samePublicKey(p.certPem, p.keyPem));
  assert.throws(() => verifyPeerCert(ca, p.certPem), /UNTRUSTED_PEER|carries no Corral role/);
  const c = await makeMigrationPair(ca, { host: 'a1', ips: [], tag: '00112233445566aa', usage: 'client' });
  assert.deepEqual(new X509Certificate(c.certPem).keyUsage, ['1.3.6.1.5.5.7.3.2'], 'clientAuth only');
  await assert.rejects(makeMigrationPair(ca, { host: 'a1', ips: [], tag: 'nope', usage: 'client' }), /tag/);
  await assert.rejects(makeMigrationPair(ca, { host: 'a,1', ips: [], tag: '00112233445566aa', usage: 'client' }), /host name/);
});

test('the plan with migration-tls on: each side its pair, one tag, the destination lets in the source\'s name only', async () => {
  const t = new MigrationTransport({ ca, settings: async () => ({ migrationTls: true }) });
  const p = await t.plan(a1, a2, '10.0.0.12');
  assert.equal(p.tls, true);
  const server = p.incoming.tls!;
  const client = p.start.tls!;
  assert.equal(server.caPem, ca.certPem);
  assert.equal(client.caPem, ca.certPem);
  const sx = new X509Certificate(server.certPem);
  const cx = new X509Certificate(client.certPem);
  assert.ok(sx.checkHost('a2') && sx.checkIP('10.0.0.12'), 'the source\'s tls-hostname (a2) is the destination certificate\'s');
  assert.equal(client.peer, 'a2');
  assert.equal(server.peer, cx.subject.split('\n').join(','), 'the authz identity is the client certificate\'s DN');
  assert.match(server.peer, /^CN=a1,O=corral-migration,OU=[0-9a-f]{16}$/);
  assert.equal(sx.subject.split('\n')[2], cx.subject.split('\n')[2], 'one tag for both sides');
  assert.ok(samePublicKey(server.certPem, server.keyPem) && samePublicKey(client.certPem, client.keyPem));
  assert.notEqual(server.keyPem, client.keyPem);
  const again = await t.plan(a1, a2, '10.0.0.12');
  assert.notEqual(again.incoming.tls!.peer, server.peer, 'a new migration, a new tag: an old client name is not let in');
});

test('the plan with migration-tls off (a trusted network): no material at all', async () => {
  const p = await new MigrationTransport({ ca, settings: async () => ({ migrationTls: false }) }).plan(a1, a2, '10.0.0.12');
  assert.deepEqual(p, { tls: false, incoming: {}, start: {} });
});
