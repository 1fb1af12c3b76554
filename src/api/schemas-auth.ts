/** Schemas of /v1/tokens (named API tokens and their roles) and /v1/audit (the audit log). */
import { Type, type Static } from '@sinclair/typebox';
import { ROLES } from '../core/tokens.js';
import { literals } from '../core/spec-schema.js';
import { nullable } from './schemas-common.js';

export const RoleSchema = literals(ROLES);

export const CreateTokenBody = Type.Object(
  {
    name: Type.String({ description: 'DNS label: a-z, 0-9 and -, 1..63 characters (not token-file or unix-socket)' }),
    role: Type.String({ description: 'viewer (reads and the event stream), operator (instances, their devices and consoles, volumes) or admin (also the host: passthrough, SR-IOV, networks, images; tokens; the audit log)' }),
    expires: Type.Optional(Type.String({ description: 'a duration (90m, 12h, 30d, 2w) or a date (2026-12-31: 00:00 UTC; or 2026-12-31T18:00:00Z with a zone); left out: never' })),
  },
  { additionalProperties: false },
);
export type CreateTokenBody = Static<typeof CreateTokenBody>;

const tokenFields = {
  name: Type.String(),
  role: RoleSchema,
  status: literals(['active', 'expired', 'revoked'] as const),
  createdAt: Type.String(),
  expiresAt: nullable(Type.String(), 'when it stops being accepted; null: never'),
  lastUsedAt: nullable(Type.String(), 'the last request it made (to the minute); null: never used'),
  revokedAt: nullable(Type.String(), 'when it was revoked'),
};

/** A token as listed: never its secret, never its hash. */
export const Token = Type.Object(tokenFields, { title: 'Token' });
export type Token = Static<typeof Token>;
export const TokenList = Type.Object({ tokens: Type.Array(Token) });

/** The reply of a create: the only time the secret is shown. */
export const CreatedToken = Type.Object(
  { ...tokenFields, token: Type.String({ description: 'the secret (corral_...): send it as Authorization: Bearer; it is not stored and cannot be shown again' }) },
  { title: 'CreatedToken' },
);
export type CreatedToken = Static<typeof CreatedToken>;

export const AuditEntry = Type.Object(
  {
    time: Type.String({ description: 'when the request came in' }),
    who: nullable(Type.String(), 'the token\'s name, "token-file" or "unix-socket"; null: no valid token was shown'),
    role: nullable(RoleSchema),
    via: literals(['unix', 'tcp'] as const),
    peer: nullable(Type.String(), 'the client\'s address (TCP)'),
    method: Type.String(),
    path: Type.String({ description: 'the URL path, without the query string' }),
    resource: nullable(Type.String(), 'the instance, volume, network, image or token named'),
    status: Type.Integer({ description: 'the HTTP status answered (101: a console websocket opened)' }),
    code: nullable(Type.String(), 'the error code, when it failed'),
    ms: Type.Number({ description: 'how long it took' }),
  },
  { title: 'AuditEntry' },
);
export type AuditEntry = Static<typeof AuditEntry>;
export const AuditList = Type.Object({ entries: Type.Array(AuditEntry, { description: 'oldest first' }) });

export const AuditQuery = Type.Object(
  { limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 10_000, default: 100, description: 'how many of the latest entries (default 100)' })) },
  { additionalProperties: false },
);

// ---- browser sessions of the web console (POST/GET/DELETE /v1/session) ----

export const LoginBody = Type.Object(
  { token: Type.String({ minLength: 1, maxLength: 4096, description: 'an API token: the token file\'s, or one from `corral token create`' }) },
  { additionalProperties: false },
);

/** Who a session (or a bearer token) is, and the session's CSRF token: never the session id, which is in the cookie only. */
export const Session = Type.Object(
  {
    who: Type.String({ description: 'the token\'s name, or token-file' }),
    role: RoleSchema,
    csrf: nullable(Type.String(), 'send it in the x-corral-csrf header with every request that changes something; null when the caller showed a bearer token, not a session cookie'),
    createdAt: nullable(Type.String()),
    expiresAt: nullable(Type.String(), 'when the session ends unless it is used before (an hour idle; 12 hours at most)'),
  },
  { title: 'Session' },
);
export type Session = Static<typeof Session>;

export const LoggedOut = Type.Object({ ended: Type.Boolean({ description: 'whether a session was ended (false: the cookie named none)' }) });
