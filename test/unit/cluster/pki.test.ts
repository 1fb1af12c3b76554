/**
 * The cluster PKI, checked with openssl's own word: the CA is a CA, a signed host certificate verifies against it
 * and carries what the controller decided (not what the CSR asked), bad CSRs are INVALID_CSR, and a peer's
 * certificate from another CA, of the wrong role or out of its validity is UNTRUSTED_PEER.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CorralError } from '../../../src/core/errors.js';
import { parseJoinToken } from '../../../src/core/join-token.js';
import { newJoinToken } from '../../../src/cluster/join-tokens.js';
import { caSha256, makeClusterCa, makeKeyAndCsr, makeServerPair, signHostCsr, verifyPeerCert, type ClusterCa } from '../../../src/cluster/pki.js';

const dir = mkdtempSync(join(tmpdir(), 'corral-pki-test-'));
// the PKI's own temporary directories go here, so the test sees that none is left behind
const scratch = join(dir, 'scratch');
mkdirSync(scratch, { mode: 0o700 });
process.env.TMPDIR = scratch;
after(() => rmSync(dir, { recursive: true, force: true }));

const UUID = '1b4e28ba-2fa1-41d2-883f-0016d3cca427';
const ossl = (...args: string[]): string => execFileSync('openssl', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
const file = (name: string, text: string): string => {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
};
const days = (x: X509Certificate): number => (Date.parse(x.validTo) - Date.parse(x.validFrom)) / 86_400_000;

let caMade: Promise<ClusterCa> | undefined;
/** The test's cluster CA, made once; its certificate and key are also in ca.pem and ca.key for openssl. */
const theCa = (): Promise<ClusterCa> => (caMade ??= makeClusterCa().then((ca) => {
  file('ca.pem', ca.certPem);
  file('ca.key', ca.keyPem);
  return ca;
}));

/** A CSR made by openssl directly, asking for things the controller must not grant. */
function greedyCsr(name: string, keyArgs = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1']): string {
  const cnf = file(`${name}.cnf`, '[req]\ndistinguished_name = dn\n[dn]\n');
  const out = join(dir, `${name}.csr`);
  ossl('req', '-new', '-config', cnf, ...keyArgs, '-nodes', '-keyout', join(dir, `${name}.key`), '-subj', '/CN=evil.example/O=corral-controller',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'subjectAltName=DNS:evil.example,IP:192.0.2.66', '-out', out);
  return readFileSync(out, 'utf8');
}

function refused(code: string, message: RegExp) {
  return (e: unknown): boolean => {
    assert.ok(e instanceof CorralError, String(e));
    assert.equal(e.code, code, e.message);
    assert.match(e.message, message);
    return true;
  };
}

test('the cluster CA is EC P-256, CA:TRUE (critical), signs certificates and CRLs, for ten years; its hash goes into join tokens', async () => {
  const ca = await theCa();
  const text = ossl('x509', '-in', join(dir, 'ca.pem'), '-noout', '-text');
  assert.match(text, /X509v3 Basic Constraints: critical\n\s+CA:TRUE/);
  assert.match(text, /X509v3 Key Usage: critical\n\s+Certificate Sign, CRL Sign/);
  assert.match(text, /Subject: CN = corral cluster CA/);
  assert.match(text, /NIST CURVE: P-256/);
  const x = new X509Certificate(ca.certPem);
  assert.equal(days(x), 3650);
  assert.equal(x.checkPrivateKey(createPrivateKey(ca.keyPem)), true);
  assert.equal(createPrivateKey(ca.keyPem).asymmetricKeyDetails?.namedCurve, 'prime256v1');
  // the hash is openssl's SHA-256 fingerprint, lower-case and without colons
  const fp = ossl('x509', '-in', join(dir, 'ca.pem'), '-noout', '-fingerprint', '-sha256').trim().split('=')[1]!;
  assert.equal(caSha256(ca.certPem), fp.replace(/:/g, '').toLowerCase());
  const token = newJoinToken(caSha256(ca.certPem));
  assert.deepEqual(parseJoinToken(token.text), { id: token.id, secret: token.secret, caSha256: caSha256(ca.certPem) });
  assert.notEqual(newJoinToken(token.caSha256).secret, token.secret);
  assert.equal(Buffer.from(token.secret, 'base64url').length, 32);
  assert.deepEqual(readdirSync(scratch), []);
});

test('a signed CSR gets the controller\'s subject, SAN and usages, not the ones it asked for, and verifies against the CA', async () => {
  const ca = await theCa();
  const signed = await signHostCsr(ca, greedyCsr('greedy'), { host: 'node1', uuid: UUID, ips: ['127.0.0.1', '10.0.0.2', 'fd00::2'], role: 'agent' });
  const caFile = join(dir, 'ca.pem');
  const host = file('host.pem', signed.certPem);
  assert.equal(ossl('verify', '-CAfile', caFile, host).trim(), `${host}: OK`);
  const text = ossl('x509', '-in', host, '-noout', '-text');
  assert.match(text, /Subject: CN = node1, O = corral-agent\n/);
  assert.match(text, /X509v3 Subject Alternative Name: \n\s+DNS:node1, IP Address:127\.0\.0\.1, IP Address:10\.0\.0\.2, IP Address:FD00:0:0:0:0:0:0:2, URI:urn:uuid:1b4e28ba-2fa1-41d2-883f-0016d3cca427\n/);
  assert.match(text, /X509v3 Basic Constraints: critical\n\s+CA:FALSE/);
  assert.match(text, /X509v3 Extended Key Usage: \n\s+TLS Web Server Authentication, TLS Web Client Authentication/);
  assert.doesNotMatch(text, /evil|192\.0\.2\.66|CA:TRUE/);
  assert.equal(ossl('x509', '-in', host, '-noout', '-serial').trim(), `serial=${signed.serial}`);
  assert.match(signed.serial, /^[1-7][0-9A-F]{31}$/);
  const fp = ossl('x509', '-in', host, '-noout', '-fingerprint', '-sha256').trim().split('=')[1]!;
  assert.equal(signed.fingerprint, fp.replace(/:/g, '').toLowerCase());
  // the certificate is for the CSR's key
  assert.equal(new X509Certificate(signed.certPem).checkPrivateKey(createPrivateKey(readFileSync(join(dir, 'greedy.key')))), true);
  assert.equal(days(new X509Certificate(signed.certPem)), 365);
  const again = await signHostCsr(ca, greedyCsr('greedy2'), { host: 'node1', uuid: UUID, ips: [], days: 30, role: 'controller' });
  assert.notEqual(again.serial, signed.serial);
  assert.equal(days(new X509Certificate(again.certPem)), 30);
  assert.match(ossl('x509', '-in', file('host2.pem', again.certPem), '-noout', '-subject'), /subject=CN = node1, O = corral-controller/);
  assert.deepEqual(readdirSync(scratch), []);
});

test('a host makes its own P-256 key and CSR; the controller\'s own pair is signed as a controller', async () => {
  const ca = await theCa();
  const { keyPem, csrPem } = await makeKeyAndCsr('node2.example');
  assert.equal(createPrivateKey(keyPem).asymmetricKeyDetails?.namedCurve, 'prime256v1');
  const csr = file('node2.csr', csrPem);
  assert.match(ossl('req', '-in', csr, '-noout', '-subject', '-verify'), /subject=CN = node2\.example/);
  const signed = await signHostCsr(ca, csrPem, { host: 'node2.example', uuid: UUID, ips: ['192.0.2.2'], role: 'agent' });
  assert.equal(new X509Certificate(signed.certPem).checkPrivateKey(createPrivateKey(keyPem)), true);
  const server = await makeServerPair(ca, 'controller1', ['127.0.0.1']);
  assert.equal(new X509Certificate(server.certPem).checkPrivateKey(createPrivateKey(server.keyPem)), true);
  const peer = verifyPeerCert(ca, server.certPem, { role: 'controller' });
  assert.deepEqual({ host: peer.host, role: peer.role, uuid: peer.uuid, serial: peer.serial }, { host: 'controller1', role: 'controller', uuid: null, serial: server.serial });
  await assert.rejects(makeKeyAndCsr('bad name!'), refused('INVALID_SPEC', /^commonName: a host name is/));
  assert.deepEqual(readdirSync(scratch), []);
});

test('a CSR that does not parse, whose signature does not verify or whose key is weak is INVALID_CSR', async () => {
  const ca = await theCa();
  const o = { host: 'node3', uuid: UUID, ips: ['10.0.0.3'], role: 'agent' as const };
  const pem = greedyCsr('broken');
  const der = Buffer.from(pem.replace(/-----[^-]+-----/g, '').replace(/\s+/g, ''), 'base64');
  der[der.length - 1]! ^= 0x01; // the last byte is the signature's
  const broken = `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString('base64').match(/.{1,64}/g)!.join('\n')}\n-----END CERTIFICATE REQUEST-----\n`;
  // openssl itself agrees that the signature is bad and the rest is fine
  const check = spawnSync('openssl', ['req', '-in', file('broken.csr', broken), '-noout', '-verify'], { encoding: 'utf8' });
  assert.match(check.stderr, /self-signature verify failure/);
  await assert.rejects(signHostCsr(ca, broken, o), refused('INVALID_CSR', /does not parse or its signature does not verify: .*signature/));
  await assert.rejects(signHostCsr(ca, '-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n', o), refused('INVALID_CSR', /does not parse/));
  await assert.rejects(signHostCsr(ca, 'hello', o), refused('INVALID_CSR', /is not a PEM CSR/));
  await assert.rejects(signHostCsr(ca, ca.certPem, o), refused('INVALID_CSR', /is not a PEM CSR/));
  await assert.rejects(signHostCsr(ca, greedyCsr('rsa1024', ['-newkey', 'rsa:1024']), o), refused('INVALID_CSR', /its key \(rsa 1024 bits\) is not one the cluster CA signs/));
  await assert.rejects(signHostCsr(ca, pem, { ...o, ips: ['10.0.0.300'] }), refused('INVALID_SPEC', /^ips\[0\]: not an IPv4 or IPv6 address/));
  await assert.rejects(signHostCsr(ca, pem, { ...o, host: 'node 3' }), refused('INVALID_SPEC', /^host: /));
  await assert.rejects(signHostCsr(ca, pem, { ...o, uuid: 'nope' }), refused('INVALID_SPEC', /^uuid: /));
  await assert.rejects(signHostCsr(ca, pem, { ...o, days: 0 }), refused('INVALID_SPEC', /^days: /));
  assert.deepEqual(readdirSync(scratch), []);
});

test('verifyPeerCert: a good certificate gives its host, serial and role; another CA, the wrong role or no role is UNTRUSTED_PEER', async () => {
  const ca = await theCa();
  const signed = await signHostCsr(ca, greedyCsr('peer'), { host: 'node4', uuid: UUID, ips: ['10.0.0.4'], role: 'agent' });
  const peer = verifyPeerCert(ca, signed.certPem, { role: 'agent' });
  assert.deepEqual(peer, { host: 'node4', uuid: UUID, serial: signed.serial, fingerprint: signed.fingerprint, role: 'agent', notAfter: new Date(new X509Certificate(signed.certPem).validTo).toISOString() });
  assert.equal(verifyPeerCert({ certPem: ca.certPem }, signed.certPem).role, 'agent');
  assert.throws(() => verifyPeerCert(ca, signed.certPem, { role: 'controller' }), refused('UNTRUSTED_PEER', /is a corral-agent certificate where a corral-controller one is expected/));
  // another CA, even one of the same name, is not this cluster's
  const other = await makeClusterCa();
  const foreign = await signHostCsr(other, greedyCsr('foreign'), { host: 'node4', uuid: UUID, ips: ['10.0.0.4'], role: 'agent' });
  assert.throws(() => verifyPeerCert(ca, foreign.certPem, { role: 'agent' }), refused('UNTRUSTED_PEER', /is not from this cluster's CA/));
  assert.throws(() => verifyPeerCert(ca, ca.certPem), refused('UNTRUSTED_PEER', /is a CA certificate/));
  assert.throws(() => verifyPeerCert(ca, 'garbage'), refused('UNTRUSTED_PEER', /is not a PEM certificate/));
  // issued by the CA's key but without a Corral role (as openssl would sign anything with the key)
  const ext = file('plain.ext', '[e]\nbasicConstraints = CA:FALSE\n');
  const plain = ossl('x509', '-req', '-in', join(dir, 'peer.csr'), '-CA', join(dir, 'ca.pem'), '-CAkey', join(dir, 'ca.key'), '-set_serial', '7',
    '-days', '10', '-subj', '/CN=node4/O=someone', '-extfile', ext, '-extensions', 'e');
  assert.throws(() => verifyPeerCert(ca, plain), refused('UNTRUSTED_PEER', /carries no Corral role \(O=someone\)/));
  // validity against a given time
  assert.throws(() => verifyPeerCert(ca, signed.certPem, { now: new Date(Date.now() - 86_400_000) }), refused('UNTRUSTED_PEER', /is not valid before /));
  assert.throws(() => verifyPeerCert(ca, signed.certPem, { now: new Date(Date.now() + 366 * 86_400_000) }), refused('UNTRUSTED_PEER', /expired at /));
});

test('a certificate from the CA whose validity ended (made by openssl ca with past dates) is UNTRUSTED_PEER', async () => {
  const ca = await theCa();
  // OpenSSL 3.0's x509 has no -not_before/-not_after; `openssl ca` takes -startdate/-enddate
  const db = join(dir, 'cadb');
  mkdirSync(db);
  writeFileSync(join(db, 'index.txt'), '');
  const cnf = file('ca-old.cnf', [
    '[ca]', 'default_ca = c', '[c]', `database = ${db}/index.txt`, `serial = ${db}/serial`, `new_certs_dir = ${db}`, 'default_md = sha256',
    'policy = p', 'unique_subject = no', '[p]', 'commonName = supplied', 'organizationName = optional',
    '[e]', 'basicConstraints = critical,CA:FALSE', 'extendedKeyUsage = serverAuth,clientAuth', '',
  ].join('\n'));
  greedyCsr('old');
  const csr = join(dir, 'old.csr');
  const out = join(dir, 'old.pem');
  ossl('ca', '-batch', '-config', cnf, '-cert', join(dir, 'ca.pem'), '-keyfile', join(dir, 'ca.key'), '-in', csr, '-out', out,
    '-subj', '/CN=node5/O=corral-agent', '-startdate', '20200101000000Z', '-enddate', '20210101000000Z', '-notext', '-extensions', 'e', '-create_serial');
  const old = readFileSync(out, 'utf8');
  assert.throws(() => ossl('verify', '-CAfile', join(dir, 'ca.pem'), out), /certificate has expired/);
  assert.throws(() => verifyPeerCert(ca, old, { role: 'agent' }), refused('UNTRUSTED_PEER', /expired at 2021-01-01T00:00:00\.000Z/));
  // the same certificate was fine in 2020
  assert.equal(verifyPeerCert(ca, old, { role: 'agent', now: new Date('2020-06-01T00:00:00Z') }).host, 'node5');
});
