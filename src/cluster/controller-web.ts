/**
 * A cluster controller's web console: the very bundle a daemon serves (src/api/web.ts: `/`, `/assets/*`) and its
 * login (src/api/sessions.ts: POST/GET/DELETE /v1/session, the cookie HttpOnly, Secure, SameSite=Strict; CSRF and
 * origin checks on every request a cookie lets in), with the cluster's tokens (cluster-tokens.ts): a controller's
 * token file or a named token of the cluster, as the CLI shows them to a controller.
 * Sessions are this controller's, in its memory (src/services/sessions.ts): behind one name, several controllers
 * need a load balancer that keeps a browser on one of them (by source address or cookie); a controller's restart
 * logs its browsers out. A session keeps the SHA-256 of its token and asks PostgreSQL again at each use, in the
 * background (a session's check must answer at once): a revoked or expired token's sessions are refused from the
 * use after the one that found it out, and ended with what they hold open by the store's sweeps (every 30 s: one
 * asks, the next ends it, so within a minute).
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { CorralError } from '../core/errors.js';
import type { Caller } from '../api/auth.js';
import { installSessionCuts, sessionCaller, sessionRoutes, type SessionLogin } from '../api/sessions.js';
import { webRoutes } from '../api/web.js';
import { SessionStore } from '../services/sessions.js';
import { hashSecret } from '../services/tokens.js';
import type { ClusterTokens } from './cluster-tokens.js';

/** A login with a cluster token; its session's check reads the token again at each use (see above). */
export function controllerLogin(tokens: Pick<ClusterTokens, 'authenticateHash'>): SessionLogin {
  return async (secret) => {
    const hash = hashSecret(secret);
    const caller = await tokens.authenticateHash(hash);
    let refused: string | null = null;
    let asking = false;
    const check = (): void => {
      if (refused !== null) throw new CorralError('UNAUTHORIZED', refused);
      if (asking) return;
      asking = true;
      tokens.authenticateHash(hash).then(
        () => undefined,
        // only the token's own refusal ends the session: PostgreSQL out of reach is no reason to log everyone out
        (e: unknown) => {
          if (e instanceof CorralError && e.code === 'UNAUTHORIZED') refused = e.message;
        },
      ).finally(() => {
        asking = false;
      });
    };
    return { caller, check };
  };
}

export interface ControllerWeb {
  /** the caller a request's session cookie names, or null (for the controller's auth hook: controller-auth.ts) */
  cookie: (req: FastifyRequest) => Caller | null;
  /** install the session cuts (after the auth hooks) and register the console's routes */
  install: (app: FastifyInstance) => Promise<void>;
}

export function controllerWeb(d: { tokens: Pick<ClusterTokens, 'authenticateHash'>; sessions?: SessionStore; webRoot?: string }): ControllerWeb {
  const store = d.sessions ?? new SessionStore();
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
