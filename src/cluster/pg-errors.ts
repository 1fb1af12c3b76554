/**
 * PostgreSQL's failures as Corral's coded errors, in one place: which errors mean the database cannot be
 * reached (refused or timed-out connections, a server shutting down or starting, a dropped connection, a
 * refused login or a missing database) and become DATABASE_UNAVAILABLE, and the one way a connection URL is
 * shown in a message: without its password.
 */
import { CorralError } from '../core/errors.js';
import type pg from 'pg';

/** SQLSTATEs: unique_violation, check_violation, invalid_text_representation (a bad uuid) */
export const UNIQUE_VIOLATION = '23505';
export const CHECK_VIOLATION = '23514';
export const FOREIGN_KEY_VIOLATION = '23503';
export const INVALID_TEXT = '22P02';

/** The SQLSTATE (e.g. 23505) or Node errno code (ECONNREFUSED) of an error, or ''. */
export function errorCode(e: unknown): string {
  const code = (e as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : '';
}

/** The constraint a PostgreSQL error names (e.g. hosts_pkey), or ''. */
export function constraintOf(e: unknown): string {
  const c = (e as { constraint?: unknown } | null)?.constraint;
  return typeof c === 'string' ? c : '';
}

const NODE_NET_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'EPIPE']);
/** admin_shutdown, crash_shutdown, cannot_connect_now; invalid_authorization_specification, invalid_password; invalid_catalog_name */
const SQLSTATES = new Set(['57P01', '57P02', '57P03', '28000', '28P01', '3D000']);

/** Whether an error says the database cannot be reached or went away (rather than that a statement failed). */
export function isUnavailable(e: unknown): boolean {
  const code = errorCode(e);
  if (NODE_NET_CODES.has(code) || SQLSTATES.has(code) || code.startsWith('08')) return true;
  const msg = e instanceof Error ? e.message : '';
  // pg's own words for a connection that timed out or ended under a query
  return /timeout expired|Connection terminated|connection timeout|Client has encountered a connection error|ended unexpectedly/i.test(msg);
}

/** A connection URL fit for a message: its password replaced by ***; the string itself when it is no URL. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    for (const k of [...u.searchParams.keys()]) if (/^pass/i.test(k)) u.searchParams.set(k, '***');
    return u.toString();
  } catch {
    return url.replace(/password\s*=\s*\S+/gi, 'password=***');
  }
}

/** The password a URL holds, or '' (to strip it from any message that might echo it). */
function passwordOf(url: string): string {
  try {
    const u = new URL(url);
    return decodeURIComponent(u.password) || u.searchParams.get('password') || '';
  } catch {
    return /password\s*=\s*(\S+)/i.exec(url)?.[1] ?? '';
  }
}

/** The error's own message, with the URL's password (if it were ever echoed) blanked. */
export function reasonOf(e: unknown, url = ''): string {
  if (e instanceof AggregateError && e.errors.length > 0) return [...new Set(e.errors.map((x) => reasonOf(x, url)))].join('; ');
  const msg = e instanceof Error ? e.message || errorCode(e) || e.name : String(e);
  const pw = url ? passwordOf(url) : '';
  return pw ? msg.split(pw).join('***') : msg;
}

/** DATABASE_UNAVAILABLE for an error that says so (see isUnavailable), naming the URL without its password. */
export function unavailable(e: unknown, url?: string): CorralError {
  const where = url ? `PostgreSQL at ${redactUrl(url)}` : 'PostgreSQL';
  return new CorralError('DATABASE_UNAVAILABLE', `cannot reach ${where}: ${reasonOf(e, url)}`,
    { ...(url ? { database: redactUrl(url) } : {}), reason: errorCode(e) || null });
}

/** An error from a statement: DATABASE_UNAVAILABLE when the database went away, the error itself otherwise. */
export function fromPg(e: unknown): unknown {
  if (e instanceof CorralError) return e;
  return isUnavailable(e) ? unavailable(e) : e;
}

/** One statement on a pool; a database that went away is DATABASE_UNAVAILABLE (the stores' `q`). */
export async function queryPg<R extends pg.QueryResultRow>(pool: Pick<pg.Pool, 'query'>, sql: string, params: unknown[] = []): Promise<pg.QueryResult<R>> {
  try {
    return await pool.query<R>(sql, params);
  } catch (e) {
    throw fromPg(e);
  }
}
