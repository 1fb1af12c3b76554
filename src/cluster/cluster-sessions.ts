/**
 * A cluster's web console sessions, in its PostgreSQL (web_sessions, migration 15), so that several controllers
 * behind one name act as one: a session made on one controller is taken by every other, survives a controller's
 * restart, and a logout on any of them ends it on all. The same contract as a daemon's in-memory store
 * (WebSessions, src/services/sessions.ts): a random 256-bit id in the cookie, of which only the SHA-256 is stored,
 * a CSRF token, who the token said the caller is, and the SHA-256 of that token (never the token).
 *
 * Each use is one indexed read, with no cache: it reads the session and, in the same statement, whether its token
 * may still be used (a controller's token file in api_tokens, or a named token neither revoked nor expired). So a
 * logout, a revoke or an expiry is refused on every controller from its next request, as a bearer token is. The
 * last use (which moves the idle limit on) is written at most once a minute, with the named token's last use.
 * What a session holds open (an event stream, a console websocket) on a controller is cut at once when that
 * controller ends it, and otherwise by the sweep of every controller that holds something of it (every 30 s), which
 * also deletes the rows an hour after they ended or expired. Every time is the database's clock (now()).
 */
import { randomBytes } from 'node:crypto';
import type pg from 'pg';
import { CorralError } from '../core/errors.js';
import type { Role } from '../core/tokens.js';
import {
  MAX_SESSIONS, SESSION_IDLE_MS, SESSION_MAX_AGE_MS, SESSION_SWEEP_MS, sessionEnded, sessionKey, TOO_MANY_SESSIONS,
  type MadeSession, type SessionCaller, type SessionInfo, type SessionToken, type WebSessions,
} from '../services/sessions.js';
import { queryPg } from './pg-errors.js';

/** a use writes the session's last use when the one stored is older than this */
export const SESSION_TOUCH_MS = 60_000;
/** how long an ended or expired session's row is kept, to tell its cookie why */
const KEEP_ENDED_MS = 60 * 60_000;
const GONE = 'logged out or expired';

interface SessionRow {
  id_hash: string;
  who: string;
  role: Role;
  csrf: string;
  created_at: Date;
  last_seen: Date;
  expires_at: Date;
  ended_at: Date | null;
  end_reason: string | null;
  /** now() of the statement that read the row */
  db_now: Date;
  /** the token it was opened with: a controller's token file, or a named token (and whether it is revoked, when it expires) */
  controller_token: boolean;
  named_token: boolean;
  token_revoked_at: Date | null;
  token_expires_at: Date | null;
}

const SELECT = `SELECT s.id_hash, s.who, s.role, s.csrf, s.created_at, s.last_seen, s.expires_at, s.ended_at, s.end_reason, now() AS db_now,
    EXISTS (SELECT 1 FROM api_tokens a WHERE a.hash = s.token_hash) AS controller_token,
    n.name IS NOT NULL AS named_token, n.revoked_at AS token_revoked_at, n.expires_at AS token_expires_at
  FROM web_sessions s LEFT JOIN named_tokens n ON n.hash = s.token_hash`;

/** Why a session may no longer be used, or null. */
function deadReason(r: SessionRow, maxAgeMs: number): string | null {
  if (r.ended_at !== null) return r.end_reason ?? 'logged out';
  const now = r.db_now.getTime();
  if (now - r.created_at.getTime() >= maxAgeMs) return 'it reached its longest life';
  if (now >= r.expires_at.getTime()) return 'idle too long';
  if (r.controller_token) return null;
  if (!r.named_token) return 'its token is no longer one of the cluster\'s';
  if (r.token_revoked_at !== null) return `the bearer token was revoked at ${r.token_revoked_at.toISOString()}`;
  if (r.token_expires_at !== null && r.token_expires_at.getTime() <= now) return `the bearer token expired at ${r.token_expires_at.toISOString()}`;
  return null;
}

export class ClusterSessions implements WebSessions {
  /** who holds something open under each session on this controller (by the SHA-256 of its id) */
  private readonly listeners = new Map<string, Set<(why: string) => void>>();
  private readonly idleMs: number;
  private readonly maxAgeMs: number;
  private readonly max: number;
  private timer: NodeJS.Timeout | undefined;
  private sweeping = false;

  constructor(private readonly pool: pg.Pool, opts: { idleMs?: number; maxAgeMs?: number; max?: number } = {}) {
    this.idleMs = opts.idleMs ?? SESSION_IDLE_MS;
    this.maxAgeMs = opts.maxAgeMs ?? SESSION_MAX_AGE_MS;
    this.max = opts.max ?? MAX_SESSIONS;
  }

  private q<R extends pg.QueryResultRow>(sql: string, params: unknown[] = []): Promise<pg.QueryResult<R>> {
    return queryPg<R>(this.pool, sql, params);
  }

  private info(r: Pick<SessionRow, 'who' | 'role' | 'csrf' | 'created_at' | 'expires_at'>): SessionInfo {
    return { who: r.who, role: r.role, csrf: r.csrf, createdAt: r.created_at.toISOString(), expiresAt: r.expires_at.toISOString() };
  }

  /** A new session; past the most sessions kept, the ones idle the longest are ended (on every controller). */
  async create(caller: SessionCaller, token: SessionToken): Promise<MadeSession> {
    if (token.hash === null) throw new CorralError('INTERNAL', 'a cluster\'s web session needs the SHA-256 of the token it is opened with');
    const id = randomBytes(32).toString('base64url');
    const r = await this.q<SessionRow>(
      `INSERT INTO web_sessions (id_hash, token_hash, who, role, csrf, expires_at) VALUES ($1, $2, $3, $4, $5, now() + $6 * interval '1 millisecond')
       RETURNING who, role, csrf, created_at, expires_at`,
      [sessionKey(id), token.hash, caller.who, caller.role, randomBytes(32).toString('base64url'), Math.min(this.idleMs, this.maxAgeMs)]);
    const over = await this.q<{ id_hash: string }>(
      `UPDATE web_sessions SET ended_at = now(), end_reason = $2 WHERE id_hash IN
         (SELECT id_hash FROM web_sessions WHERE ended_at IS NULL AND expires_at > now() ORDER BY last_seen DESC, created_at DESC OFFSET $1)
       RETURNING id_hash`, [this.max, TOO_MANY_SESSIONS]);
    for (const o of over.rows) this.tell(o.id_hash, TOO_MANY_SESSIONS);
    return { id, info: this.info(r.rows[0]!), maxAgeS: this.maxAgeMs / 1000 };
  }

  async use(id: string, admit?: (s: SessionInfo) => void): Promise<SessionInfo> {
    const k = sessionKey(id);
    const r = (await this.q<SessionRow>(`${SELECT} WHERE s.id_hash = $1`, [k])).rows[0];
    if (!r) throw sessionEnded(GONE);
    const dead = deadReason(r, this.maxAgeMs);
    if (dead !== null) {
      await this.endKey(k, dead, r.ended_at === null);
      throw sessionEnded(dead);
    }
    admit?.(this.info(r));
    if (r.db_now.getTime() - r.last_seen.getTime() < SESSION_TOUCH_MS) return this.info(r);
    const touched = await this.q<SessionRow>(
      `WITH s AS (
         UPDATE web_sessions SET last_seen = now(), expires_at = least(now() + $2 * interval '1 millisecond', created_at + $3 * interval '1 millisecond')
         WHERE id_hash = $1 AND ended_at IS NULL RETURNING who, role, csrf, created_at, expires_at, token_hash
       ), t AS (
         UPDATE named_tokens SET last_used_at = now() WHERE hash IN (SELECT token_hash FROM s)
       )
       SELECT who, role, csrf, created_at, expires_at FROM s`, [k, this.idleMs, this.maxAgeMs]);
    return this.info(touched.rows[0] ?? r);
  }

  onEnd(id: string, fn: (why: string) => void): () => void {
    const k = sessionKey(id);
    let held = this.listeners.get(k);
    if (!held) this.listeners.set(k, (held = new Set()));
    const set = held;
    set.add(fn);
    return () => {
      set.delete(fn);
      if (set.size === 0 && this.listeners.get(k) === set) this.listeners.delete(k);
    };
  }

  async end(id: string, why = 'logged out'): Promise<boolean> {
    return this.endKey(sessionKey(id), why, true);
  }

  /** End a session: in the database when `write` (false when it was already), and what it holds open here. */
  private async endKey(k: string, why: string, write: boolean): Promise<boolean> {
    const n = write ? (await this.q('UPDATE web_sessions SET ended_at = now(), end_reason = $2 WHERE id_hash = $1 AND ended_at IS NULL', [k, why])).rowCount ?? 0 : 0;
    this.tell(k, why);
    return n > 0;
  }

  /** Tell who holds something open under the session here that it has ended. */
  private tell(k: string, why: string): void {
    const held = this.listeners.get(k);
    if (!held) return;
    this.listeners.delete(k);
    for (const fn of [...held]) {
      try {
        fn(why);
      } catch {
        /* a listener's failure ends nothing else */
      }
    }
  }

  /**
   * Delete the rows an hour after they ended or expired, and end what this controller holds open under sessions
   * that may no longer be used (logged out on another controller, expired, their token revoked); how many.
   */
  async sweep(): Promise<number> {
    await this.q(`DELETE FROM web_sessions WHERE coalesce(ended_at, expires_at) < now() - $1 * interval '1 millisecond'`, [KEEP_ENDED_MS]);
    const held = [...this.listeners.keys()];
    if (held.length === 0) return 0;
    const rows = new Map((await this.q<SessionRow>(`${SELECT} WHERE s.id_hash = ANY($1)`, [held])).rows.map((r) => [r.id_hash, r]));
    let n = 0;
    for (const k of held) {
      const r = rows.get(k);
      const dead = r ? deadReason(r, this.maxAgeMs) : GONE;
      if (dead === null) continue;
      await this.endKey(k, dead, r !== undefined && r.ended_at === null);
      n++;
    }
    return n;
  }

  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => {
      if (this.sweeping) return;
      this.sweeping = true;
      // the database out of reach ends no session: the next sweep tries again
      this.sweep().catch(() => undefined).finally(() => {
        this.sweeping = false;
      });
    }, SESSION_SWEEP_MS);
    this.timer.unref();
  }

  /** Stop sweeping and cut what this controller holds open; the sessions themselves live on (for the other controllers, and this one's restart). */
  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
    for (const k of [...this.listeners.keys()]) this.tell(k, 'the controller is stopping');
  }
}
