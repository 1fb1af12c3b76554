/**
 * How the CLI trusts the daemon's TCP API (always TLS): pin the certificate's SHA-256 fingerprint
 * (CORRAL_TLS_FINGERPRINT, as the daemon logs it and `corral tls fingerprint` prints it), or verify it against a
 * CA file (CORRAL_TLS_CA), else against the system's CAs. The connection is handed to the HTTP request only once
 * the certificate is trusted, so the bearer token is never sent to a server that is not the daemon.
 */
import { readFileSync } from 'node:fs';
import { isIP, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { CliError } from './client-error.js';

export interface TlsTrust {
  /** SHA-256 fingerprint, upper-case hex pairs joined by colons */
  fingerprint?: string;
  ca?: Buffer;
  caFile?: string;
}

/** AB:CD:..., from any of "ab:cd...", "ABCD...", "sha256:AB:CD..." */
export function normaliseFingerprint(raw: string): string {
  const hex = raw.trim().replace(/^sha-?256[:=/ ]?/i, '').replace(/[:\s]/g, '').toUpperCase();
  if (!/^[0-9A-F]{64}$/.test(hex)) throw new CliError(`CORRAL_TLS_FINGERPRINT "${raw}" is not a SHA-256 fingerprint (64 hex digits, colons allowed; see corral tls fingerprint on the daemon's host)`);
  return hex.match(/../g)!.join(':');
}

export function trustFromEnv(env: NodeJS.ProcessEnv): TlsTrust {
  const pin = env.CORRAL_TLS_FINGERPRINT?.trim();
  const caFile = env.CORRAL_TLS_CA?.trim();
  if (pin && caFile) throw new CliError('set CORRAL_TLS_FINGERPRINT or CORRAL_TLS_CA, not both');
  if (pin) return { fingerprint: normaliseFingerprint(pin) };
  if (caFile) {
    try {
      return { ca: readFileSync(caFile), caFile };
    } catch (e) {
      throw new CliError(`CORRAL_TLS_CA ${caFile} cannot be read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
    }
  }
  return {};
}

/** TLS errors that mean "the certificate is not trusted", as opposed to an unreachable daemon. */
const UNTRUSTED = /CERT|SELF_SIGNED|UNABLE_TO_(GET|VERIFY)|ALTNAME|HOSTNAME|FINGERPRINT_MISMATCH/;

export function untrusted(e: NodeJS.ErrnoException): boolean {
  return typeof e.code === 'string' && UNTRUSTED.test(e.code);
}

/**
 * A createConnection for http.request (and ws): TLS to host:port, calling back with the socket only once the
 * certificate is trusted (the pin matches, or the CA verified it and the host name).
 */
export function trustedConnector(host: string, port: number, trust: TlsTrust): (opts: unknown, cb: (err: Error | null, socket?: Socket) => void) => undefined {
  return (_opts, cb) => {
    const sock = tlsConnect({
      host, port, ALPNProtocols: ['http/1.1'],
      ...(isIP(host) ? {} : { servername: host }),
      ...(trust.fingerprint ? { rejectUnauthorized: false } : trust.ca ? { ca: trust.ca } : {}),
    });
    const fail = (e: Error): void => {
      sock.destroy();
      cb(e);
    };
    sock.once('error', fail);
    sock.once('secureConnect', () => {
      sock.off('error', fail);
      if (trust.fingerprint) {
        const got = sock.getPeerCertificate().fingerprint256;
        if (got !== trust.fingerprint) {
          const e = new Error(`the daemon's certificate has fingerprint ${got}, not the ${trust.fingerprint} CORRAL_TLS_FINGERPRINT pins`) as NodeJS.ErrnoException;
          e.code = 'FINGERPRINT_MISMATCH';
          fail(e);
          return;
        }
      }
      cb(null, sock);
    });
    return undefined;
  };
}
