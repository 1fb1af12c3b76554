/**
 * Named API tokens for the TCP API. A token is a random 256-bit secret, `corral_` + base64url, shown once when it is
 * made; the store keeps only its SHA-256. Each has a role (viewer < operator < admin), an optional expiry and the
 * time it was last used (to the minute). A revoked token's row stays, so whoever still sends it is told why it is
 * refused, until its name is given to a new token.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { CorralError } from '../core/errors.js';
import { parseExpiry, TOKEN_PREFIX, validateRole, validateTokenName, type Role } from '../core/tokens.js';
import type { TokenRow, TokenStore } from '../store/store.js';

export type TokenStatus = 'active' | 'expired' | 'revoked';

/** A token as the API shows it: never its secret nor its hash. */
export interface TokenView {
  name: string;
  role: Role;
  status: TokenStatus;
  createdAt: string;
  expiresAt: string | null;
  lastUsedAt: string | null;
  revokedAt: string | null;
}

/** The reply of a create: the view and, this once, the secret. */
export interface CreatedToken extends TokenView {
  token: string;
}

export interface CreateTokenRequest {
  name: unknown;
  role: unknown;
  /** a duration (30d, 12h) or a date; none: the token never expires */
  expires?: unknown;
}

/** last_used is written at most this often per token: a request is not a database write. */
export const LAST_USED_EVERY_MS = 60_000;

/** What a store keeps of a secret: its SHA-256, in hex. */
export const hashSecret = (secret: string): string => createHash('sha256').update(secret, 'utf8').digest('hex');

/** A new secret: `corral_` and 256 random bits. */
export const newSecret = (): string => `${TOKEN_PREFIX}${randomBytes(32).toString('base64url')}`;

/** A token as the API shows it, its status as of `now`. */
export function tokenView(row: TokenRow, now: Date): TokenView {
  const expired = row.expiresAt !== null && Date.parse(row.expiresAt) <= now.getTime();
  const status: TokenStatus = row.revokedAt !== null ? 'revoked' : expired ? 'expired' : 'active';
  return { name: row.name, role: row.role, status, createdAt: row.createdAt, expiresAt: row.expiresAt, lastUsedAt: row.lastUsedAt, revokedAt: row.revokedAt };
}

/** A create request checked (name, role, expiry from `now`); INVALID_SPEC naming the field otherwise. */
export function checkCreate(req: CreateTokenRequest, now: Date): { name: string; role: Role; expiresAt: string | null } {
  const name = validateTokenName('name', req.name);
  const role = validateRole('role', req.role);
  const expiresAt = req.expires === undefined || req.expires === null ? null : parseExpiry('expires', req.expires, now);
  return { name, role, expiresAt };
}

/** The refusal of a create whose name an unrevoked token holds. */
export function tokenExists(existing: TokenView): CorralError {
  const name = existing.name;
  return new CorralError('ALREADY_EXISTS', `token "${name}" already exists (${existing.status}); revoke it first (corral token revoke ${name}) or choose another name`, { field: 'name', name });
}

const unknownSecret = (): CorralError => new CorralError('UNAUTHORIZED', 'the bearer token is not valid: it is not a token this daemon issued');

export const tokenNotFound = (name: string): CorralError => new CorralError('TOKEN_NOT_FOUND', `no token named "${name}"`, { name });

/**
 * Whether the row a secret's hash found may be used as of `now`: UNAUTHORIZED when it was revoked or has expired
 * (saying which and when, but never a name: the secret is all the caller showed). The hashes are compared again,
 * in constant time: the lookup was by hash already, but it costs nothing.
 */
export function checkUsable(row: TokenRow | null, hash: string, now: Date, unknown: CorralError): TokenRow {
  if (!row || !timingSafeEqual(Buffer.from(row.hash, 'hex'), Buffer.from(hash, 'hex'))) throw unknown;
  if (row.revokedAt !== null) throw new CorralError('UNAUTHORIZED', `the bearer token was revoked at ${row.revokedAt}; ask an admin for a new one`, { reason: 'revoked', at: row.revokedAt });
  if (row.expiresAt !== null && Date.parse(row.expiresAt) <= now.getTime()) {
    throw new CorralError('UNAUTHORIZED', `the bearer token expired at ${row.expiresAt}; ask an admin for a new one`, { reason: 'expired', at: row.expiresAt });
  }
  return row;
}

export class TokenService {
  private readonly now: () => Date;

  constructor(private readonly store: TokenStore, opts: { now?: () => Date } = {}) {
    this.now = opts.now ?? (() => new Date());
  }

  private view(row: TokenRow): TokenView {
    return tokenView(row, this.now());
  }

  list(): TokenView[] {
    return this.store.listTokens().map((r) => this.view(r));
  }

  /** A new token. Its name must be free: a revoked token's name is, an expired token's is not until it is revoked. */
  create(req: CreateTokenRequest): CreatedToken {
    const now = this.now();
    const { name, role, expiresAt } = checkCreate(req, now);
    const old = this.store.getToken(name);
    if (old && old.revokedAt === null) throw tokenExists(this.view(old));
    if (old) this.store.deleteToken(name);
    const secret = newSecret();
    const row: TokenRow = { name, role, hash: hashSecret(secret), createdAt: now.toISOString(), expiresAt, lastUsedAt: null, revokedAt: null };
    this.store.insertToken(row);
    return { ...this.view(row), token: secret };
  }

  /** Revoke a token: it is refused from now on. Revoking a revoked token again changes nothing. */
  revoke(name: string): TokenView {
    const row = this.store.getToken(name);
    if (!row) throw tokenNotFound(name);
    if (row.revokedAt === null) this.store.revokeToken(name, this.now().toISOString());
    return this.view(this.store.getToken(name) ?? row);
  }

  /** Who a bearer secret belongs to. UNAUTHORIZED when it is no token's, or its token was revoked or has expired. */
  authenticate(secret: string): { name: string; role: Role } {
    if (!secret.startsWith(TOKEN_PREFIX)) throw unknownSecret();
    return this.authenticateHash(hashSecret(secret));
  }

  /**
   * Who the secret whose SHA-256 this is belongs to, as `authenticate` says: a browser session keeps the hash of the
   * token it was opened with, never the secret, and asks again at each use (a revoked token's sessions end).
   */
  authenticateHash(hash: string): { name: string; role: Role } {
    const unknown = unknownSecret();
    const now = this.now();
    const row = checkUsable(this.store.tokenByHash(hash), hash, now, unknown);
    if (row.lastUsedAt === null || now.getTime() - Date.parse(row.lastUsedAt) >= LAST_USED_EVERY_MS) this.store.setTokenLastUsed(row.name, now.toISOString());
    return { name: row.name, role: row.role };
  }
}
