/**
 * A cluster's named API tokens, in PostgreSQL (named_tokens, migration 9): the contract of a single daemon's
 * TokenService (src/services/tokens.ts, whose checks, views and refusals these share), held where every controller
 * sees it at once: a token made on one controller is good on all of them, and a revoke refuses it on all of them
 * from their next request (nothing is cached). Every time is the database's clock (now()), as in cluster-store.ts.
 * A bearer secret is also looked up among the controllers' own token files (api_tokens): those are admins, named
 * "token-file" as a daemon names its own, and are neither listed nor revoked here.
 */
import type pg from 'pg';
import { CorralError } from '../core/errors.js';
import type { Role } from '../core/tokens.js';
import type { TokenRow } from '../store/store.js';
import { TOKEN_FILE_CALLER, type Caller } from '../api/auth.js';
import type { TokenApi } from '../api/routes-auth.js';
import {
  checkCreate, checkUsable, hashSecret, LAST_USED_EVERY_MS, newSecret, tokenExists, tokenNotFound, tokenView,
  type CreatedToken, type CreateTokenRequest, type TokenView,
} from '../services/tokens.js';
import { queryPg } from './pg-errors.js';

interface TokenDbRow {
  name: string; role: Role; hash: string; created_at: Date; expires_at: Date | null; last_used_at: Date | null; revoked_at: Date | null;
  /** now() of the statement that read the row */
  db_now: Date;
}

const COLUMNS = 'name, role, hash, created_at, expires_at, last_used_at, revoked_at, now() AS db_now';

const iso = (d: Date | null): string | null => (d === null ? null : d.toISOString());

function tokenRow(r: TokenDbRow): TokenRow {
  return {
    name: r.name, role: r.role, hash: r.hash, createdAt: r.created_at.toISOString(), expiresAt: iso(r.expires_at),
    lastUsedAt: iso(r.last_used_at), revokedAt: iso(r.revoked_at),
  };
}

const view = (r: TokenDbRow): TokenView => tokenView(tokenRow(r), r.db_now);

const UNKNOWN = 'the bearer token is not valid: it is not one of this cluster\'s (a controller\'s token file, $CORRAL_DATA_DIR/token on a controller host, or a token from `corral token create`)';

export class ClusterTokens implements TokenApi {
  constructor(private readonly pool: pg.Pool) {}

  private q<R extends pg.QueryResultRow>(sql: string, params: unknown[] = []): Promise<pg.QueryResult<R>> {
    return queryPg<R>(this.pool, sql, params);
  }

  async list(): Promise<TokenView[]> {
    return (await this.q<TokenDbRow>(`SELECT ${COLUMNS} FROM named_tokens ORDER BY name`)).rows.map(view);
  }

  /**
   * A new token, made by `by`. Its name must be free: a revoked token's is (its row is taken over, in the same
   * statement that checks it was revoked, so of two controllers racing for a name one wins), an expired one's is
   * not until it is revoked.
   */
  async create(req: CreateTokenRequest, by: Caller | null): Promise<CreatedToken> {
    const now = (await this.q<{ now: Date }>('SELECT now()')).rows[0]!.now;
    const c = checkCreate(req, now);
    const secret = newSecret();
    const r = await this.q<TokenDbRow>(
      `INSERT INTO named_tokens (name, role, hash, created_by, expires_at) VALUES ($1, $2, $3, $4, $5)
       ON CONFLICT (name) DO UPDATE SET role = EXCLUDED.role, hash = EXCLUDED.hash, created_at = now(), created_by = EXCLUDED.created_by,
         expires_at = EXCLUDED.expires_at, last_used_at = NULL, revoked_at = NULL
       WHERE named_tokens.revoked_at IS NOT NULL
       RETURNING ${COLUMNS}`, [c.name, c.role, hashSecret(secret), by?.who ?? null, c.expiresAt]);
    const made = r.rows[0];
    if (!made) {
      const old = await this.get(c.name);
      throw old ? tokenExists(view(old)) : new CorralError('ALREADY_EXISTS', `token "${c.name}" already exists`, { field: 'name', name: c.name });
    }
    return { ...view(made), token: secret };
  }

  private async get(name: string): Promise<TokenDbRow | null> {
    return (await this.q<TokenDbRow>(`SELECT ${COLUMNS} FROM named_tokens WHERE name = $1`, [name])).rows[0] ?? null;
  }

  /** Revoke a token: every controller refuses it from its next request. Revoking a revoked token changes nothing. */
  async revoke(name: string): Promise<TokenView> {
    await this.q('UPDATE named_tokens SET revoked_at = now() WHERE name = $1 AND revoked_at IS NULL', [name]);
    const row = await this.get(name);
    if (!row) throw tokenNotFound(name);
    return view(row);
  }

  /**
   * Who a bearer secret belongs to: a controller's token file (an admin) or a named token that is neither revoked
   * nor expired. UNAUTHORIZED otherwise, as a daemon says it. The last use is written at most once a minute.
   */
  async authenticate(secret: string): Promise<Caller> {
    return this.authenticateHash(hashSecret(secret));
  }

  /** authenticate, by the SHA-256 of the secret (what a web console session keeps of the token it was opened with). */
  async authenticateHash(hash: string): Promise<Caller> {
    const r = await this.q<TokenDbRow & { controller: boolean }>(
      `SELECT true AS controller, name, 'admin' AS role, hash, created_at, NULL::timestamptz AS expires_at, NULL::timestamptz AS last_used_at,
         NULL::timestamptz AS revoked_at, now() AS db_now FROM api_tokens WHERE hash = $1
       UNION ALL
       SELECT false, ${COLUMNS} FROM named_tokens WHERE hash = $1`, [hash]);
    const found = r.rows[0];
    if (found?.controller) return TOKEN_FILE_CALLER;
    const row = checkUsable(found ? tokenRow(found) : null, hash, found?.db_now ?? new Date(), new CorralError('UNAUTHORIZED', UNKNOWN));
    if (row.lastUsedAt === null || found!.db_now.getTime() - Date.parse(row.lastUsedAt) >= LAST_USED_EVERY_MS) {
      await this.q('UPDATE named_tokens SET last_used_at = now() WHERE name = $1', [row.name]);
    }
    return { who: row.name, role: row.role };
  }
}
