/**
 * The TCP API's TLS pair: the files given (--tls-cert, --tls-key), or a self-signed pair the daemon makes at first
 * start in $CORRAL_DATA_DIR/tls (server.crt, server.key 0600) with openssl, through the one command runner. Either
 * way the pair is checked before the daemon serves anything: a file that cannot be read, a certificate that does
 * not parse or a key that is not the certificate's stops the daemon with INVALID_CONFIG naming the file.
 * Clients pin the certificate's SHA-256 fingerprint (CORRAL_TLS_FINGERPRINT) or trust a CA (CORRAL_TLS_CA).
 */
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { isIP } from 'node:net';
import { hostname } from 'node:os';
import { CorralError } from '../core/errors.js';
import { dataPaths } from '../core/paths.js';
import { run } from '../host/exec.js';

export interface TlsPair {
  cert: string;
  key: string;
  certFile: string;
  keyFile: string;
  /** SHA-256 of the certificate, as openssl and Node print it (AB:CD:...) */
  fingerprint: string;
  /** made now, at this start */
  made: boolean;
}


function badFile(file: string, what: string, fix: string): CorralError {
  return new CorralError('INVALID_CONFIG', `the TCP API's TLS file ${file} ${what}: ${fix}; the daemon does not serve TCP without TLS`, { file, fix });
}

function readPem(file: string, kind: 'certificate' | 'key'): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? (e as Error).message;
    throw badFile(file, `cannot be read (${code})`, `give a readable PEM ${kind} file`);
  }
}

/** The pair's certificate and key, checked: both parse, and the key is the certificate's. */
export function loadTlsPair(certFile: string, keyFile: string, made = false): TlsPair {
  const cert = readPem(certFile, 'certificate');
  const key = readPem(keyFile, 'key');
  let x509: X509Certificate;
  try {
    x509 = new X509Certificate(cert);
  } catch (e) {
    throw badFile(certFile, `is not a PEM certificate (${(e as Error).message})`, 'give the server certificate in PEM form');
  }
  let pk: ReturnType<typeof createPrivateKey>;
  try {
    pk = createPrivateKey(key);
  } catch (e) {
    throw badFile(keyFile, `is not an unencrypted PEM private key (${(e as Error).message})`, 'give the certificate\'s private key in PEM form, without a passphrase');
  }
  if (!x509.checkPrivateKey(pk)) throw badFile(keyFile, `is not the private key of ${certFile}`, 'give the key the certificate was made for');
  return { cert, key, certFile, keyFile, fingerprint: x509.fingerprint256, made };
}

/** Names the self-signed certificate is made for: localhost, the loopback addresses, this host and the listen address. */
export function certificateNames(listenHost: string): string[] {
  const names = ['DNS:localhost', 'IP:127.0.0.1', 'IP:::1'];
  const add = (n: string): void => {
    if (isIP(n)) {
      if (n !== '0.0.0.0' && n !== '::') names.push(`IP:${n}`);
    } else if (/^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$/.test(n)) names.push(`DNS:${n}`);
  };
  add(hostname());
  add(listenHost);
  return [...new Set(names)];
}

/**
 * The pair to serve TCP with: the files given (both or neither), else the data dir's own pair, made at first
 * start (EC P-256, ten years, CN=corral) by openssl.
 */
export async function ensureTlsPair(dataDir: string, given: { cert?: string; key?: string }, listenHost: string): Promise<TlsPair> {
  if (given.cert !== undefined || given.key !== undefined) {
    if (!given.cert || !given.key) {
      throw new CorralError('INVALID_CONFIG', 'give both --tls-cert and --tls-key, or neither (the daemon then makes its own pair in $CORRAL_DATA_DIR/tls)', { field: given.cert ? 'tls-key' : 'tls-cert' });
    }
    return loadTlsPair(given.cert, given.key);
  }
  const f = dataPaths(dataDir).tls;
  const haveCert = existsSync(f.cert);
  const haveKey = existsSync(f.key);
  if (haveCert && haveKey) return loadTlsPair(f.cert, f.key);
  if (haveCert !== haveKey) {
    const missing = haveCert ? f.key : f.cert;
    throw badFile(missing, 'is missing while its pair is there', `remove ${f.dir} to have the daemon make a new pair (clients must then trust its new fingerprint), or put the file back`);
  }
  mkdirSync(f.dir, { recursive: true, mode: 0o700 });
  chmodSync(f.dir, 0o700);
  const tmpCert = `${f.cert}.tmp${process.pid}`;
  const tmpKey = `${f.key}.tmp${process.pid}`;
  try {
    await run('openssl', [
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
      '-keyout', tmpKey, '-out', tmpCert, '-days', '3650', '-subj', '/CN=corral',
      '-addext', `subjectAltName=${certificateNames(listenHost).join(',')}`,
    ], { timeoutMs: 30_000, what: 'openssl (making the TCP API\'s self-signed certificate)' });
    chmodSync(tmpKey, 0o600);
    chmodSync(tmpCert, 0o644);
    renameSync(tmpKey, f.key);
    renameSync(tmpCert, f.cert);
  } finally {
    rmSync(tmpKey, { force: true });
    rmSync(tmpCert, { force: true });
  }
  return loadTlsPair(f.cert, f.key, true);
}
