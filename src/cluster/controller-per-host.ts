/**
 * A controller's routes for what each host holds for itself (host-routing.ts: images, volumes, networks, vhost-user
 * back ends, the host's facts and devices), so that the CLI's commands for them work against a controller too:
 * - with a target host (`corral --target HOST`, the x-corral-target header) the request goes to that host's agent
 *   as it came (method, path, query, body) and its answer comes back as it is, streamed as it comes (an image job's
 *   progress lines); the role check is the route's the agent would match (controller-auth.ts), as for instances.
 *   An unknown target is HOST_NOT_FOUND; one that is unreachable or fenced, HOST_UNAVAILABLE;
 * - without one, a list of images, volumes or networks is the union over the hosts that are up (in maintenance
 *   too: they answer), each item with its `host`, and `unreachable` names the hosts that could not be asked and why;
 *   anything else is TARGET_REQUIRED, naming the hosts it may be;
 * - the cluster's own routes (instances, the pool, events, hosts...) refuse a target (INVALID_SPEC): they are not
 *   one host's, and a target they ignored would look obeyed; but an import (TAKES_TARGET) goes to the target host.
 * JSON bodies are small (1 MiB at most, as on a daemon); an upload (application/octet-stream: an image's file, POST
 * /v1/images/NAME/upload) is relayed to the target host as a stream, never buffered (upload-relay.ts).
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Readable } from 'node:stream';
import { acceptStreamedBody } from '../api/upload-body.js';
import { CorralError } from '../core/errors.js';
import { TARGET_HEADER, targetOf } from '../core/target.js';
import type { AgentClient } from './agent-client.js';
import { agentError, parse } from './agent-client.js';
import type { ClusterStore, HostRow } from './cluster-store.js';
import { hasDotSegment, PER_HOST_PREFIXES, perHostPath, unionListKey } from './host-routing.js';

export interface PerHostDeps {
  store: Pick<ClusterStore, 'getHost' | 'listHosts'>;
  agents: Pick<AgentClient, 'call' | 'stream' | 'relay'>;
}

/** How many agents a union list asks at once. */
const UNION_CONCURRENCY = 16;

/** A host whose agent may be asked: up, or in maintenance (it takes no new instances, but answers). */
export const answers = (h: HostRow): boolean => h.state === 'up' || h.state === 'maintenance';

/** The host a target names, if its agent may be asked: HOST_NOT_FOUND or HOST_UNAVAILABLE otherwise. */
export async function targetHost(store: PerHostDeps['store'], name: string): Promise<HostRow> {
  const h = await store.getHost(name);
  if (!h) throw new CorralError('HOST_NOT_FOUND', `--target: no host named "${name}" in the cluster (corral host list shows them)`, { name });
  if (!answers(h)) throw new CorralError('HOST_UNAVAILABLE', `--target: host "${name}" is ${h.state}: its own resources cannot be reached through the cluster now`, { host: name, state: h.state });
  return h;
}

async function targetRequired(store: PerHostDeps['store'], req: FastifyRequest): Promise<CorralError> {
  const hosts = (await store.listHosts()).filter(answers).map((h) => h.name);
  const which = hosts.length > 0 ? `the hosts up now: ${hosts.join(', ')}` : 'no host is up now (corral host list)';
  return new CorralError('TARGET_REQUIRED', `${req.method} ${req.url.split('?')[0]} is one host's, not the cluster's: say which with --target HOST (the ${TARGET_HEADER} header); ${which}`, { hosts });
}

export interface UnionList {
  [key: string]: unknown;
  /** the hosts that could not be asked (not up, or no good answer), and why */
  unreachable: Array<{ host: string; reason: string }>;
}

/** GET of a per-host list over every host that answers: the items of each (in host order) with their `host`. */
export async function unionList(d: PerHostDeps, key: string, path: string): Promise<UnionList> {
  const hosts = await d.store.listHosts();
  const unreachable: UnionList['unreachable'] = [];
  const asked = hosts.filter((h) => {
    if (!answers(h)) unreachable.push({ host: h.name, reason: `it is ${h.state}` });
    return answers(h);
  });
  const found: Array<Array<Record<string, unknown>> | { reason: string }> = [];
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(UNION_CONCURRENCY, asked.length) }, async () => {
    while (next < asked.length) {
      const i = next++;
      found[i] = await itemsOf(d, asked[i]!, key, path);
    }
  }));
  const items: Array<Record<string, unknown>> = [];
  asked.forEach((h, i) => {
    const r = found[i]!;
    if (Array.isArray(r)) items.push(...r.map((item) => ({ ...item, host: h.name })));
    else unreachable.push({ host: h.name, reason: r.reason });
  });
  unreachable.sort((a, b) => (a.host < b.host ? -1 : a.host > b.host ? 1 : 0));
  return { [key]: items, unreachable };
}

async function itemsOf(d: PerHostDeps, h: HostRow, key: string, path: string): Promise<Array<Record<string, unknown>> | { reason: string }> {
  try {
    const r = await d.agents.call(h, 'GET', path);
    const body = parse(r.body);
    if (r.status >= 400) return { reason: agentError(h, r.status, body).message };
    const list = (body as Record<string, unknown> | null)?.[key];
    return Array.isArray(list) ? list.filter((x): x is Record<string, unknown> => x !== null && typeof x === 'object') : { reason: `its answer has no "${key}" list` };
  } catch (e) {
    return { reason: (e as Error).message };
  }
}

/** The options of a cluster route that takes a target all the same: an import (controller-archives.ts) goes to that host. */
export const TAKES_TARGET = { config: { takesTarget: true } };

const takesTarget = (req: FastifyRequest): boolean => (req.routeOptions.config as { takesTarget?: boolean } | undefined)?.takesTarget === true;

/**
 * The hook that refuses a target on the cluster's own routes (install it after the role checks: who may not call
 * a route is told that first). Routes that check their callers themselves (an agent's) and unknown paths are left be.
 */
export function refuseTargetOnClusterRoutes(app: FastifyInstance, isAgentRoute: (req: FastifyRequest) => boolean): void {
  app.addHook('onRequest', async (req) => {
    if (req.routeOptions.url === undefined || isAgentRoute(req) || perHostPath(req.url) || takesTarget(req)) return;
    const target = targetOf(req.headers);
    if (target === undefined) return;
    throw new CorralError('INVALID_SPEC', `target: ${req.method} ${req.url.split('?')[0]} is the cluster's, not one host's: drop --target (it is for images, volumes, networks, vhost-user back ends and the host itself; \`create --host ${target}\` places an instance)`, { field: 'target' });
  });
}

/** The per-host routes: every method under each PER_HOST_PREFIXES prefix. */
export function controllerPerHostRoutes(d: PerHostDeps) {
  return async (app: FastifyInstance): Promise<void> => {
    const forward = async (req: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> => {
      const path = req.url;
      const target = targetOf(req.headers);
      if (target === undefined) {
        const key = unionListKey(req.method, path);
        if (key === null) throw await targetRequired(d.store, req);
        return reply.send(await unionList(d, key, path));
      }
      // what the role check saw is what the agent is asked: no segment a URL would resolve away
      if (hasDotSegment(path)) throw new CorralError('INVALID_SPEC', `path: "${path.split('?')[0]}" has a "." or ".." segment`, { field: 'path' });
      const host = await targetHost(d.store, target);
      const res = isStream(req.body)
        ? await d.agents.relay(host, req.method, path, req.body, { contentType: String(req.headers['content-type']), length: req.headers['content-length'] })
        : await d.agents.stream(host, req.method, path, req.method === 'GET' || req.method === 'HEAD' ? undefined : req.body);
      return reply.status(res.statusCode ?? 502).header('content-type', String(res.headers['content-type'] ?? 'application/json')).send(res);
    };
    // an upload's body reaches `forward` as the request's stream, to be relayed as it comes
    acceptStreamedBody(app, 'application/octet-stream');
    for (const p of PER_HOST_PREFIXES) {
      app.all(`/v1/${p}`, forward);
      // `:name` where the daemon's routes have one, so that the audit names the resource
      if (p === 'host') app.all('/v1/host/*', forward);
      else {
        app.all(`/v1/${p}/:name`, forward);
        app.all(`/v1/${p}/:name/*`, forward);
      }
    }
  };
}

const isStream = (body: unknown): body is Readable => typeof (body as Readable | undefined)?.pipe === 'function';
