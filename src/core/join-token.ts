/**
 * Cluster join tokens, pure: their text form and what each part must be. A token is what `corral cluster init`
 * prints and `corral agent --join URL --token T` takes:
 *
 *   corral1.<id>.<secret>.<ca sha256>
 *
 * - id: public, [a-z0-9], 8 to 64 characters; the controller finds the token's row by it;
 * - secret: 32 random bytes, base64url without padding (43 characters); the controller keeps only its SHA-256;
 * - ca sha256: the SHA-256 of the cluster CA certificate's DER, 64 lower-case hex digits. The joining agent
 *   pins the controller's CA with it before it sends anything (kubeadm's discovery-token-ca-cert-hash).
 *
 * Making one (random bytes) is src/cluster/join-tokens.ts's; checking one's expiry and single use against the
 * database is the controller's. No message here ever holds any part of the text: a token pasted in the wrong
 * order would otherwise show its secret.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { CorralError } from './errors.js';

/** Every join token starts with this and a dot: the format's name and version. */
export const JOIN_TOKEN_PREFIX = 'corral1';

export interface JoinToken {
  /** public: names the token (its row on the controller) */
  id: string;
  /** 32 bytes, base64url without padding */
  secret: string;
  /** SHA-256 of the cluster CA certificate's DER, lower-case hex without colons */
  caSha256: string;
}

const ID = /^[a-z0-9]{8,64}$/;
const SECRET = /^[A-Za-z0-9_-]{43}$/;
const CA_SHA256 = /^[0-9a-f]{64}$/;
const SHAPE = `${JOIN_TOKEN_PREFIX}.<id>.<secret>.<ca-sha256>`;

function invalid(part: string, message: string): CorralError {
  return new CorralError('INVALID_JOIN_TOKEN', `not a valid Corral join token: ${message}`, { field: 'token', part });
}

/** The id, secret and CA hash checked one by one; INVALID_JOIN_TOKEN naming the first that is wrong. */
function checkParts(id: string, secret: string, caSha256: string): void {
  if (!ID.test(id)) throw invalid('id', `its id (${id.length} characters) must be 8 to 64 lower-case letters and digits`);
  if (!SECRET.test(secret) || Buffer.from(secret, 'base64url').toString('base64url') !== secret) {
    throw invalid('secret', 'its secret must be 32 bytes in base64url (43 characters of A-Z, a-z, 0-9, - and _)');
  }
  if (!CA_SHA256.test(caSha256)) {
    throw invalid('caSha256', `its CA hash (${caSha256.length} characters) must be the SHA-256 of the cluster CA certificate: 64 lower-case hex digits`);
  }
}

/** The text form of a token's parts (checked as parseJoinToken checks them). */
export function formatJoinToken(t: JoinToken): string {
  checkParts(t.id, t.secret, t.caSha256);
  return `${JOIN_TOKEN_PREFIX}.${t.id}.${t.secret}.${t.caSha256}`;
}

/**
 * A token's parts from its text (spaces around it are dropped: it is pasted). INVALID_JOIN_TOKEN (400) saying
 * what is wrong: not a Corral join token, the wrong number of parts, a bad id, secret or CA hash.
 */
export function parseJoinToken(text: unknown): JoinToken {
  if (typeof text !== 'string') throw invalid('token', `expected text of the form ${SHAPE}`);
  const parts = text.trim().split('.');
  if (parts[0] !== JOIN_TOKEN_PREFIX) {
    throw invalid('prefix', `a Corral join token starts with "${JOIN_TOKEN_PREFIX}." (${SHAPE}); use the token \`corral cluster init\` printed`);
  }
  if (parts.length !== 4) throw invalid('token', `it has ${parts.length} dot-separated parts where ${SHAPE} has 4`);
  const [, id, secret, caSha256] = parts as [string, string, string, string];
  checkParts(id, secret, caSha256);
  return { id, secret, caSha256 };
}

/** What the controller keeps of a secret: its SHA-256, lower-case hex. */
export function hashJoinSecret(secret: string): string {
  return createHash('sha256').update(secret, 'utf8').digest('hex');
}

/** Whether a secret is the one a stored hash was made from, compared in constant time. */
export function joinSecretMatches(secret: string, hashHex: string): boolean {
  const want = Buffer.from(hashJoinSecret(secret), 'hex');
  const have = Buffer.from(hashHex, 'hex');
  return have.length === want.length && timingSafeEqual(have, want);
}
