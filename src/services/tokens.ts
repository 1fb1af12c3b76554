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
const LAST_USED_EVERY_MS = 60_000;

const sha256 = (secret: string): string => createHash('sha256').update(secret, 'utf8').digest('hex');

export class TokenService {
  private readonly now: () => Date;

  constructor(private readonly store: TokenStore, opts: { now?: () => Date } = {}) {
    this.now = opts.now ?? (() => new Date());
  }

  private view(row: TokenRow): TokenView {
    const expired = row.expiresAt !== null && Date.parse(row.expiresAt) <= this.now().getTime();
    const status: TokenStatus = row.revokedAt !== null ? 'revoked' : expired ? 'expired' : 'active';
    return { name: row.name, role: row.role, status, createdAt: row.createdAt, expiresAt: row.expiresAt, lastUsedAt: row.lastUsedAt, revokedAt: row.revokedAt };
  }

  list(): TokenView[] {
    return this.store.listTokens().map((r) => this.view(r));
  }

  /** A new token. Its name must be free: a revoked token's name is, an expired token's is not until it is revoked. */
  create(req: CreateTokenRequest): CreatedToken {
    const name = validateTokenName('name', req.name);
    const role = validateRole('role', req.role);
    const now = this.now();
    const expiresAt = req.expires === undefined || req.expires === null ? null : parseExpiry('expires', req.expires, now);
    const old = this.store.getToken(name);
    if (old && old.revokedAt === null) {
      throw new CorralError('ALREADY_EXISTS', `token "${name}" already exists (${this.view(old).status}); revoke it first (corral token revoke ${name}) or choose another name`, { field: 'name', name });
    }
    if (old) this.store.deleteToken(name);
    const secret = `${TOKEN_PREFIX}${randomBytes(32).toString('base64url')}`;
    const row: TokenRow = { name, role, hash: sha256(secret), createdAt: now.toISOString(), expiresAt, lastUsedAt: null, revokedAt: null };
    this.store.insertToken(row);
    return { ...this.view(row), token: secret };
  }

  /** Revoke a token: it is refused from now on. Revoking a revoked token again changes nothing. */
  revoke(name: string): TokenView {
    const row = this.store.getToken(name);
    if (!row) throw new CorralError('TOKEN_NOT_FOUND', `no token named "${name}"`, { name });
    if (row.revokedAt === null) this.store.revokeToken(name, this.now().toISOString());
    return this.view(this.store.getToken(name) ?? row);
  }

  /**
   * Who a bearer secret belongs to. UNAUTHORIZED when it is no token's, or its token was revoked or has expired
   * (saying which and when, but never a name: the secret is all the caller showed).
   */
  authenticate(secret: string): { name: string; role: Role } {
    const unknown = new CorralError('UNAUTHORIZED', 'the bearer token is not valid: it is not a token this daemon issued');
    if (!secret.startsWith(TOKEN_PREFIX)) throw unknown;
    const hash = sha256(secret);
    const row = this.store.tokenByHash(hash);
    // the lookup is by hash already; comparing the hashes in constant time as well costs nothing
    if (!row || !timingSafeEqual(Buffer.from(row.hash, 'hex'), Buffer.from(hash, 'hex'))) throw unknown;
    const now = this.now();
    if (row.revokedAt !== null) throw new CorralError('UNAUTHORIZED', `the bearer token was revoked at ${row.revokedAt}; ask an admin for a new one`, { reason: 'revoked', at: row.revokedAt });
    if (row.expiresAt !== null && Date.parse(row.expiresAt) <= now.getTime()) {
      throw new CorralError('UNAUTHORIZED', `the bearer token expired at ${row.expiresAt}; ask an admin for a new one`, { reason: 'expired', at: row.expiresAt });
    }
    if (row.lastUsedAt === null || now.getTime() - Date.parse(row.lastUsedAt) >= LAST_USED_EVERY_MS) this.store.setTokenLastUsed(row.name, now.toISOString());
    return { name: row.name, role: row.role };
  }
}
