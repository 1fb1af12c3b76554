/**
 * On a cluster agent's TCP API: who a request comes from when it shows a TLS client certificate. A controller's
 * (issued by the cluster CA with the controller role) is an admin caller named after it; any other certificate
 * (another CA's, an agent's) is refused as UNTRUSTED_PEER rather than ignored. No certificate: null, and the
 * bearer token decides as on any daemon.
 */
import type { TLSSocket } from 'node:tls';
import type { FastifyRequest } from 'fastify';
import type { Caller } from '../api/auth.js';
import { verifyPeerCert } from './pki.js';

export function pemOfDer(der: Buffer): string {
  return `-----BEGIN CERTIFICATE-----\n${der.toString('base64').replace(/.{64}/g, '$&\n').replace(/\n$/, '')}\n-----END CERTIFICATE-----\n`;
}

export function controllerCaller(caPem: string): (req: FastifyRequest) => Caller | null {
  return (req) => {
    const sock = req.raw.socket as TLSSocket;
    const cert = typeof sock.getPeerCertificate === 'function' ? sock.getPeerCertificate() : null;
    if (!cert?.raw) return null;
    const peer = verifyPeerCert({ certPem: caPem }, pemOfDer(cert.raw), { role: 'controller' });
    return { who: `controller ${peer.host}`, role: 'admin' };
  };
}
