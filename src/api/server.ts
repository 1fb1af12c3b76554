/**
 * The HTTP API (Fastify + TypeBox). One app per listener: the unix socket (root only, file mode 0600) and,
 * optionally, TCP behind a bearer token. Errors are always {"error":{"code","message",...}}.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import swagger from '@fastify/swagger';
import websocket from '@fastify/websocket';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { closeWebsockets, installErrorReplies, newApp } from './app.js';
import type { AuditSink } from '../services/audit.js';
import type { Services } from './services.js';
import { E, errors } from './schemas-common.js';
import { Pool } from './schemas-instances.js';
import { Host } from './schemas-host.js';
import { instanceRoutes } from './routes-instances.js';
import { vncRoutes } from './routes-vnc.js';
import { migrationRoutes } from './routes-migration.js';
import { clusterMoveRoutes } from './routes-cluster-moves.js';
import { migrationRecoveryRoutes } from './routes-migration-recovery.js';
import { migrationDiskRoutes } from './routes-migration-disks.js';
import { guestRoutes } from './routes-guest.js';
import { copyRoutes } from './routes-copies.js';
import { imageRoutes } from './routes-images.js';
import { eventRoutes } from './routes-events.js';
import { cpuRoutes } from './routes-cpu.js';
import { memoryRoutes } from './routes-memory.js';
import { deviceRoutes } from './routes-devices.js';
import { volumeRoutes } from './routes-volumes.js';
import { diskRoutes } from './routes-disks.js';
import { snapshotRoutes } from './routes-snapshots.js';
import { nicRoutes } from './routes-nics.js';
import { networkRoutes } from './routes-networks.js';
import { passthroughRoutes } from './routes-passthrough.js';
import { vhostUserRoutes } from './routes-vhost-user.js';
import { auditRoutes, tokenRoutes } from './routes-auth.js';
import { historyRoutes } from './routes-history.js';
import { hostRegistry, installRequestMetrics, metricsRoute } from './metrics.js';
import { installAuth, type Caller } from './auth.js';
import { installAudit, noteFailure } from './audit.js';
import { recordRoutes, routeRule } from './roles.js';
import { STREAM_LIMITS, type StreamLimits } from './stream-limits.js';
import { CorralError } from '../core/errors.js';
import { printable } from '../core/names.js';
import { TARGET_HEADER } from '../core/target.js';
import { SessionStore, type WebSessions } from '../services/sessions.js';
import { daemonLogin, installSessionCuts, sessionCaller, sessionRoutes } from './sessions.js';
import { webRoutes } from './web.js';

export interface ApiOptions {
  /**
   * When set, the TCP API: every request must carry `Authorization: Bearer <token>`, this token (the token file's,
   * an admin) or a named one (svc.tokens) whose role the route allows. Unset: the unix socket, every caller an admin.
   */
  token?: string;
  /** where state-changing and refused requests are recorded (the daemon's audit.log); unset: nowhere */
  audit?: AuditSink;
  logger?: boolean | object;
  /**
   * serve HTTPS with this certificate and key (PEM): the TCP API; the unix socket is plain HTTP. With `ca` (a cluster
   * agent's), client certificates are asked for and `peer` names the caller of a request that shows one
   */
  tls?: { cert: string; key: string; ca?: string };
  peer?: (req: FastifyRequest) => Caller | null;
  /** TCP: GET /metrics is served without a token (`--metrics-public`) */
  metricsPublic?: boolean;
  /** limits on event streams and console websockets (STREAM_LIMITS when not given) */
  streams?: Partial<StreamLimits>;
  /** TCP: the web console's sessions (a new store when not given; swept while the API is open) */
  sessions?: WebSessions;
  /** TCP: where the built web console is (dist/web when not given) */
  webRoot?: string;
}

/**
 * Close an API without waiting on its clients: the preClose hooks end event streams and console websockets, and
 * whatever connection is still open after `graceMs` (a slow request, a client that does not answer) is cut.
 * Resolves true once closed, or false if it still was not after `graceMs` + 1 s.
 */
export async function closeApi(app: FastifyInstance, graceMs = 2000): Promise<boolean> {
  let cut: NodeJS.Timeout | undefined;
  let deadline: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      app.close().then(() => true, () => true),
      new Promise<boolean>((resolve) => {
        cut = setTimeout(() => app.server.closeAllConnections(), graceMs);
        deadline = setTimeout(() => resolve(false), graceMs + 1000);
      }),
    ]);
  } finally {
    clearTimeout(cut);
    clearTimeout(deadline);
  }
}

/** The OpenAPI document's frame: the routes fill in its paths. The TCP API (with a token) needs the bearer token on every call. */
function openapiDocument(tokened: boolean) {
  return {
    openapi: '3.1.0',
    info: {
      title: 'Corral API',
      version: '1',
      description: 'QEMU virtual machines on one host. Errors are {"error":{"code","message",...}}.',
    },
    servers: [{
      url: '/',
      description: tokened ? 'this daemon\'s TCP API, over TLS only (every call needs a bearer token: $CORRAL_DATA_DIR/token, or one from `corral token create` whose role allows the operation)' : 'this daemon\'s unix socket API ($CORRAL_DATA_DIR/corral.sock, root only; no token)',
    }],
    components: {
      securitySchemes: {
        bearer: {
          type: 'http' as const, scheme: 'bearer',
          description: 'the token in $CORRAL_DATA_DIR/token (admin) or a named token (corral token create) with its role; the TCP API requires one, the unix socket does not. Each operation\'s x-corral-role is the role it needs: viewer < operator < admin',
        },
      },
    },
    security: tokened ? [{ bearer: [] }] : [],
    tags: ['session', 'instances', 'console', 'cpu', 'memory', 'disks', 'snapshots', 'nics', 'passthrough', 'images', 'volumes', 'networks', 'vhost-user', 'host', 'pool', 'history', 'events', 'tokens', 'audit'].map((name) => ({ name })),
  };
}

/**
 * A daemon serves its own host: a request that names a target host (`corral --target`, src/core/target.ts) was meant
 * for a cluster controller, and is refused (after auth: a caller without a token learns nothing) rather than answered
 * for this host as though it were the one named.
 */
function refuseTarget(app: FastifyInstance): void {
  app.addHook('onRequest', async (req) => {
    const raw = req.headers[TARGET_HEADER];
    if (raw === undefined) return;
    const target = String(raw);
    throw new CorralError('NOT_A_CLUSTER', `this is a corral daemon, not a cluster controller: it serves its own host only, and no target host ("${printable(target)}") can be named to it; drop --target (and CORRAL_TARGET), or point CORRAL_URL at a controller`, { target });
  });
}

export async function buildApi(svc: Services, opts: ApiOptions = {}): Promise<FastifyInstance> {
  const clientCerts = opts.tls?.ca ? { ca: [opts.tls.ca], requestCert: true, rejectUnauthorized: false } : {};
  const app = newApp({ ...(opts.tls ? { https: { cert: opts.tls.cert, key: opts.tls.key, minVersion: 'TLSv1.2' as const, ...clientCerts } } : {}), logger: opts.logger ?? false });
  recordRoutes(app);
  installErrorReplies(app, noteFailure);

  const tcp = opts.token !== undefined;

  await app.register(swagger, {
    openapi: openapiDocument(tcp),
    // Each operation names the role it needs (x-corral-role); on TCP those above viewer may answer 403. The unix
    // socket takes no token: its document names no 401 or 403 replies.
    transform: ({ schema, url, route }) => {
      if (!schema?.response) return { schema, url };
      const method = Array.isArray(route.method) ? String(route.method[0]) : String(route.method);
      const role = routeRule(method, url).role;
      const { 401: unauthorized, 403: _forbidden, ...rest } = schema.response as Record<string, unknown>;
      const response = tcp ? { ...rest, ...(unauthorized ? { 401: unauthorized } : {}), ...(role === 'viewer' ? {} : { 403: E[403] }) } : rest;
      return { schema: { ...schema, response, 'x-corral-role': role }, url };
    },
  });
  await app.register(websocket, { options: { maxPayload: 1024 * 1024 }, preClose: closeWebsockets });

  // After the websocket plugin, whose onRequest hook marks upgrades (req.ws) so that the socket of a refused one is
  // closed after the error reply; the audit's onRequest hook (the peer's address) before auth's, which may refuse.
  if (opts.audit) installAudit(app, opts.audit, tcp ? 'tcp' : 'unix');
  // the web console and its sessions are the TCP listener's: a browser cannot reach the unix socket
  const sessions = tcp ? (opts.sessions ?? new SessionStore()) : undefined;
  installAuth(app, opts.token, () => svc.tokens, opts.peer, opts.metricsPublic ? ['GET /metrics'] : [], sessions && ((req) => sessionCaller(req, sessions)));
  if (sessions) {
    installSessionCuts(app, sessions);
    sessions.start();
    app.addHook('onClose', async () => sessions.stop());
  }
  installRequestMetrics(app);
  refuseTarget(app);

  const limits: StreamLimits = { ...STREAM_LIMITS, ...opts.streams };
  await app.register(instanceRoutes(svc, limits));
  await app.register(vncRoutes(svc, limits));
  await app.register(migrationRoutes(svc));
  await app.register(clusterMoveRoutes(svc));
  await app.register(migrationRecoveryRoutes(svc));
  await app.register(migrationDiskRoutes(svc));
  await app.register(guestRoutes(svc));
  await app.register(imageRoutes(svc));
  await app.register(copyRoutes(svc));
  await app.register(eventRoutes(svc, limits));
  await app.register(cpuRoutes(svc));
  await app.register(memoryRoutes(svc));
  await app.register(historyRoutes(svc));
  await app.register(deviceRoutes(svc));
  await app.register(volumeRoutes(svc));
  await app.register(diskRoutes(svc));
  await app.register(snapshotRoutes(svc));
  await app.register(nicRoutes(svc));
  await app.register(networkRoutes(svc));
  await app.register(passthroughRoutes(svc));
  await app.register(vhostUserRoutes(svc));
  await app.register(tokenRoutes(svc));
  await app.register(auditRoutes(opts.audit));
  if (sessions && opts.token !== undefined) {
    await app.register(sessionRoutes({ store: sessions, login: daemonLogin(opts.token, () => svc.tokens) }));
    await app.register(webRoutes(opts.webRoot));
  }
  await app.register(metricsRoute(async () => hostRegistry(await svc.metrics.samples(), svc.instances.pool())));

  const typed = app.withTypeProvider<TypeBoxTypeProvider>();
  typed.get(
    '/v1/host',
    { schema: { operationId: 'getHost', tags: ['host'], summary: 'Host facts, its inventory and the accelerator chosen', response: { 200: Host, 401: errors[401], 500: errors[500] } } },
    async () => svc.host.show(),
  );
  typed.get(
    '/v1/pool',
    {
      schema: {
        operationId: 'getPool', tags: ['pool'], summary: 'The resource pool: capacity (host x ratio, less the reserve), allocated, free',
        response: { 200: Pool, 401: errors[401], 500: errors[500] },
      },
    },
    async () => svc.instances.pool(),
  );
  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());
  await app.ready();
  return app;
}
