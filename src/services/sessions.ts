/**
 * Browser sessions of the web console: what every store of them does (WebSessions: a daemon's, here, and a cluster
 * controller's, in PostgreSQL: src/cluster/cluster-sessions.ts), and a daemon's store.
 * A daemon keeps its sessions in its memory only (one process; a restart logs everyone out). Logging in
 * with an API token makes a session: a random 256-bit id (the cookie; the map is keyed by its SHA-256, so not even
 * the daemon's memory holds ids to compare), a random CSRF token, and who the token said the caller is. The token
 * itself is never kept: a named token's session keeps a check that asks the token service again (by the secret's
 * SHA-256) at every use and every sweep, so revoking the token, or its expiry, ends its sessions. A session also
 * ends after IDLE_MS without a request, after MAX_AGE_MS in all, and at logout. Whoever holds a connection opened
 * under a session (an event stream, a console websocket) is told when the session ends, and cuts it.
 */
import { createHash, randomBytes } from 'node:crypto';
import { CorralError } from '../core/errors.js';
import type { Role } from '../core/tokens.js';

export const SESSION_IDLE_MS = 60 * 60_000;
export const SESSION_MAX_AGE_MS = 12 * 60 * 60_000;
/** the most sessions kept at once; a login past it ends the one idle the longest */
export const MAX_SESSIONS = 10_000;
/** how often a store sweeps: ends what may no longer be used, and cuts what such sessions hold open */
export const SESSION_SWEEP_MS = 30_000;
/** why a login past MAX_SESSIONS ended another session */
export const TOO_MANY_SESSIONS = 'too many sessions: the one idle the longest was ended';
/** how many ended sessions are remembered, to tell their cookies why (the oldest are forgotten first) */
const REMEMBER_ENDED = 1000;

export interface SessionCaller {
  who: string;
  role: Role;
}

/** A session as the API shows it to its own browser (GET /v1/session): never its id. */
export interface SessionInfo extends SessionCaller {
  csrf: string;
  createdAt: string;
  /** when it ends unless used before: the idle limit from its last use, capped by its whole life */
  expiresAt: string;
}

/** What a session keeps of the token it was opened with (never the token itself). */
export interface SessionToken {
  /** the SHA-256 of the token's secret (null: a daemon's token file, which is never revoked) */
  hash: string | null;
  /** throws (UNAUTHORIZED) once the token may no longer be used (a daemon's store asks it at each use and sweep) */
  check: () => void;
}

/** A new session: its id goes into the cookie and nowhere else. */
export interface MadeSession {
  id: string;
  info: SessionInfo;
  maxAgeS: number;
}

type Awaitable<T> = T | Promise<T>;

/**
 * The web console's sessions, as the API's login, auth hook and logout use them (src/api/sessions.ts), whether a
 * daemon keeps them in its memory (SessionStore) or the controllers of a cluster in its PostgreSQL (ClusterSessions).
 */
export interface WebSessions {
  /** A new session for `caller`, opened with `token`. */
  create(caller: SessionCaller, token: SessionToken): Awaitable<MadeSession>;
  /**
   * The live session with this id, marked as used now unless `admit` (given it first) throws; UNAUTHORIZED (saying
   * why) when there is none: never made, logged out, idle too long, too old, or its token revoked or expired.
   */
  use(id: string, admit?: (s: SessionInfo) => void): Awaitable<SessionInfo>;
  /** Call `fn` once when the session ends (logout, expiry, its token revoked); the returned function cancels that. */
  onEnd(id: string, fn: (why: string) => void): () => void;
  /** End a session (logout); false when there was none. */
  end(id: string, why?: string): Awaitable<boolean>;
  /** sweep now and then, until stop */
  start(): void;
  stop(): void;
}

const OPEN_TOKEN: SessionToken = { hash: null, check: () => undefined };

interface Session extends SessionCaller {
  csrf: string;
  createdAt: number;
  lastSeen: number;
  /** throws (UNAUTHORIZED) once the token the session was opened with may no longer be used */
  check: () => void;
  ends: Set<(why: string) => void>;
}

/** What a store keys a session by: the SHA-256 of its id (the cookie's value), hex. */
export const sessionKey = (id: string): string => createHash('sha256').update(id, 'utf8').digest('hex');

export const sessionEnded = (why: string): CorralError => new CorralError('UNAUTHORIZED', `the browser session has ended (${why}): log in again`, { reason: 'session-ended' });

export class SessionStore implements WebSessions {
  private readonly sessions = new Map<string, Session>();
  /** why each recently ended session ended (by the SHA-256 of its id), for whoever shows its cookie next */
  private readonly ended = new Map<string, string>();
  private readonly now: () => number;
  private readonly idleMs: number;
  private readonly maxAgeMs: number;
  private readonly max: number;
  private timer: NodeJS.Timeout | undefined;

  constructor(opts: { now?: () => number; idleMs?: number; maxAgeMs?: number; max?: number } = {}) {
    this.now = opts.now ?? Date.now;
    this.idleMs = opts.idleMs ?? SESSION_IDLE_MS;
    this.maxAgeMs = opts.maxAgeMs ?? SESSION_MAX_AGE_MS;
    this.max = opts.max ?? MAX_SESSIONS;
  }

  get size(): number {
    return this.sessions.size;
  }

  /** A new session for `caller`; its id goes into the cookie and nowhere else. */
  create(caller: SessionCaller, token: SessionToken = OPEN_TOKEN): MadeSession {
    while (this.sessions.size >= this.max) {
      let oldest: [string, Session] | undefined;
      for (const e of this.sessions) if (!oldest || e[1].lastSeen < oldest[1].lastSeen) oldest = e;
      if (!oldest) break;
      this.endKey(oldest[0], TOO_MANY_SESSIONS);
    }
    const id = randomBytes(32).toString('base64url');
    const t = this.now();
    const s: Session = { who: caller.who, role: caller.role, csrf: randomBytes(32).toString('base64url'), createdAt: t, lastSeen: t, check: token.check, ends: new Set() };
    this.sessions.set(sessionKey(id), s);
    return { id, info: this.info(s), maxAgeS: this.maxAgeMs / 1000 };
  }

  private info(s: Session): SessionInfo {
    const end = Math.min(s.lastSeen + this.idleMs, s.createdAt + this.maxAgeMs);
    return { who: s.who, role: s.role, csrf: s.csrf, createdAt: new Date(s.createdAt).toISOString(), expiresAt: new Date(end).toISOString() };
  }

  /** Why a session may no longer be used, or null. */
  private deadReason(s: Session, t: number): string | null {
    if (t - s.lastSeen >= this.idleMs) return 'idle too long';
    if (t - s.createdAt >= this.maxAgeMs) return 'it reached its longest life';
    try {
      s.check();
    } catch (e) {
      return e instanceof CorralError ? e.message.replace(/; ask an admin.*$/, '') : 'its token can no longer be used';
    }
    return null;
  }

  /**
   * The live session with this id, marked as used now unless `admit` throws; UNAUTHORIZED (saying why) when there
   * is none: never made, logged out, idle too long, too old, or its token revoked or expired (which ends it now).
   */
  use(id: string, admit?: (s: SessionInfo) => void): SessionInfo {
    const k = sessionKey(id);
    const s = this.sessions.get(k);
    if (!s) throw sessionEnded(this.ended.get(k) ?? 'logged out, expired, or the daemon restarted');
    const t = this.now();
    const dead = this.deadReason(s, t);
    if (dead) {
      this.endKey(k, dead);
      throw sessionEnded(dead);
    }
    admit?.(this.info(s));
    s.lastSeen = t;
    return this.info(s);
  }

  /** Call `fn` once when the session ends (logout, expiry, its token revoked); the returned function cancels that. */
  onEnd(id: string, fn: (why: string) => void): () => void {
    const s = this.sessions.get(sessionKey(id));
    if (!s) {
      fn('the session is gone');
      return () => undefined;
    }
    s.ends.add(fn);
    return () => s.ends.delete(fn);
  }

  /** End a session (logout); false when there was none. */
  end(id: string, why = 'logged out'): boolean {
    return this.endKey(sessionKey(id), why);
  }

  private endKey(k: string, why: string): boolean {
    const s = this.sessions.get(k);
    if (!s) return false;
    this.sessions.delete(k);
    this.ended.set(k, why);
    if (this.ended.size > REMEMBER_ENDED) this.ended.delete(this.ended.keys().next().value!);
    for (const fn of [...s.ends]) {
      try {
        fn(why);
      } catch {
        /* a listener's failure ends nothing else */
      }
    }
    s.ends.clear();
    return true;
  }

  /** End every session that may no longer be used (idle, too old, its token revoked or expired); how many ended. */
  sweep(): number {
    const t = this.now();
    let n = 0;
    for (const [k, s] of [...this.sessions]) {
      const dead = this.deadReason(s, t);
      if (dead && this.endKey(k, dead)) n++;
    }
    return n;
  }

  /** Sweep every 30 s (so that a revoked token's open streams are cut without waiting for its next request). */
  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => this.sweep(), SESSION_SWEEP_MS);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
    for (const k of [...this.sessions.keys()]) this.endKey(k, 'the daemon is stopping');
  }
}
