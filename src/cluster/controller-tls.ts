/**
 * A controller's own TLS pair, issued by the cluster CA (so that agents, which pin the CA from their join token,
 * and the CLI, with CORRAL_TLS_CA=<data dir>/cluster-ca.crt, trust every controller alike). Kept in the controller's
 * data dir (tls/controller.crt, tls/controller.key 0600) and made again when it is not the current CA's, or does
 * not name the address the controller listens on.
 */
import { X509Certificate } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { hostname, networkInterfaces } from 'node:os';
import { isIP } from 'node:net';
import { join } from 'node:path';
import { makeServerPair } from './pki.js';

export interface ControllerPair {
  certPem: string;
  keyPem: string;
  /** the certificate followed by the CA's, as the server sends it */
  chainPem: string;
  certFile: string;
  caFile: string;
}

/** The addresses a controller listening on `host` is reached at: that one, or every local one for 0.0.0.0 / ::. */
export function controllerIps(host: string): string[] {
  const ips = new Set<string>(['127.0.0.1']);
  if (isIP(host) && host !== '0.0.0.0' && host !== '::') ips.add(host);
  else if (host === '0.0.0.0' || host === '::') {
    for (const list of Object.values(networkInterfaces())) for (const a of list ?? []) if (a.family === 'IPv4') ips.add(a.address);
  }
  return [...ips];
}

function fits(certPem: string, caPem: string, ips: string[]): boolean {
  try {
    const cert = new X509Certificate(certPem);
    const ca = new X509Certificate(caPem);
    if (!cert.checkIssued(ca) || !cert.verify(ca.publicKey)) return false;
    if (Date.parse(cert.validTo) < Date.now() + 7 * 24 * 3600_000) return false;
    const names = cert.subjectAltName ?? '';
    return ips.every((ip) => names.includes(`IP Address:${ip}`));
  } catch {
    return false;
  }
}

export async function ensureControllerPair(dataDir: string, ca: { certPem: string; keyPem: string }, listenHost: string): Promise<ControllerPair> {
  const dir = join(dataDir, 'tls');
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
  const certFile = join(dir, 'controller.crt');
  const keyFile = join(dir, 'controller.key');
  const caFile = join(dataDir, 'cluster-ca.crt');
  writeFileSync(caFile, ca.certPem, { mode: 0o644 });
  const ips = controllerIps(listenHost);
  let certPem = existsSync(certFile) ? readFileSync(certFile, 'utf8') : '';
  let keyPem = existsSync(keyFile) ? readFileSync(keyFile, 'utf8') : '';
  if (!certPem || !keyPem || !fits(certPem, ca.certPem, ips)) {
    const made = await makeServerPair(ca, hostname(), ips);
    certPem = made.certPem;
    keyPem = made.keyPem;
    writeFileSync(keyFile, keyPem, { mode: 0o600 });
    writeFileSync(certFile, certPem, { mode: 0o644 });
  }
  return { certPem, keyPem, chainPem: `${certPem.trim()}\n${ca.certPem.trim()}\n`, certFile, caFile };
}
