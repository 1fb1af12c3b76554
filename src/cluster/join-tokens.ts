/**
 * Making a cluster join token: a random public id and a random 32-byte secret, with the cluster CA's hash the
 * joining agent pins. The format and its checks are src/core/join-token.ts's (pure); the randomness is here.
 */
import { randomBytes } from 'node:crypto';
import { formatJoinToken, type JoinToken } from '../core/join-token.js';

/** A new token for the cluster whose CA certificate has this SHA-256 (caSha256() in pki.ts): its parts and its text. */
export function newJoinToken(caSha256: string): JoinToken & { text: string } {
  const t: JoinToken = { id: randomBytes(8).toString('hex'), secret: randomBytes(32).toString('base64url'), caSha256 };
  return { ...t, text: formatJoinToken(t) };
}
