/**
 * Who is calling, and whether their role may do what they ask. On the unix socket (root only) every caller is
 * "unix-socket", an admin. On TCP every request needs `Authorization: Bearer SECRET`: the token file's token
 * ("token-file", an admin) or a named token (`corral token create`) with its own role; none, or one that is
 * unknown, revoked or expired, is UNAUTHORIZED (401). A role below what the route needs (src/api/roles.ts) is
 * FORBIDDEN (403), naming both roles; routes whose body can ask for more (an SR-IOV NIC) are checked again once
 * the body is parsed.
 */
import { timingSafeEqual } from 'node:crypto';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { CorralError } from '../core/errors.js';
import { roleAllows, type Role } from '../core/tokens.js';
import type { TokenService } from '../services/tokens.js';
import { routeRule, type RouteRule } from './roles.js';

export interface Caller {
  /** the token's name, "token-file" or "unix-socket" */
  who: string;
  role: Role;
}

declare module 'fastify' {
  interface FastifyRequest {
    /** who sent the request, once the auth hook has said (null before, and when no valid token was shown) */
    caller: Caller | null;
  }
}

export const UNIX_SOCKET_CALLER: Caller = { who: 'unix-socket', role: 'admin' };
export const TOKEN_FILE_CALLER: Caller = { who: 'token-file', role: 'admin' };

const NO_TOKEN = 'a valid bearer token is required: the token file $CORRAL_DATA_DIR/token, or a token from `corral token create`';

/** Whether two secrets are the same, compared in constant time. */
export function sameSecret(given: string, expected: string): boolean {
  const a = Buffer.from(given);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}

/** Who a TCP request's Authorization header says it is from; UNAUTHORIZED when it says nothing valid. */
function identify(header: string | undefined, legacyToken: string, tokens: () => TokenService): Caller {
  const m = /^Bearer (\S+)$/.exec(header ?? '');
  if (!m) throw new CorralError('UNAUTHORIZED', NO_TOKEN);
  const secret = m[1]!;
  if (sameSecret(secret, legacyToken)) return TOKEN_FILE_CALLER;
  const t = tokens().authenticate(secret);
  return { who: t.name, role: t.role };
}

export function requireRole(caller: Caller, needs: Role, what: string): void {
  if (roleAllows(caller.role, needs)) return;
  const who = caller.who === TOKEN_FILE_CALLER.who ? 'the token file\'s token' : `the token "${caller.who}"`;
  throw new CorralError('FORBIDDEN', `${what} needs the ${needs} role; ${who} has the ${caller.role} role`, { required: needs, role: caller.role });
}

/** The rule of a request's route, and the route as a refusal names it ("POST /v1/instances/:name/start"). */
export type RuleOf = (req: FastifyRequest) => { route: string; rule: RouteRule } | null;

/** The rule of the route a request matched, by its pattern; null when it matched none (the reply is a 404). */
export const matchedRule: RuleOf = (req) => {
  const url = req.routeOptions.url;
  return url === undefined ? null : { route: `${req.method} ${url}`, rule: routeRule(req.method, url) };
};

/**
 * The hooks that name each request's caller and refuse a role too weak for its route (src/api/roles.ts): first by
 * the route, before the body is read, then by what the body asks for (`escalate`) once it is parsed. `identify`
 * throws UNAUTHORIZED for no valid credential, or says null for a route that checks its caller itself (a cluster
 * agent's heartbeat, its join). Shared by the daemon's TCP API and a cluster controller's.
 */
export function installRoleChecks(app: FastifyInstance, identify: (req: FastifyRequest) => Caller | null | Promise<Caller | null>, ruleOf: RuleOf = matchedRule): void {
  app.decorateRequest('caller', null);
  const rules = new WeakMap<FastifyRequest, RouteRule>();
  app.addHook('onRequest', async (req) => {
    const caller = await identify(req);
    if (caller === null) return;
    req.caller = caller;
    const r = ruleOf(req);
    // no route: nothing to guard, the reply is a 404
    if (!r) return;
    rules.set(req, r.rule);
    requireRole(caller, r.rule.role, r.route);
  });
  app.addHook('preValidation', async (req) => {
    const more = rules.get(req)?.escalate?.(req.body);
    if (more && req.caller) requireRole(req.caller, more.role, more.why);
  });
}

/**
 * Install the hooks on one API. `legacyToken` undefined: the unix socket, every caller an admin. Otherwise TCP:
 * the bearer token decides, `tokens` says who a named token is; on a cluster agent, `peer` first names a caller
 * from the TLS client certificate (a controller's), or says null and the token decides. `cookie`: a request that
 * shows no bearer token may be let in by a web console session's cookie (src/api/sessions.ts), which says who, or
 * null when the request carries none. Routes whose rule is `anonymous` (the console's page, its login) need no
 * caller, and what a request to them shows is not looked at.
 */
export function installAuth(app: FastifyInstance, legacyToken: string | undefined, tokens: () => TokenService, peer?: (req: FastifyRequest) => Caller | null, open: readonly string[] = [], cookie?: (req: FastifyRequest) => Promise<Caller | null>): void {
  if (legacyToken === undefined) {
    app.decorateRequest('caller', null);
    app.addHook('onRequest', async (req) => {
      req.caller = UNIX_SOCKET_CALLER;
    });
    return;
  }
  // fail closed: an empty token would otherwise turn auth off
  if (legacyToken.trim() === '') throw new CorralError('INVALID_CONFIG', 'the TCP API was given an empty bearer token; it is not served without one');
  // a cluster agent's API: a controller's client certificate (verified against the cluster CA) is an admin
  // `open`: routes ("GET /metrics") served without a token when asked (`--metrics-public`); only without credentials
  // shown: a token shown is still checked, so a bad one is refused everywhere
  const isOpen = (req: FastifyRequest): boolean => req.headers.authorization === undefined && open.includes(`${req.method} ${req.routeOptions.url}`);
  const anonymous = (req: FastifyRequest): boolean => matchedRule(req)?.rule.anonymous === true;
  installRoleChecks(app, async (req) => {
    if (isOpen(req) || anonymous(req)) return null;
    const byPeer = peer?.(req);
    if (byPeer) return byPeer;
    if (req.headers.authorization === undefined && cookie) {
      const bySession = await cookie(req);
      if (bySession) return bySession;
    }
    return identify(req.headers.authorization, legacyToken, tokens);
  });
}
