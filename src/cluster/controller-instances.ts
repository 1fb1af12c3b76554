/**
 * A controller's instance routes: the same API as a single daemon's, over the cluster.
 * - POST /v1/instances places the instance (cluster-instances.ts; `host`, `group`, `antiAffinity` and `hostLabels`
 *   choose or constrain the host; an HA restart honours group and labels again) and creates it on that host's agent
 *   with the rest of the body, as is; a refusal there (the agent's own validation, its image missing) gives back
 *   the reservation and is answered as the agent said.
 * - GET /v1/instances reads PostgreSQL only, in one query that makes the reply's JSON: each instance as its host last reported it (heartbeats
 *   carry the summaries when they change; the controller's own calls store the agent's reply), with `host`,
 *   `uptime` from startedAt on the database's clock, `rss: null` (live only: `corral show` has it) and `stale`. An
 *   instance whose host is unreachable or fenced, or that no host reported yet, is listed with state `unknown`,
 *   `stale: true` and its last reported state in `lastState`, as Proxmox and Incus show a lost node's guests.
 * - Everything under /v1/instances/NAME is forwarded to the owning agent (method, path, query, body) and its
 *   answer relayed as it is; `host` is added to an instance's view; a delete there forgets the instance here; an
 *   instance view in the answer to any other call that is not a GET is stored for the list.
 * - GET /v1/pool sums the `up` hosts and lists each one (with its accelerator and most capable CPU model), and gives
 *   the cluster's CPU baselines (migration-checks.ts).
 * - A create asking for `cpuModel` auto (or none) that lands on a KVM host gets the cluster's KVM baseline instead.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { CorralError } from '../core/errors.js';
import { validateLabels, type Labels } from '../core/labels.js';
import { validateName } from '../core/names.js';
import { DEFAULT_MEMORY } from '../core/spec.js';
import { parseSize } from '../core/units.js';
import type { ClusterStore, HostRow } from './cluster-store.js';
import type { ClusterInstances, ClusterInstance } from './cluster-instances.js';
import { parse, type AgentClient, type AgentReply } from './agent-client.js';
import { summaryOfReply } from './instance-reports.js';
import { tail } from './cluster-events.js';
import { baselinesOf, withResolvedCpuModel } from './migration-checks.js';
import { bestModel } from '../core/cpu-models.js';

export interface ControllerInstanceDeps {
  store: ClusterStore;
  instances: ClusterInstances;
  /** GET /v1/instances's JSON */
  list: { listJson(): Promise<string> };
  agents: AgentClient;
  log: { info: (o: object, m: string) => void; warn: (o: object, m: string) => void };
}

type Body = Record<string, unknown>;

interface Request { name: string; cpus: number; memory: number; host?: string; group?: string; antiAffinity: boolean; hostLabels?: Labels; rest: Body }

function requestOf(body: Body): Request {
  const { host, group, antiAffinity, hostLabels, ...rest } = body;
  const name = validateName('name', body.name);
  const cpus = body.cpus === undefined ? 1 : body.cpus;
  if (typeof cpus !== 'number' || !Number.isInteger(cpus) || cpus < 1) throw new CorralError('INVALID_SPEC', `cpus: must be a whole number, at least 1, got ${JSON.stringify(cpus)}`, { field: 'cpus' });
  const memory = body.memory === undefined ? DEFAULT_MEMORY : parseSize('memory', body.memory);
  if (host !== undefined && typeof host !== 'string') throw new CorralError('INVALID_SPEC', 'host: must be a host name', { field: 'host' });
  if (group !== undefined) validateName('group', group);
  if (antiAffinity !== undefined && typeof antiAffinity !== 'boolean') throw new CorralError('INVALID_SPEC', 'antiAffinity: must be true or false', { field: 'antiAffinity' });
  if (antiAffinity === true && group === undefined) throw new CorralError('INVALID_SPEC', 'antiAffinity: keeps the members of a group apart: give the group too', { field: 'antiAffinity' });
  const labels = hostLabels === undefined ? undefined : validateLabels('hostLabels', hostLabels);
  return {
    name, cpus, memory, ...(host !== undefined ? { host: host as string } : {}), ...(group !== undefined ? { group: group as string } : {}), antiAffinity: antiAffinity === true,
    ...(labels && Object.keys(labels).length > 0 ? { hostLabels: labels } : {}), rest,
  };
}

function relay(reply: FastifyReply, r: AgentReply, extra?: Body): FastifyReply {
  if (extra && r.status < 300) {
    const parsed = parse(r.body);
    if (parsed && typeof parsed === 'object') return reply.status(r.status).send({ ...(parsed as Body), ...extra });
  }
  return reply.status(r.status).header('content-type', r.contentType).send(r.body);
}

export async function hostOf(d: { store: Pick<ClusterStore, 'getHost'>; instances: Pick<ClusterInstances, 'get'> }, name: string): Promise<{ inst: ClusterInstance; host: HostRow }> {
  const inst = await d.instances.get(name);
  if (!inst) throw new CorralError('INSTANCE_NOT_FOUND', `instance "${name}" does not exist in the cluster`, { name });
  const host = await d.store.getHost(inst.host);
  if (!host) throw new CorralError('HOST_UNAVAILABLE', `the host "${inst.host}" of instance "${name}" is gone from the cluster`, { host: inst.host });
  if (host.state === 'unreachable' || host.state === 'fenced') {
    throw new CorralError('HOST_UNAVAILABLE', `host "${host.name}", which runs instance "${name}", is ${host.state}`, { host: host.name, state: host.state });
  }
  return { inst, host };
}

export function controllerInstanceRoutes(d: ControllerInstanceDeps) {
  return async (app: FastifyInstance): Promise<void> => {
    app.post('/v1/instances', async (req, reply) => {
      const r = requestOf((req.body ?? {}) as Body);
      if (r.rest.adopt !== undefined) throw new CorralError('INVALID_SPEC', 'adopt: is for the cluster\'s own HA restarts, not a create through a controller', { field: 'adopt' });
      const shared = r.rest.pool === 'shared';
      if (r.rest.ha === true && !shared) throw new CorralError('INVALID_SPEC', 'ha: a highly available instance needs its root disk on the shared pool (--pool shared), so that another host can start it', { field: 'ha' });
      const { start: _start, ...spec } = r.rest;
      const placed = await d.instances.place({
        name: r.name, cpus: r.cpus, memory: r.memory, ...(r.host ? { host: r.host } : {}), ...(r.group ? { group: r.group } : {}), antiAffinity: r.antiAffinity,
        ...(r.hostLabels ? { labels: r.hostLabels } : {}), shared, ha: r.rest.ha === true, spec,
        // cpuModel auto under KVM: the cluster's CPU baseline (migration-checks.ts), kept for HA restarts too
        specFor: (host, hosts) => withResolvedCpuModel(spec, host, hosts),
      });
      const cpuModel = placed.instance.spec?.cpuModel;
      let res: AgentReply;
      try {
        res = await d.agents.call(placed.host, 'POST', '/v1/instances', cpuModel !== undefined && cpuModel !== r.rest.cpuModel ? { ...r.rest, cpuModel } : r.rest);
      } catch (e) {
        await d.instances.remove(r.name, `its create on host ${placed.host.name} failed: ${(e as Error).message}`);
        throw e;
      }
      if (res.status >= 300) {
        await d.instances.remove(r.name, `host ${placed.host.name} refused its create (${res.status}): ${tail(res.body.toString(), 300)}`);
        return relay(reply, res);
      }
      const view = parse(res.body) as { uuid?: string };
      const summary = summaryOfReply(view, r.name);
      if (summary) await d.instances.setView(r.name, placed.host.name, summary);
      else if (typeof view?.uuid === 'string') await d.instances.setUuid(r.name, view.uuid);
      d.log.info({ instance: r.name, host: placed.host.name }, 'instance placed');
      return relay(reply, res, { host: placed.host.name });
    });

    app.get('/v1/instances', async (_req, reply) => reply.header('content-type', 'application/json; charset=utf-8').send(await d.list.listJson()));

    const forward = async (req: FastifyRequest<{ Params: { name: string } }>, reply: FastifyReply): Promise<FastifyReply> => {
      const { host } = await hostOf(d, req.params.name);
      const path = req.url;
      const body = req.method === 'GET' || req.method === 'HEAD' || req.body === undefined ? undefined : req.body;
      const res = await d.agents.call(host, req.method, path, body);
      const whole = path.split('?')[0] === `/v1/instances/${encodeURIComponent(req.params.name)}`;
      if (whole && req.method === 'DELETE' && (res.status < 300 || (res.status === 404 && /INSTANCE_NOT_FOUND/.test(res.body.toString())))) {
        await d.instances.remove(req.params.name, res.status < 300 ? `deleted on host ${host.name}` : `deleted: host ${host.name} no longer had it`);
      } else if (req.method !== 'GET' && req.method !== 'HEAD' && res.status < 300) {
        // start, stop, kill, PATCH...: the list shows what the agent answered at once
        const summary = summaryOfReply(parse(res.body), req.params.name);
        if (summary) await d.instances.setView(req.params.name, host.name, summary);
      }
      return relay(reply, res, whole && req.method !== 'DELETE' ? { host: host.name } : undefined);
    };
    app.all('/v1/instances/:name', forward);
    app.all('/v1/instances/:name/*', forward);

    app.get('/v1/pool', async () => {
      const hosts = await d.store.listHosts();
      const each = hosts.map((h) => {
        const cap = (h.capacity ?? {}) as { cpus?: number; memory?: number };
        const a = h.reserved;
        const capacity = { cpus: cap.cpus ?? 0, memory: cap.memory ?? 0 };
        const cpu = h.cpuReport ? { accel: h.cpuReport.accel, qemuVersion: h.cpuReport.qemuVersion, best: bestModel(h.cpuReport.models) } : null;
        return { name: h.name, state: h.state, capacity, allocated: a, free: { cpus: capacity.cpus - a.cpus, memory: capacity.memory - a.memory }, cpu };
      });
      const up = each.filter((h) => h.state === 'up');
      const sum = (f: (h: (typeof each)[number]) => number, list = up): number => list.reduce((s, h) => s + f(h), 0);
      return {
        capacity: { cpus: sum((h) => h.capacity.cpus), memory: sum((h) => h.capacity.memory) },
        allocated: { cpus: sum((h) => h.allocated.cpus, each), memory: sum((h) => h.allocated.memory, each), instances: sum((h) => h.allocated.instances, each) },
        free: { cpus: sum((h) => h.free.cpus), memory: sum((h) => h.free.memory) },
        hosts: each,
        cpuBaselines: baselinesOf(hosts),
      };
    });
  };
}

