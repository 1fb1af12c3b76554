/**
 * A controller's routes for copies and archives of instances (a daemon's: src/api/routes-copies.ts), so that
 * `corral copy|publish|export|import` work through a controller as on a single daemon. The agent's job answer (JSON
 * lines) is relayed as it comes (job-relay.ts), so a long copy reports its progress and is never cut by a timeout.
 * - POST /v1/instances/:name/copy: a name taken anywhere in the cluster is ALREADY_EXISTS (placement's check); the copy is placed on
 *   its source's host (it reserves the source's vCPUs and memory there: NO_HOST_FITS when that host is full, and a
 *   host in maintenance takes none), the row recorded before the agent is asked, its view stored from the result
 *   before the result goes on (listed at once); a refusal or a failure there removes the row.
 * - POST /v1/instances/:name/publish and /export: sent to the owner and relayed. An export's id is noted with its
 *   host (the latest EXPORT_HINTS of them; forgotten once downloaded).
 * - GET /v1/exports/:id: the archive, from the host that holds it: the noted host first, then each other host that
 *   answers (up or in maintenance) in turn until one does not say NOT_FOUND (another controller may have relayed the
 *   export, and ids are random); its answer (length, type) streamed through as it comes, with backpressure.
 * - POST /v1/instances/import[?name=NEW]: the archive (application/x-tar) is streamed to one host: the target
 *   (`--target`, the x-corral-target header) or the placer's choice. A name given is checked against the whole
 *   cluster before a byte is read; then the manifest (the archive's first member, at most 1 MiB: archive-head.ts) is
 *   read and checked here, the instance placed from its spec (vCPUs, memory) and recorded, and what was read goes
 *   to the host followed by the rest of the upload. The host checks everything again and answers; its refusal
 *   (INVALID_ARCHIVE, ALREADY_EXISTS...) comes back as it said, with the row removed.
 * An import always makes a local root disk (an archive of an instance on the shared pool imports as a local one).
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { CorralError } from '../core/errors.js';
import { validateName } from '../core/names.js';
import { targetOf } from '../core/target.js';
import { acceptStreamedBody, declaredLength, dropRest, streamedBody } from '../api/upload-body.js';
import type { AgentClient } from './agent-client.js';
import { readArchiveHead } from './archive-head.js';
import type { ClusterInstances } from './cluster-instances.js';
import type { ClusterStore, HostRow } from './cluster-store.js';
import { hostOf } from './controller-instances.js';
import { TAKES_TARGET, answers } from './controller-per-host.js';
import { summaryOfReply } from './instance-reports.js';
import { relayJob, type JobHooks } from './job-relay.js';

export interface ArchiveRouteDeps {
  store: Pick<ClusterStore, 'getHost' | 'listHosts'>;
  instances: Pick<ClusterInstances, 'get' | 'place' | 'remove' | 'setView' | 'setUuid'>;
  agents: Pick<AgentClient, 'stream' | 'relay'>;
  log: { info: (o: object, m: string) => void; warn: (o: object, m: string) => void };
}

/** Export ids noted with their host, at most (the oldest forgotten first: a hint only orders the hosts asked). */
const EXPORT_HINTS = 1000;
const EXPORT_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

type Named = FastifyRequest<{ Params: { name: string } }>;

export function controllerArchiveRoutes(d: ArchiveRouteDeps) {
  const hints = new Map<string, string>();
  const note = (id: string, host: string): void => {
    hints.delete(id);
    hints.set(id, host);
    while (hints.size > EXPORT_HINTS) hints.delete(hints.keys().next().value!);
  };

  /** A name taken anywhere in the cluster: ALREADY_EXISTS, naming its host. */
  const refuseTaken = async (name: string): Promise<void> => {
    const there = await d.instances.get(name);
    if (there) throw new CorralError('ALREADY_EXISTS', `an instance named "${name}" exists (on host ${there.host})`, { name, field: 'name' });
  };

  /** The hooks of a job that makes instance `name` on `host`: its row's view from the result, or the row removed. */
  const making = (name: string, host: string): JobHooks => ({
    onResult: async (line) => {
      const view = line.instance;
      const summary = summaryOfReply(view, name);
      if (summary) await d.instances.setView(name, host, summary);
      else if (typeof (view as { uuid?: unknown } | undefined)?.uuid === 'string') await d.instances.setUuid(name, (view as { uuid: string }).uuid);
      d.log.info({ instance: name, host }, 'instance made from another (copy or import)');
      return view !== null && typeof view === 'object' ? { ...line, instance: { ...(view as object), host } } : undefined;
    },
    onFailure: async (why) => {
      await d.instances.remove(name, why);
    },
  });

  /** The owner's answer to this request, relayed as a job. */
  const toOwner = async (req: Named, reply: FastifyReply, hooks: (host: HostRow) => JobHooks = () => ({})): Promise<FastifyReply> => {
    const { host } = await hostOf(d, req.params.name);
    const res = await d.agents.stream(host, 'POST', req.url, req.body ?? undefined);
    return relayJob(reply, res, host.name, hooks(host));
  };

  return async (app: FastifyInstance): Promise<void> => {
    acceptStreamedBody(app, 'application/x-tar');

    app.post('/v1/instances/:name/copy', async (req: Named, reply) => {
      const to = validateName('name', (req.body as { name?: unknown } | undefined)?.name);
      const { inst, host } = await hostOf(d, req.params.name);
      await d.instances.place({ name: to, cpus: inst.cpus, memory: inst.memory, host: host.name, why: `a copy of "${inst.name}", on its host ${host.name}` });
      const hooks = making(to, host.name);
      let res;
      try {
        res = await d.agents.stream(host, 'POST', req.url, req.body);
      } catch (e) {
        await hooks.onFailure!(`its copy on host ${host.name} failed: ${(e as Error).message}`);
        throw e;
      }
      return relayJob(reply, res, host.name, hooks);
    });

    app.post('/v1/instances/:name/publish', async (req: Named, reply) => toOwner(req, reply));

    app.post('/v1/instances/:name/export', async (req: Named, reply) => toOwner(req, reply, (host) => ({
      onResult: async (line) => {
        const id = (line.export as { id?: unknown } | undefined)?.id;
        if (typeof id === 'string') note(id, host.name);
      },
    })));

    app.get('/v1/exports/:id', async (req: FastifyRequest<{ Params: { id: string } }>, reply) => {
      const id = req.params.id;
      const notFound = (why: string): CorralError => new CorralError('NOT_FOUND', `no archive ${id} is waiting for its download on any host of the cluster (${why})`, { id });
      if (!EXPORT_ID.test(id)) throw notFound('not an export\'s id');
      const hint = hints.get(id);
      const hosts = (await d.store.listHosts()).filter(answers).sort((a, b) => Number(b.name === hint) - Number(a.name === hint));
      const couldNot: string[] = [];
      for (const h of hosts) {
        let res;
        try {
          res = await d.agents.stream(h, 'GET', `/v1/exports/${id}`);
        } catch (e) {
          couldNot.push(`${h.name}: ${(e as Error).message}`);
          continue;
        }
        if (res.statusCode === 404) {
          res.resume();
          continue;
        }
        hints.delete(id);
        for (const k of ['content-type', 'content-length']) if (res.headers[k] !== undefined) void reply.header(k, res.headers[k]);
        return reply.status(res.statusCode ?? 502).send(res);
      }
      throw notFound(`asked: ${hosts.map((h) => h.name).join(', ') || 'no host answers now'}${couldNot.length > 0 ? `; could not ask ${couldNot.join('; ')}` : ''}`);
    });

    app.post('/v1/instances/import', TAKES_TARGET, async (req, reply) => {
      const body = streamedBody(req, 'the archive (content-type application/x-tar)');
      try {
        const target = targetOf(req.headers);
        const q = (req.query ?? {}) as Record<string, unknown>;
        const extra = Object.keys(q).filter((k) => k !== 'name');
        if (extra.length > 0) throw new CorralError('INVALID_SPEC', `${extra[0]}: not a parameter of an import (name is)`, { field: extra[0] });
        const asked = q.name === undefined ? undefined : validateName('name', q.name);
        if (asked !== undefined) await refuseTaken(asked);
        const { manifest, prefix } = await readArchiveHead(body);
        const name = asked ?? manifest.instance.name;
        const spec = manifest.instance.spec;
        const p = await d.instances.place({
          name, cpus: spec.cpus, memory: spec.memory, ...(target !== undefined ? { host: target } : {}),
          why: `imported from an archive of "${manifest.instance.name}"${target !== undefined ? `, on host ${target} as asked` : ''}`,
        });
        const hooks = making(name, p.host.name);
        // once the host has answered, nothing more goes to it (it refused early, or read the archive whole), and what
        // the client still sends is dropped (the relay's rest: drop)
        let res;
        try {
          res = await d.agents.relay(p.host, 'POST', req.url, body, { contentType: 'application/x-tar', length: declaredLength(req), prefix });
        } catch (e) {
          await hooks.onFailure!(`its import on host ${p.host.name} failed: ${(e as Error).message}`);
          throw e;
        }
        d.log.info({ instance: name, host: p.host.name }, 'an archive goes to a host for import');
        return relayJob(reply, res, p.host.name, hooks);
      } catch (e) {
        dropRest(body);
        throw e;
      }
    });
  };
}
