/**
 * Who may do what through a controller, as on a single daemon's TCP API (the same hooks: src/api/auth.ts, the
 * same table: src/api/roles.ts, the same audit lines: src/api/audit.ts):
 * - every request shows a bearer token: a controller's token file (admin, "token-file") or a named token of the
 *   cluster (cluster-tokens.ts) with its role; none, or an unknown, revoked or expired one, is UNAUTHORIZED;
 * - a role below what the route needs is FORBIDDEN. The controller's own routes are in the table; a call it
 *   forwards to an agent (everything under /v1/instances/NAME, and a host's own resources: controller-per-host.ts)
 *   is checked by the route the agent would match (pathRule), body included (an SR-IOV NIC needs admin), since the
 *   agent itself takes the controller for an admin;
 *   a forwarded path that matches no route needs admin (fail closed);
 * - a request without a bearer token may be let in by a web console session's cookie (controller-web.ts), with the
 *   daemon's CSRF and origin checks; the console's page, files and login are open (anonymous in roles.ts);
 * - an agent's routes (join, heartbeat, the CA) are marked AGENT_ROUTE and check their callers themselves;
 * - every state-changing and every refused request is written to the cluster's audit table before it is answered.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { CorralError } from '../core/errors.js';
import { installRoleChecks, type Caller, type RuleOf } from '../api/auth.js';
import { installAudit } from '../api/audit.js';
import { pathRule, routeRule } from '../api/roles.js';
import type { AuditSink } from '../services/audit.js';
import type { ClusterTokens } from './cluster-tokens.js';

/** The options of a route that checks its caller itself (an agent's client certificate, a join token) or is open. */
export const AGENT_ROUTE = { config: { agentRoute: true } };

export const isAgentRoute = (req: FastifyRequest): boolean => (req.routeOptions.config as { agentRoute?: boolean } | undefined)?.agentRoute === true;

const NO_TOKEN = 'a valid bearer token is required: a controller\'s token file ($CORRAL_DATA_DIR/token on a controller host), or a token from `corral token create`';

async function identify(tokens: ClusterTokens, req: FastifyRequest, cookie?: (req: FastifyRequest) => Promise<Caller | null>): Promise<Caller> {
  // a web console's session (controller-web.ts), only when the request shows no bearer token, as on a daemon
  if (req.headers.authorization === undefined && cookie) {
    const bySession = await cookie(req);
    if (bySession) return bySession;
  }
  const m = /^Bearer (\S+)$/.exec(req.headers.authorization ?? '');
  if (!m) throw new CorralError('UNAUTHORIZED', NO_TOKEN);
  return tokens.authenticate(m[1]!);
}

/** The rule of a request: its route's, or for a call forwarded to an agent (a wildcard route), the agent's route's. */
const controllerRule: RuleOf = (req) => {
  const url = req.routeOptions.url;
  if (url === undefined) return null;
  if (!url.endsWith('*')) return { route: `${req.method} ${url}`, rule: routeRule(req.method, url) };
  const path = req.url.split('?')[0]!;
  return pathRule(req.method, path) ?? { route: `${req.method} ${path}`, rule: routeRule(req.method, url) };
};

/** Install the hooks on a controller's API, before its routes. */
export function installControllerAuth(app: FastifyInstance, d: { tokens: ClusterTokens; audit: AuditSink; cookie?: (req: FastifyRequest) => Promise<Caller | null> }): void {
  // the audit's onRequest hook (the client's address) before the check's, which may refuse
  installAudit(app, d.audit, 'tcp', { beforeReply: true });
  // the web console's page, its files and its login need no caller (roles.ts `anyone`)
  const open = (req: FastifyRequest): boolean => isAgentRoute(req) || controllerRule(req)?.rule.anonymous === true;
  installRoleChecks(app, (req) => (open(req) ? null : identify(d.tokens, req, d.cookie)), controllerRule);
}
