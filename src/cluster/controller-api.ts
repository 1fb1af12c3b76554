/**
 * A cluster controller's HTTP API (HTTPS only, with the controller's certificate from the cluster CA).
 * - People (the CLI) show a bearer token: any controller's token file (admin; all registered in PostgreSQL) or a
 *   named token of the cluster (corral token create) whose role the route allows, as on a single daemon; every
 *   state-changing or refused request is audited (controller-auth.ts).
 * - Agents show their client certificate from the cluster CA (mutual TLS): it must verify, name a host that is
 *   still in the cluster and be that host's very certificate (pinned by fingerprint); a removed host's is revoked.
 * - A browser logs in to the web console with a token and is let in by its session cookie (controller-web.ts).
 * - Joining shows a join token instead (single use, expiring), and is the only other route open without a token,
 *   with the CA's certificate (which the joining agent checks against the hash its token carries).
 */
import { createHash } from 'node:crypto';
import type { TLSSocket } from 'node:tls';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import { CorralError } from '../core/errors.js';
import { validateLabels } from '../core/labels.js';
import { validateName } from '../core/names.js';
import { parseExpiry } from '../core/tokens.js';
import { hashJoinSecret, parseJoinToken } from '../core/join-token.js';
import websocket from '@fastify/websocket';
import { closeWebsockets, installErrorReplies, newApp } from '../api/app.js';
import { installRequestMetrics, metricsRoute } from '../api/metrics.js';
import { clusterRegistry } from './controller-metrics.js';
import { noteCaller, noteFailure } from '../api/audit.js';
import { auditRoutes, tokenRoutes } from '../api/routes-auth.js';
import { recordRoutes } from '../api/roles.js';
import { E, errors } from '../api/schemas-common.js';
import {
  ClusterCa, ClusterHost, HeartbeatBody, HeartbeatReply, HostLabelsBody, HostList, JoinBody, JoinReply, JoinTokenBody, JoinTokenReply, MaintenanceBody,
} from '../api/schemas-cluster.js';
import type { ClusterStore, HostRow } from './cluster-store.js';
import { caSha256, signHostCsr, verifyPeerCert } from './pki.js';
import { newJoinToken } from './join-tokens.js';
import type { ControllerPair } from './controller-tls.js';
import { pemOfDer } from './controller-peer.js';
import type { ClusterInstances } from './cluster-instances.js';
import { controllerInstanceRoutes, hostOf } from './controller-instances.js';
import { controllerArchiveRoutes } from './controller-archives.js';
import { controllerConsoleRoutes } from './controller-console.js';
import { controllerMigrationRoutes, Migrator } from './migration.js';
import { controllerMoveRoutes } from './moves.js';
import type { MigrationLocks } from './migration-locks.js';
import type { MigrationRecovery } from './migration-recovery.js';
import { MigrationTransport } from './migration-transport.js';
import { controllerSettingsRoutes } from './controller-settings.js';
import type { ReportReconciler } from './report-reconcile.js';
import { AgentClient } from './agent-client.js';
import type { ClusterTokens } from './cluster-tokens.js';
import type { ClusterAudit } from './cluster-audit.js';
import { AGENT_ROUTE, installControllerAuth, isAgentRoute } from './controller-auth.js';
import { controllerPerHostRoutes, refuseTargetOnClusterRoutes } from './controller-per-host.js';
import type { ClusterEvents } from './cluster-events.js';
import type { EventFeed } from './event-feed.js';
import { controllerEventRoutes } from './controller-events.js';
import { controllerWeb } from './controller-web.js';
import type { WebSessions } from '../services/sessions.js';

export interface ControllerApiDeps {
  store: ClusterStore;
  instances: ClusterInstances;
  /** the list as kept between requests (instance-list.ts); without it, each list reads the whole table */
  list?: { listJson(): Promise<string> };
  /** what hosts report against what the cluster holds (report-reconcile.ts) */
  reconciler?: Pick<ReportReconciler, 'check'>;
  tokens: ClusterTokens;
  audit: ClusterAudit;
  /** the cluster's events, and this controller's live feed of them */
  events: ClusterEvents;
  feed: EventFeed;
  ca: { certPem: string; keyPem: string };
  tls: ControllerPair;
  /** the lease a heartbeat renews and the host watchdog's timeout, as agents are told them */
  ha: { leaseMs: number; watchdogMs: number };
  log: { info: (o: object, m: string) => void; warn: (o: object, m: string) => void };
  /** which controller drives a live migration (migration-locks.ts); none: not checked */
  migrationLocks?: Pick<MigrationLocks, 'acquire'>;
  /** what hosts report that live migrations left (migration-recovery.ts); none: nothing is answered */
  migrationRecovery?: Pick<MigrationRecovery, 'leftovers'>;
  /** the web console's sessions (the cluster's: cluster-sessions.ts) and built files (dist/web when not given) */
  sessions: WebSessions;
  webRoot?: string;
}

const MAX_JOIN_TTL_S = 7 * 86_400;
const Name = Type.Object({ name: Type.String() });

export function sha256Hex(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

/** The host view of the API from the store's row. */
export function hostView(h: HostRow): ClusterHost {
  return {
    name: h.name, uuid: h.uuid, state: h.state, address: h.address, labels: h.labels, maintenance: h.maintenance, sharedPool: h.sharedPool,
    fencedAt: h.fencedAt, fenceReason: h.fenceReason, capacity: h.capacity ?? null, allocation: h.allocation ?? null,
    agentVersion: h.agentVersion, joinedAt: h.joinedAt, lastHeartbeat: h.lastHeartbeat, heartbeatAgeMs: h.heartbeatAgeMs,
    cpuReport: h.cpuReport, memoryReport: h.memoryReport,
  };
}

/**
 * The host whose certificate a request was made with: it verifies against the cluster CA as an agent's, names a
 * host still in the cluster and is that host's very certificate; UNTRUSTED_PEER (saying when it was revoked) else.
 */
async function requireAgent(store: ClusterStore, ca: { certPem: string }, req: FastifyRequest): Promise<HostRow> {
  const sock = req.raw.socket as TLSSocket;
  const cert = typeof sock.getPeerCertificate === 'function' ? sock.getPeerCertificate() : null;
  if (!cert?.raw) throw new CorralError('UNTRUSTED_PEER', 'an agent\'s client certificate from the cluster CA is required');
  const peer = verifyPeerCert(ca, pemOfDer(cert.raw), { role: 'agent' });
  noteCaller(req, `agent ${peer.host}`);
  const serial = peer.serial.toLowerCase();
  const host = await store.getHost(peer.host);
  if (!host || host.certSerial !== serial || host.certFingerprint !== peer.fingerprint) {
    const revoked = await store.isRevoked(serial);
    throw new CorralError('UNTRUSTED_PEER', revoked ? `the certificate of host "${peer.host}" was revoked: the host was removed from the cluster (join it again with a new token)` : `the certificate of host "${peer.host}" is not the one that host joined with`, { host: peer.host, revoked });
  }
  return host;
}

/** How long a join token may be used, in seconds, from what a user wrote (90m, 12h, 2d). */
export function joinTtlSeconds(text: string | undefined, now = new Date()): number {
  if (text === undefined) return 3600;
  const until = Date.parse(parseExpiry('ttl', text, now));
  const s = Math.round((until - now.getTime()) / 1000);
  if (s > MAX_JOIN_TTL_S) throw new CorralError('INVALID_SPEC', `ttl: a join token lasts at most 7d, not ${text}`, { field: 'ttl' });
  return s;
}

export async function buildControllerApi(d: ControllerApiDeps): Promise<FastifyInstance> {
  const app = newApp({
    https: { cert: d.tls.chainPem, key: d.tls.keyPem, ca: [d.ca.certPem], requestCert: true, rejectUnauthorized: false, minVersion: 'TLSv1.2' as const },
  });
  recordRoutes(app);
  installErrorReplies(app, noteFailure);
  await app.register(websocket, { options: { maxPayload: 1024 * 1024 }, preClose: closeWebsockets });
  // after the websocket plugin, whose onRequest hook marks upgrades (a refused one's socket is closed after its reply)
  const web = controllerWeb({ tokens: d.tokens, sessions: d.sessions, ...(d.webRoot !== undefined ? { webRoot: d.webRoot } : {}) });
  installControllerAuth(app, { tokens: d.tokens, audit: d.audit, cookie: web.cookie });
  installRequestMetrics(app);
  refuseTargetOnClusterRoutes(app, isAgentRoute);
  // the session cuts' hook after the auth's (which names the session), the console's routes after every hook
  await web.install(app);
  const caHash = caSha256(d.ca.certPem);
  const typed = app.withTypeProvider<TypeBoxTypeProvider>();

  typed.get('/v1/cluster/ca', { ...AGENT_ROUTE, schema: { response: { 200: ClusterCa } } }, async () => ({ certPem: d.ca.certPem, sha256: caHash }));

  typed.post('/v1/cluster/join-tokens', { schema: { body: JoinTokenBody, response: { 201: JoinTokenReply, 400: errors[400], 401: errors[401], 403: E[403] } } }, async (req, reply) => {
    const ttl = joinTtlSeconds(req.body.ttl);
    const t = newJoinToken(caHash);
    const { expiresAt } = await d.store.insertJoinToken({ id: t.id, secretHash: hashJoinSecret(t.secret), ttlSeconds: ttl });
    d.log.info({ id: t.id, expiresAt }, 'join token made');
    return reply.status(201).send({ token: t.text, id: t.id, expiresAt, caSha256: caHash });
  });

  typed.post('/v1/cluster/join', { ...AGENT_ROUTE, schema: { body: JoinBody, response: { 201: JoinReply, 400: errors[400], 401: errors[401], 409: errors[409] } } }, async (req, reply) => {
    const b = req.body;
    const parsed = parseJoinToken(b.token);
    noteCaller(req, `join token ${parsed.id}`);
    if (parsed.caSha256 !== caHash) throw new CorralError('JOIN_TOKEN_REFUSED', 'the join token is for another cluster (its CA hash is not this cluster\'s)', { reason: 'other cluster' });
    const name = validateName('name', b.name);
    if (!/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/.test(b.uuid)) throw new CorralError('INVALID_SPEC', 'uuid: not a UUID', { field: 'uuid' });
    const address = checkAddress(b.address);
    const labels = validateLabels('labels', b.labels ?? {});
    if (await d.store.getHost(name)) throw new CorralError('HOST_EXISTS', `a host named "${name}" is already in the cluster: remove it first (corral host remove ${name}) or join under another --name`, { name });
    // the token is checked before any work (no signing for a caller without one), the certificate made (a bad CSR
    // burns no token), then the token used (of joins racing with it, one wins), then the row inserted
    const secretHash = hashJoinSecret(parsed.secret);
    refuseToken(await d.store.peekJoinToken(parsed.id, secretHash));
    const ip = address ? new URL(address).hostname.replace(/^\[(.*)\]$/, '$1') : undefined;
    const signed = await signHostCsr(d.ca, b.csr, { host: name, uuid: b.uuid, ips: ip ? [ip] : [], role: 'agent' });
    refuseToken(await d.store.consumeJoinToken(parsed.id, secretHash, name));
    await d.store.insertHost({ name, uuid: b.uuid, address, certSerial: signed.serial.toLowerCase(), certFingerprint: signed.fingerprint, labels, agentVersion: b.agentVersion });
    const host = await d.store.getHost(name);
    d.log.info({ host: name, address, serial: signed.serial, labels }, 'host joined the cluster');
    return reply.status(201).send({ certPem: signed.certPem, caPem: d.ca.certPem, host: hostView(host!) });
  });

  typed.post('/v1/cluster/heartbeat', { ...AGENT_ROUTE, schema: { body: HeartbeatBody, response: { 200: HeartbeatReply, 401: errors[401], 403: E[403] } } }, async (req) => {
    const host = await requireAgent(d.store, d.ca, req);
    const b = req.body;
    await d.store.heartbeat(host.name, { capacity: b.capacity, allocation: b.allocation, agentVersion: b.agentVersion, sharedPool: b.sharedPool ?? null, cpuReport: b.cpuReport ?? null, ...(b.memoryReport ? { memoryReport: b.memoryReport } : {}) });
    if (req.body.instances) {
      const unknown = await d.instances.report(host.name, req.body.instances);
      // instances made on the host directly are adopted, those deleted there forgotten, once the agent confirms
      d.reconciler?.check(host, unknown, req.body.instances.map((i) => i.name));
    }
    const forget = await d.instances.movedFrom(host.name, req.body.ha ?? []);
    // what live migrations left there that no migration will finish: the agent removes them
    const abandon = req.body.migrations && req.body.migrations.length > 0 && d.migrationRecovery ? await d.migrationRecovery.leftovers(host.name, req.body.migrations) : [];
    // a fenced host is back: once the cluster has moved all its HA instances away, it takes work again
    if (host.state === 'fenced' && (await d.instances.haOn(host.name)).length === 0) {
      await d.store.setFenced(host.name, null, 'it reports again and its HA instances run elsewhere: the fence is lifted');
      d.log.info({ host: host.name }, 'a fenced host is back: its HA instances run elsewhere, the fence is lifted');
    }
    const now = await d.store.getHost(host.name);
    // what happened on the host itself (instances started, stopped...) joins the cluster's events
    const eventsAfter = req.body.events && req.body.events.length > 0 ? await d.events.fromHost(host.name, req.body.events) : await d.events.ackedOf(host.name);
    return { host: host.name, state: now?.state ?? host.state, leaseMs: d.ha.leaseMs, watchdogMs: d.ha.watchdogMs, forget, ...(abandon.length > 0 ? { abandon } : {}), eventsAfter };
  });

  typed.get('/v1/hosts', { schema: { response: { 200: HostList, 401: errors[401] } } }, async () => ({ hosts: (await d.store.listHosts()).map(hostView) }));
  typed.get('/v1/hosts/:name', { schema: { params: Name, response: { 200: ClusterHost, 401: errors[401], 404: errors[404] } } }, async (req) => hostView(await mustHost(d.store, req.params.name)));
  typed.post('/v1/hosts/:name/maintenance', { schema: { params: Name, body: MaintenanceBody, response: { 200: ClusterHost, 401: errors[401], 403: E[403], 404: errors[404] } } }, async (req) => {
    await d.store.setMaintenance(req.params.name, req.body.on);
    d.log.info({ host: req.params.name, on: req.body.on }, 'maintenance');
    return hostView(await mustHost(d.store, req.params.name));
  });
  typed.patch('/v1/hosts/:name', { schema: { params: Name, body: HostLabelsBody, response: { 200: ClusterHost, 400: errors[400], 401: errors[401], 403: E[403], 404: errors[404] } } }, async (req) => {
    const h = await d.store.setLabels(req.params.name, req.body.labels);
    d.log.info({ host: h.name, changes: req.body.labels, labels: h.labels }, 'host labels changed');
    return hostView(h);
  });
  typed.delete('/v1/hosts/:name', { schema: { params: Name, response: { 200: Type.Object({ removed: Type.String(), revokedSerial: Type.String() }), 401: errors[401], 403: E[403], 404: errors[404] } } }, async (req) => {
    const gone = await d.store.removeHost(req.params.name);
    if (!gone) throw hostNotFound(req.params.name);
    d.log.warn({ host: gone.name, serial: gone.certSerial }, 'host removed from the cluster; its certificate is revoked');
    return { removed: gone.name, revokedSerial: gone.certSerial };
  });
  await app.register(controllerSettingsRoutes({ store: d.store, log: d.log }));
  await app.register(tokenRoutes({ tokens: d.tokens }));
  await app.register(auditRoutes(d.audit));
  await app.register(metricsRoute(async () => clusterRegistry(await d.store.listHosts())));
  // the instances of the cluster, and what each host holds for itself: people's calls
  await app.register(async (scoped) => {
    const agentTls = { caPem: d.ca.certPem, certPem: d.tls.certPem, keyPem: d.tls.keyPem };
    const agents = new AgentClient(agentTls);
    await scoped.register(controllerConsoleRoutes({ tls: agentTls, hostOf: async (name) => (await hostOf(d, name)).host }));
    const transport = new MigrationTransport({ ca: d.ca, settings: () => d.store.getSettings() });
    const migrator = new Migrator({ store: d.store, instances: d.instances, agents, events: d.events, log: d.log, transport, ...(d.migrationLocks ? { locks: d.migrationLocks } : {}) });
    await scoped.register(controllerMigrationRoutes(migrator));
    await scoped.register(controllerMoveRoutes({ store: d.store, instances: d.instances, agents, events: d.events, log: d.log, migrator }));
    await scoped.register(controllerArchiveRoutes({ store: d.store, instances: d.instances, agents, log: d.log }));
    await scoped.register(controllerInstanceRoutes({ store: d.store, instances: d.instances, list: d.list ?? d.instances, log: d.log, agents }));
    await scoped.register(controllerEventRoutes({ events: d.events, feed: d.feed }));
    await scoped.register(controllerPerHostRoutes({ store: d.store, agents }));
  });
  await app.ready();
  return app;
}

/** JOIN_TOKEN_REFUSED saying why, unless the token is good. */
function refuseToken(r: 'ok' | 'unknown' | 'expired' | 'used'): void {
  if (r === 'ok') return;
  const why = { unknown: 'it is not one of this cluster\'s tokens', expired: 'it has expired', used: 'it was used already (a join token works once)' }[r];
  throw new CorralError('JOIN_TOKEN_REFUSED', `the join token is refused: ${why}; make a new one with corral cluster join-token`, { reason: r });
}

function hostNotFound(name: string): CorralError {
  return new CorralError('HOST_NOT_FOUND', `no host named "${name}" in the cluster (corral host list shows them)`, { name });
}

async function mustHost(store: ClusterStore, name: string): Promise<HostRow> {
  const h = await store.getHost(name);
  if (!h) throw hostNotFound(name);
  return h;
}

/** An agent's API URL: https://HOST:PORT, or empty for none. */
function checkAddress(text: string): string {
  if (text === '') return '';
  let u: URL;
  try {
    u = new URL(text);
  } catch {
    throw new CorralError('INVALID_SPEC', `address: "${text}" is not a URL (https://IP:PORT)`, { field: 'address' });
  }
  if (u.protocol !== 'https:' || !u.port) throw new CorralError('INVALID_SPEC', `address: "${text}" must be https://HOST:PORT`, { field: 'address' });
  return u.origin;
}
