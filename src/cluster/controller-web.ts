/**
 * A cluster controller's web console: the very bundle a daemon serves (src/api/web.ts: `/`, `/assets/*`) and its
 * login (src/api/sessions.ts: POST/GET/DELETE /v1/session, the cookie HttpOnly, Secure, SameSite=Strict; CSRF and
 * origin checks on every request a cookie lets in), with the cluster's tokens (cluster-tokens.ts): a controller's
 * token file or a named token of the cluster, as the CLI shows them to a controller.
 * Sessions are the cluster's, in its PostgreSQL (cluster-sessions.ts): behind one name, a load balancer may send a
 * browser to any controller, a controller's restart logs no one out, a logout on one controller ends the session on
 * all of them, and a revoked or expired token's sessions are refused on every controller from their next request.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Caller } from '../api/auth.js';
import { installSessionCuts, sessionCaller, sessionRoutes, type SessionLogin } from '../api/sessions.js';
import { webRoutes } from '../api/web.js';
import type { WebSessions } from '../services/sessions.js';
import { hashSecret } from '../services/tokens.js';
import type { ClusterTokens } from './cluster-tokens.js';

/** A login with a cluster token: its session keeps the token's SHA-256, which every use reads again (cluster-sessions.ts). */
export function controllerLogin(tokens: Pick<ClusterTokens, 'authenticateHash'>): SessionLogin {
  return async (secret) => {
    const hash = hashSecret(secret);
    return { caller: await tokens.authenticateHash(hash), token: { hash, check: () => undefined } };
  };
}

export interface ControllerWeb {
  /** the caller a request's session cookie names, or null (for the controller's auth hook: controller-auth.ts) */
  cookie: (req: FastifyRequest) => Promise<Caller | null>;
  /** install the session cuts (after the auth hooks) and register the console's routes */
  install: (app: FastifyInstance) => Promise<void>;
}

export function controllerWeb(d: { tokens: Pick<ClusterTokens, 'authenticateHash'>; sessions: WebSessions; webRoot?: string }): ControllerWeb {
  const store = d.sessions;
  return {
    cookie: (req) => sessionCaller(req, store),
    install: async (app) => {
      installSessionCuts(app, store);
      store.start();
      app.addHook('onClose', async () => store.stop());
      await app.register(sessionRoutes({ store, login: controllerLogin(d.tokens) }));
      await app.register(webRoutes(d.webRoot));
    },
  };
}
