/**
 * The cluster's PKI: one cluster CA (made by `corral cluster init` on the controller) issues every host's TLS
 * certificate, and controller <-> agent traffic is mutual TLS with them.
 *
 * - The CA: EC P-256, self-signed, basicConstraints CA:TRUE critical, keyUsage keyCertSign,cRLSign, 10 years.
 * - A host makes its own key and a CSR (makeKeyAndCsr); its key never leaves it. The controller signs the CSR
 *   (signHostCsr) after checking its self-signature, and takes nothing from it but the public key: subject
 *   (CN = host, O = corral-agent / corral-controller), SAN (DNS:host, the IPs, URI:urn:uuid:<host uuid>),
 *   serverAuth+clientAuth, CA:FALSE, a random 128-bit serial and the validity are the controller's.
 * - A peer's certificate is checked (verifyPeerCert) against the CA: issued and signed by it, valid now, of the
 *   role expected. Revocation is the caller's: the controller keeps revoked serials in its database.
 * - A live migration's QEMUs get pairs of their own (makeMigrationPair, made by the controller): O=corral-migration,
 *   which is no role, so verifyPeerCert refuses them.
 *
 * Everything is made by the openssl CLI through the one command runner (argv, a time limit), as the TCP API's
 * self-signed pair is (src/daemon/tls.ts); files live only in a private mkdtemp directory (0700) that is removed
 * afterwards, keys 0600. Certificates are read back with node:crypto's X509Certificate.
 * Fingerprints here are SHA-256 of the DER, lower-case hex without colons (the join token's form).
 */
import { X509Certificate, createPublicKey, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CorralError, invalidSpec } from '../core/errors.js';
import { run, stderrLine } from '../host/exec.js';
import { MIGRATION_ORG, MIGRATION_TAG } from '../core/migration-transport.js';

export interface ClusterCa {
  certPem: string;
  keyPem: string;
}

export type PeerRole = 'agent' | 'controller';

/** The subject O of each role's certificates. */
export const ROLE_ORGS: Readonly<Record<PeerRole, string>> = { agent: 'corral-agent', controller: 'corral-controller' };

export interface SignedCert {
  certPem: string;
  /** upper-case hex, as openssl and X509Certificate.serialNumber print it */
  serial: string;
  /** SHA-256 of the DER, lower-case hex without colons */
  fingerprint: string;
}

export interface PeerIdentity {
  /** the certificate's CN: the host's name */
  host: string;
  /** the host's uuid from its URI:urn:uuid: SAN, null when the certificate has none */
  uuid: string | null;
  serial: string;
  fingerprint: string;
  role: PeerRole;
  /** when the certificate stops being valid, ISO */
  notAfter: string;
}

const CA_DAYS = 3650;
const HOST_DAYS = 365;
/** A CSR is a few hundred bytes; one far larger is refused before it is written anywhere. */
const MAX_CSR_CHARS = 16_384;
const HOST_NAME = /^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const CA_NAME = /^[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}$/;

function openssl(args: string[], what: string, code?: 'INVALID_CSR'): Promise<{ stdout: string; stderr: string }> {
  return run('openssl', args, { timeoutMs: 30_000, what: `openssl (${what})`, code });
}

/** fn in a fresh private directory (0700, mkdtemp), removed afterwards whatever happens. */
async function inTempDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = mkdtempSync(join(tmpdir(), 'corral-pki-'));
  try {
    return await fn(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** A file only the owner may read (keys, and everything else alike). */
function writePrivate(file: string, text: string): string {
  writeFileSync(file, text, { mode: 0o600 });
  return file;
}

async function newKey(dir: string): Promise<string> {
  const file = join(dir, 'key.pem');
  await openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', file], 'making an EC P-256 key');
  return file;
}

function readCert(pem: string, what: string, code: 'INVALID_CONFIG' | 'UNTRUSTED_PEER'): X509Certificate {
  try {
    return new X509Certificate(pem);
  } catch (e) {
    throw new CorralError(code, `${what} is not a PEM certificate (${(e as Error).message})`);
  }
}

const sha256Hex = (x: X509Certificate): string => x.fingerprint256.replace(/:/g, '').toLowerCase();

/** The SHA-256 of a certificate's DER, lower-case hex without colons: what a join token carries for the CA. */
export function caSha256(certPem: string): string {
  return sha256Hex(readCert(certPem, 'the cluster CA certificate', 'INVALID_CONFIG'));
}

/** A new cluster CA: EC P-256, self-signed, CA:TRUE (critical), keyCertSign and cRLSign, 10 years. */
export async function makeClusterCa(name = 'corral cluster CA'): Promise<ClusterCa> {
  if (!CA_NAME.test(name)) throw invalidSpec('name', 'a CA name is 1 to 64 letters, digits, spaces, ".", "_" and "-", starting with a letter or digit');
  return inTempDir(async (dir) => {
    const key = await newKey(dir);
    const conf = writePrivate(join(dir, 'ca.cnf'), [
      '[req]', 'distinguished_name = dn', 'x509_extensions = v3', '[dn]', '[v3]',
      'basicConstraints = critical,CA:TRUE', 'keyUsage = critical,keyCertSign,cRLSign',
      'subjectKeyIdentifier = hash', 'authorityKeyIdentifier = keyid:always', '',
    ].join('\n'));
    const cert = join(dir, 'ca.pem');
    await openssl(['req', '-new', '-x509', '-config', conf, '-key', key, '-subj', `/CN=${name}`, '-days', String(CA_DAYS), '-sha256', '-out', cert],
      'making the cluster CA certificate');
    return { certPem: readFileSync(cert, 'utf8'), keyPem: readFileSync(key, 'utf8') };
  });
}

/** A host's new key (EC P-256) and a CSR for it with this CN (the CA takes only its public key). */
export async function makeKeyAndCsr(commonName: string): Promise<{ keyPem: string; csrPem: string }> {
  checkHost('commonName', commonName);
  return inTempDir(async (dir) => {
    const key = await newKey(dir);
    const conf = writePrivate(join(dir, 'req.cnf'), '[req]\ndistinguished_name = dn\n[dn]\n');
    const { stdout } = await openssl(['req', '-new', '-config', conf, '-key', key, '-subj', `/CN=${commonName}`, '-sha256'], 'making a certificate signing request');
    return { keyPem: readFileSync(key, 'utf8'), csrPem: stdout };
  });
}

function checkHost(field: string, host: string): void {
  if (typeof host !== 'string' || !(isIP(host) || HOST_NAME.test(host))) {
    throw invalidSpec(field, 'a host name is letters, digits, "." and "-" (at most 253), starting and ending with a letter or digit, or an IP address');
  }
}

/** Whether a CSR's public key is one the CA signs: EC P-256 or P-384, Ed25519, RSA of 2048 bits or more. */
function keyAccepted(pubPem: string): string | null {
  let k: ReturnType<typeof createPublicKey>;
  try {
    k = createPublicKey(pubPem);
  } catch (e) {
    return `its public key does not parse (${(e as Error).message})`;
  }
  const d = k.asymmetricKeyDetails ?? {};
  if (k.asymmetricKeyType === 'ec' && (d.namedCurve === 'prime256v1' || d.namedCurve === 'secp384r1')) return null;
  if (k.asymmetricKeyType === 'ed25519') return null;
  if (k.asymmetricKeyType === 'rsa' && (d.modulusLength ?? 0) >= 2048) return null;
  return `its key (${k.asymmetricKeyType ?? 'unknown'}${d.namedCurve ? ` ${d.namedCurve}` : ''}${d.modulusLength ? ` ${d.modulusLength} bits` : ''}) is not one the cluster CA signs: use EC P-256 or P-384, Ed25519 or RSA of 2048 bits or more`;
}

/** The certificate's SAN entries, for an openssl config line. */
function sanEntries(host: string, ips: string[], uuid: string | undefined): string {
  const names = isIP(host) ? [`IP:${host}`] : [`DNS:${host}`];
  for (const ip of ips) if (!names.includes(`IP:${ip}`)) names.push(`IP:${ip}`);
  if (uuid !== undefined) names.push(`URI:urn:uuid:${uuid}`);
  return names.join(',');
}

interface SignOptions { host: string; uuid?: string; ips: string[]; days?: number; role: PeerRole }

/** What a certificate is issued as: its subject (after CN) and extended key usages. */
interface IssueAs { subject: string; eku: string }

async function sign(ca: ClusterCa, csrPem: string, o: SignOptions): Promise<SignedCert> {
  if (!Object.hasOwn(ROLE_ORGS, o.role)) throw invalidSpec('role', 'a role is agent or controller');
  const certPem = await issue(ca, csrPem, o, { subject: `/O=${ROLE_ORGS[o.role]}`, eku: 'serverAuth,clientAuth' });
  const peer = verifyPeerCert(ca, certPem, { role: o.role });
  return { certPem, serial: peer.serial, fingerprint: peer.fingerprint };
}

async function issue(ca: ClusterCa, csrPem: string, o: Omit<SignOptions, 'role'>, as: IssueAs): Promise<string> {
  checkHost('host', o.host);
  if (o.uuid !== undefined && !UUID.test(o.uuid)) throw invalidSpec('uuid', 'a host uuid is lower-case hex in the 8-4-4-4-12 form');
  if (!Array.isArray(o.ips)) throw invalidSpec('ips', 'expected a list of IP addresses');
  o.ips.forEach((ip, i) => {
    if (typeof ip !== 'string' || !isIP(ip)) throw invalidSpec(`ips[${i}]`, 'not an IPv4 or IPv6 address');
  });
  const days = o.days ?? HOST_DAYS;
  if (!Number.isInteger(days) || days < 1 || days > CA_DAYS) throw invalidSpec('days', `a certificate is valid for 1 to ${CA_DAYS} days`);
  if (typeof csrPem !== 'string' || csrPem.length > MAX_CSR_CHARS || !csrPem.includes('-----BEGIN CERTIFICATE REQUEST-----')) {
    throw new CorralError('INVALID_CSR', `the certificate signing request is not a PEM CSR (-----BEGIN CERTIFICATE REQUEST-----, at most ${MAX_CSR_CHARS} characters)`);
  }
  return inTempDir(async (dir) => {
    const csr = writePrivate(join(dir, 'host.csr'), csrPem);
    // its own signature first: a CSR that does not verify was not made by the key it carries
    // (OpenSSL 3.0's req -verify exits 0 on a bad signature: its "verify OK" line is what says it is good)
    const bad = (why: string): CorralError => new CorralError('INVALID_CSR', `the certificate signing request does not parse or its signature does not verify: ${why}`);
    let checked: { stdout: string; stderr: string };
    try {
      checked = await openssl(['req', '-in', csr, '-noout', '-verify', '-pubkey'], 'checking the certificate signing request', 'INVALID_CSR');
    } catch (e) {
      if (e instanceof CorralError && e.code === 'INVALID_CSR') throw bad(String(e.details.stderr || e.message));
      throw e;
    }
    if (!/self-signature verify OK/.test(checked.stderr) || /verify failure/.test(checked.stderr)) throw bad(stderrLine(checked.stderr, 'openssl did not say it verifies'));
    const pubPem = checked.stdout;
    const weak = keyAccepted(pubPem);
    if (weak) throw new CorralError('INVALID_CSR', `the certificate signing request is refused: ${weak}`);
    const caCert = writePrivate(join(dir, 'ca.pem'), ca.certPem);
    const caKey = writePrivate(join(dir, 'ca.key'), ca.keyPem);
    const ext = writePrivate(join(dir, 'ext.cnf'), [
      '[ext]', 'basicConstraints = critical,CA:FALSE', 'keyUsage = critical,digitalSignature',
      `extendedKeyUsage = ${as.eku}`, `subjectAltName = ${sanEntries(o.host, o.ips, o.uuid)}`,
      'subjectKeyIdentifier = hash', 'authorityKeyIdentifier = keyid', '',
    ].join('\n'));
    // 128 random bits but for the first byte, kept in 0x10-0x7f: positive and without a leading zero digit, so
    // every tool prints it the same way
    const serial = randomBytes(16);
    serial[0] = 0x10 + (serial[0]! % 0x70);
    // x509 -req copies no extension from the CSR (-copy_extensions none) and -subj replaces its subject
    const { stdout } = await openssl(['x509', '-req', '-in', csr, '-CA', caCert, '-CAkey', caKey, '-set_serial', `0x${serial.toString('hex')}`,
      '-days', String(days), '-subj', `/CN=${o.host}${as.subject}`, '-extfile', ext, '-extensions', 'ext', '-sha256'],
    'signing a host certificate');
    return stdout;
  });
}

/**
 * The controller signs a host's CSR: the CSR's self-signature is checked first (INVALID_CSR when it does not
 * parse or verify, or its key is weak), then only its public key is used; subject, SAN, key usages, serial and
 * validity (default 1 year) are the controller's. The serial is what the controller records (and revokes).
 */
export function signHostCsr(ca: ClusterCa, csrPem: string, o: { host: string; uuid: string; ips: string[]; days?: number; role: PeerRole }): Promise<SignedCert> {
  return sign(ca, csrPem, o);
}

/** The controller's own TLS pair from the cluster CA: a new key, signed as a controller for this name and these IPs. */
export async function makeServerPair(ca: ClusterCa, host: string, ips: string[], o: { uuid?: string; days?: number } = {}): Promise<SignedCert & { keyPem: string }> {
  const { keyPem, csrPem } = await makeKeyAndCsr(host);
  const signed = await sign(ca, csrPem, { host, ips, role: 'controller', ...o });
  return { ...signed, keyPem };
}

/**
 * A pair for one side of one live migration (src/cluster/migration-transport.ts): a new EC P-256 key and a
 * certificate from the cluster CA with subject CN = host, O = corral-migration, OU = the migration's tag, SAN the
 * host's name and these IPs, serverAuth (the destination's) or clientAuth (the source's) only, valid for a day (the
 * shortest openssl x509 gives). Its O is no Corral role: no controller or agent takes it as a peer (verifyPeerCert
 * refuses it), so a QEMU that holds it for the migration holds nothing that speaks for its host.
 */
export async function makeMigrationPair(ca: ClusterCa, o: { host: string; ips: string[]; tag: string; usage: 'server' | 'client' }): Promise<{ certPem: string; keyPem: string }> {
  if (!MIGRATION_TAG.test(o.tag)) throw invalidSpec('tag', 'a migration tag is 16 lower-case hex digits');
  const { keyPem, csrPem } = await makeKeyAndCsr(o.host);
  const certPem = await issue(ca, csrPem, { host: o.host, ips: o.ips, days: 1 }, { subject: `/O=${MIGRATION_ORG}/OU=${o.tag}`, eku: o.usage === 'server' ? 'serverAuth' : 'clientAuth' });
  return { certPem, keyPem };
}

/** The subject's fields (CN, O, ...) from X509Certificate.subject's lines. */
function subjectFields(subject: string): Map<string, string> {
  const m = new Map<string, string>();
  for (const line of subject.split('\n')) {
    const eq = line.indexOf('=');
    if (eq > 0) m.set(line.slice(0, eq), line.slice(eq + 1));
  }
  return m;
}

/**
 * A peer's certificate, checked against the cluster CA: issued and signed by it, not a CA itself, valid at `now`,
 * of the expected role (either role when none is given). UNTRUSTED_PEER (403) saying why otherwise. Revocation
 * is the caller's: look the returned serial up among the revoked ones.
 */
export function verifyPeerCert(ca: { certPem: string }, certPem: string, o: { role?: PeerRole; now?: Date } = {}): PeerIdentity {
  const caCert = readCert(ca.certPem, 'the cluster CA certificate', 'INVALID_CONFIG');
  const cert = readCert(certPem, 'the peer\'s certificate', 'UNTRUSTED_PEER');
  const untrusted = (why: string): CorralError =>
    new CorralError('UNTRUSTED_PEER', `the peer's certificate (serial ${cert.serialNumber}) ${why}`, { serial: cert.serialNumber });
  if (!cert.checkIssued(caCert) || !cert.verify(caCert.publicKey)) {
    throw untrusted(`is not from this cluster's CA (issuer ${cert.issuer.replace(/\n/g, ', ')}, CA ${caSha256(ca.certPem)})`);
  }
  if (cert.ca) throw untrusted('is a CA certificate, not a host\'s');
  const now = (o.now ?? new Date()).getTime();
  const from = Date.parse(cert.validFrom);
  const to = Date.parse(cert.validTo);
  if (!(now >= from)) throw untrusted(`is not valid before ${new Date(from).toISOString()}`);
  if (!(now <= to)) throw untrusted(`expired at ${new Date(to).toISOString()}`);
  const subject = subjectFields(cert.subject);
  const org = subject.get('O');
  const role = (Object.keys(ROLE_ORGS) as PeerRole[]).find((r) => ROLE_ORGS[r] === org);
  if (!role) throw untrusted(`carries no Corral role (O=${org ?? 'none'})`);
  if (o.role && role !== o.role) throw untrusted(`is a ${ROLE_ORGS[role]} certificate where a ${ROLE_ORGS[o.role]} one is expected`);
  const host = subject.get('CN');
  if (!host) throw untrusted('has no CN');
  const uuid = /(?:^|, )URI:urn:uuid:([0-9a-f-]{36})(?:,|$)/.exec(cert.subjectAltName ?? '')?.[1] ?? null;
  return { host, uuid, serial: cert.serialNumber, fingerprint: sha256Hex(cert), role, notAfter: new Date(to).toISOString() };
}

