/**
 * The web console's login on the TCP API (a daemon's, and a cluster controller's with the cluster's tokens:
 * src/cluster/controller-web.ts): `POST /v1/session {token}` checks an API token and sets a session cookie
 * (HttpOnly, Secure, SameSite=Strict, Path=/; the id of a session in the daemon's memory, src/services/sessions.ts, or
 * in the cluster's PostgreSQL on a controller, src/cluster/cluster-sessions.ts),
 * `GET /v1/session` says who the caller is and gives the session's CSRF token, `DELETE /v1/session` logs out. The
 * auth hook (installAuth's `cookie`) takes the cookie as the caller when a request shows no bearer token, and
 * refuses it from another origin (CSRF_REFUSED), or on a request that changes something without the session's CSRF
 * token in `x-corral-csrf` (another origin can neither read it nor make a browser send a custom header unasked).
 */
import type { FastifyInstance, FastifyPluginAsync, FastifyRequest } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { CorralError } from '../core/errors.js';
import { clearedSessionCookie, cookieValue, crossSiteRefusal, CSRF_HEADER, SAFE_METHODS, sessionCookie, sessionCookieName } from '../core/sessions.js';
import { TOKEN_PREFIX } from '../core/tokens.js';
import type { SessionInfo, SessionToken, WebSessions } from '../services/sessions.js';
import { hashSecret, type TokenService } from '../services/tokens.js';
import { sameSecret, TOKEN_FILE_CALLER, type Caller } from './auth.js';
import { E, errors } from './schemas-common.js';
import { LoggedOut, LoginBody, Session } from './schemas-auth.js';

const one = (v: string | string[] | undefined): string | undefined => (Array.isArray(v) ? v[0] : v);

/** The session cookie's name on the listener the request came in on. */
const cookieName = (req: FastifyRequest): string => sessionCookieName(req.raw.socket?.localPort);

/** The session id a request's cookie holds, or null. */
export function sessionIdOf(req: FastifyRequest): string | null {
  const id = cookieValue(req.headers.cookie, cookieName(req));
  return id === null || id === '' ? null : id;
}

function refuseCrossSite(req: FastifyRequest): void {
  const refusal = crossSiteRefusal({
    method: req.method, host: req.headers.host, origin: one(req.headers.origin), fetchSite: one(req.headers['sec-fetch-site']),
    upgrade: one(req.headers.upgrade)?.toLowerCase() === 'websocket',
  });
  if (refusal) throw new CorralError('CSRF_REFUSED', `${refusal}: refused`, { reason: 'cross-origin' });
}

/** Which session each request was let in by (its id and what it was), for its cut when the session ends. */
const bySession = new WeakMap<FastifyRequest, { id: string; info: SessionInfo }>();

/**
 * The caller a request's session cookie names, or null when it shows none. UNAUTHORIZED when the session has ended;
 * CSRF_REFUSED when the request comes from another origin, or changes something without the session's CSRF token.
 */
export async function sessionCaller(req: FastifyRequest, store: WebSessions): Promise<Caller | null> {
  const id = sessionIdOf(req);
  if (id === null) return null;
  // a refused request does not count as the session's use
  const s = await store.use(id, (known) => {
    // a refusal's audit line names whose session the forged request showed
    req.caller = { who: known.who, role: known.role };
    refuseCrossSite(req);
    if (!SAFE_METHODS.has(req.method)) {
      const given = one(req.headers[CSRF_HEADER]);
      if (given === undefined || !sameSecret(given, known.csrf)) {
        throw new CorralError('CSRF_REFUSED', `a request with a browser session that changes something must carry the session's CSRF token in the ${CSRF_HEADER} header (the login's reply and GET /v1/session give it)`, { reason: 'csrf-token' });
      }
    }
  });
  bySession.set(req, { id, info: s });
  return { who: s.who, role: s.role };
}

/** How each request let in by a session lets go of its cut (the logout's own request, which must get its reply). */
const cuts = new WeakMap<FastifyRequest, () => void>();

/**
 * What a request let in by a session keeps open (an event stream, a console websocket) is cut when the session ends:
 * at logout, when it expires, when its token is revoked (the store's sweep finds that within 30 s).
 */
export function installSessionCuts(app: FastifyInstance, store: WebSessions): void {
  app.addHook('onRequest', async (req, reply) => {
    const id = bySession.get(req)?.id;
    const socket = req.raw.socket;
    if (id === undefined || !socket) return;
    const off = store.onEnd(id, () => socket.destroy());
    const done = (): void => {
      off();
      socket.off('close', done);
      cuts.delete(req);
    };
    cuts.set(req, done);
    socket.once('close', done);
    // a websocket keeps the socket past its upgrade; any other request lets go of it with its reply
    if (!req.ws) reply.raw.once('close', done);
  });
}

/** Who a token logging in belongs to, and what its session keeps of it (its hash, the check a daemon makes at each use). */
export type SessionLogin = (secret: string) => Promise<{ caller: Caller; token: SessionToken }>;

export interface SessionRouteDeps {
  store: WebSessions;
  /** how a login's token is checked: a daemon's (daemonLogin) or a cluster controller's (controller-web.ts) */
  login: SessionLogin;
}

/** A daemon's login: the token file's token (an admin) or a named token of its token service. */
export function daemonLogin(legacyToken: string, tokens: () => TokenService): SessionLogin {
  return async (secret) => {
    if (sameSecret(secret, legacyToken)) return { caller: TOKEN_FILE_CALLER, token: { hash: null, check: () => undefined } };
    if (!secret.startsWith(TOKEN_PREFIX)) throw new CorralError('UNAUTHORIZED', 'the token is not valid: it is not the token file\'s, nor a token this daemon issued');
    const hash = hashSecret(secret);
    const t = tokens().authenticateHash(hash);
    return { caller: { who: t.name, role: t.role }, token: { hash, check: () => void tokens().authenticateHash(hash) } };
  };
}

const noStore = { 'cache-control': 'no-store' };

export function sessionRoutes(d: SessionRouteDeps): FastifyPluginAsync {
  return async (base: FastifyInstance) => {
    const app = base.withTypeProvider<TypeBoxTypeProvider>();
    const tags = ['session'];
    app.post(
      '/v1/session',
      {
        schema: {
          operationId: 'login', tags, summary: 'Log in to the web console with an API token: sets the session cookie and answers the session\'s CSRF token',
          body: LoginBody, response: { 200: Session, 400: errors[400], 401: errors[401], 403: E[403], 500: errors[500] },
        },
      },
      async (req, reply) => {
        // login CSRF: another site must not log a browser in under its own token
        refuseCrossSite(req);
        const { caller, token } = await d.login(req.body.token.trim());
        const made = await d.store.create(caller, token);
        req.caller = caller; // the audit line names who logged in
        return reply.headers({ ...noStore, 'set-cookie': sessionCookie(cookieName(req), made.id, made.maxAgeS) }).send(made.info);
      },
    );
    app.get(
      '/v1/session',
      { schema: { operationId: 'getSession', tags, summary: 'Who the caller is; with a session cookie, the session\'s CSRF token and expiry', response: { 200: Session, 401: errors[401], 403: E[403] } } },
      async (req, reply) => {
        const info = bySession.get(req)?.info;
        const caller = req.caller!;
        return reply.headers(noStore).send(info ?? { who: caller.who, role: caller.role, csrf: null, createdAt: null, expiresAt: null });
      },
    );
    app.delete(
      '/v1/session',
      { schema: { operationId: 'logout', tags, summary: 'Log out: end the session the cookie names and clear the cookie', response: { 200: LoggedOut, 401: errors[401], 403: E[403] } } },
      async (req, reply) => {
        const id = bySession.get(req)?.id;
        // the logout's own connection is not cut: it carries the reply that clears the cookie
        cuts.get(req)?.();
        const ended = id !== undefined && (await d.store.end(id));
        return reply.headers({ ...noStore, 'set-cookie': clearedSessionCookie(cookieName(req)) }).send({ ended });
      },
    );
  };
}
