/**
 * API tokens and roles, pure: the roles in their order, a token's name, its expiry as a user writes it, and what a
 * secret looks like. Hashing, storing and checking tokens is the token service's (src/services/tokens.ts).
 */
import { invalidSpec } from './errors.js';
import { printable, validateName } from './names.js';

/** The roles, weakest first: each one may do everything the ones before it may. */
export const ROLES = ['viewer', 'operator', 'admin'] as const;
export type Role = (typeof ROLES)[number];

/** Whether a caller with role `has` may do what needs role `needs`. */
export function roleAllows(has: Role, needs: Role): boolean {
  return ROLES.indexOf(has) >= ROLES.indexOf(needs);
}

export function validateRole(field: string, value: unknown): Role {
  if (typeof value === 'string' && (ROLES as readonly string[]).includes(value)) return value as Role;
  const shown = typeof value === 'string' ? `"${printable(value)}"` : JSON.stringify(value) ?? String(value);
  throw invalidSpec(field, `${shown} is not a role: use viewer (read only), operator (instances and volumes) or admin (the host)`);
}

/** Every secret starts with this, so a leaked one is recognisable (secret scanners, logs). */
export const TOKEN_PREFIX = 'corral_';

/** What the audit log calls the callers that have no token name: never a token's name. */
export const RESERVED_TOKEN_NAMES = ['token-file', 'unix-socket'] as const;

/** A token's name: a DNS label, as instance names are, and not one of the reserved names. */
export function validateTokenName(field: string, value: unknown): string {
  const name = validateName(field, value);
  if ((RESERVED_TOKEN_NAMES as readonly string[]).includes(name)) {
    throw invalidSpec(field, `"${name}" is reserved (the audit log names the token file's token and the unix socket so); choose another name`);
  }
  return name;
}

const UNIT_MS: Record<string, number> = { m: 60_000, h: 3_600_000, d: 86_400_000, w: 7 * 86_400_000 };
/** The furthest expiry accepted: 100 years ahead (a Date holds far more, but this is surely a typo). */
const MAX_AHEAD_MS = 100 * 365 * 86_400_000;

/** Whether the date a text starts with is on the calendar (Date.parse takes 2026-02-31 for March 3rd). */
function realDay(text: string): boolean {
  const m = /^(\d{4})-(\d{2})-(\d{2})/.exec(text);
  if (!m) return true;
  const day = new Date(Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3])));
  return day.toISOString().startsWith(m[0]);
}

/**
 * When a token expires, as an ISO time, from what a user wrote: a duration from `now` (`90m`, `12h`, `30d`, `2w`),
 * a date (`2026-12-31`: its start, 00:00 UTC) or a date and time with its zone (`2026-12-31T18:00:00Z`,
 * `...+02:00`). It must lie in the future. INVALID_SPEC on `field` otherwise.
 */
export function parseExpiry(field: string, value: unknown, now: Date): string {
  const how = 'give a duration (90m, 12h, 30d, 2w) or a date (2026-12-31, or 2026-12-31T18:00:00Z with its zone)';
  if (typeof value !== 'string' || value.trim() === '') throw invalidSpec(field, `expected a duration or a date: ${how}`);
  const text = value.trim();
  let at: number;
  const d = /^(\d{1,9})([mhdw])$/.exec(text);
  if (d) {
    const ms = Number(d[1]) * UNIT_MS[d[2]!]!;
    if (ms === 0) throw invalidSpec(field, `"${text}" is no time at all: ${how}`);
    at = now.getTime() + ms;
  } else if (/^\d{4}-\d{2}-\d{2}$/.test(text)) {
    at = Date.parse(`${text}T00:00:00Z`);
  } else if (/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:\d{2})$/i.test(text)) {
    at = Date.parse(text);
  } else if (/^\d{4}-\d{2}-\d{2}T/.test(text)) {
    throw invalidSpec(field, `"${printable(text)}" has no time zone: end it with Z (UTC) or an offset such as +02:00`);
  } else {
    throw invalidSpec(field, `"${printable(text)}" is neither a duration nor a date: ${how}`);
  }
  if (!Number.isFinite(at) || !realDay(text)) throw invalidSpec(field, `"${printable(text)}" is not a real date: ${how}`);
  if (at <= now.getTime()) throw invalidSpec(field, `${new Date(at).toISOString()} is not in the future`);
  if (at - now.getTime() > MAX_AHEAD_MS) throw invalidSpec(field, `"${printable(text)}" is more than 100 years away; leave --expires out for a token that never expires`);
  return new Date(at).toISOString();
}
