/**
 * `corral agent --simulate N`: one process standing in for N cluster hosts, so that controllers can be measured at
 * hundreds of hosts on one machine (as ZStack's simulator is used). Each simulated host (NAME-001, NAME-002, ...) is
 * what a real agent is, less QEMU and the host's own resources:
 * - its own cluster identity: a join token asked of the controller with the controller's (bearer) token, then the
 *   very join a real agent does (joinCluster, CA pinned from the token), its files in $CORRAL_DATA_DIR/sim/NAME;
 *   a host that joined before (a restarted simulator) uses the identity it left;
 * - its own HTTPS agent API on 127.0.0.1:(base port + i), served with its cluster certificate and taking
 *   controllers' client certificates as admins (buildApi and controllerCaller, as a real agent's);
 * - behind it the daemon's real services over the fake hypervisor (sim-graph.ts): instances are created, started,
 *   stopped and listed as on a real host, but no QEMU runs and a root disk is an empty file;
 * - its own heartbeat (AgentLink) reporting its pool, of the size given (--cpus, --memory).
 * It says one line on stdout when every host has joined and had a heartbeat answered, and stops them all on
 * SIGTERM or SIGINT (the simulated VMs end with it: a restarted simulator finds them gone).
 */
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import pino from 'pino';
import { buildApi, closeApi } from '../api/server.js';
import { agentLinkHooks } from '../cluster/agent-hooks.js';
import { AgentLink, clusterRequest, joinCluster, loadIdentity, replyError, type AgentIdentity } from '../cluster/agent-link.js';
import { controllerCaller } from '../cluster/controller-peer.js';
import { CorralError } from '../core/errors.js';
import { dataDirFromEnv, dataPaths } from '../core/paths.js';
import { AuditLog } from '../services/audit.js';
import { plantEmptyImage, simServiceGraph, type SimGraph } from './sim-graph.js';
import { ensureToken } from './token.js';

const GiB = 1024 ** 3;

export interface SimulateOptions {
  /** how many hosts */
  hosts: number;
  /** a controller (https://HOST:PORT): join tokens are asked of it, hosts join through it and heartbeat to it */
  join: string;
  /** the controller's bearer token (its data dir's `token` file), to ask for join tokens */
  controllerToken: string;
  /** the cluster CA (PEM) the controller's certificate is checked against while asking for join tokens */
  controllerCa: string;
  /** host names are PREFIX-001, ... (default "sim") */
  namePrefix?: string;
  /** host i (from 0) serves on 127.0.0.1:(basePort + i) (default 17000) */
  basePort?: number;
  /** each host's size (default 32 CPUs and 128 GiB) */
  cpus?: number;
  memory?: number;
  dataDir?: string;
  version: string;
  /** how many hosts join at once (default 8: each join makes a key and a certificate with openssl) */
  joinConcurrency?: number;
}

interface SimHost {
  name: string;
  graph: SimGraph;
  api: FastifyInstance;
  link: AgentLink;
  audit: AuditLog;
}

export function simHostName(prefix: string, i: number): string {
  return `${prefix}-${String(i + 1).padStart(3, '0')}`;
}

/** A join token from the controller, asked with its bearer token over TLS checked against the cluster CA. */
async function joinToken(o: SimulateOptions): Promise<string> {
  const r = await clusterRequest(o.join, 'POST', '/v1/cluster/join-tokens', {}, { ca: o.controllerCa }, 10_000, { authorization: `Bearer ${o.controllerToken}` });
  if (r.status !== 201) throw replyError(r, `the controller at ${o.join} gave no join token`);
  return (r.body as { token: string }).token;
}

/** Start one simulated host: identity (join once), services over the fake hypervisor, HTTPS API, heartbeat. */
async function startHost(o: SimulateOptions, i: number, log: pino.Logger): Promise<SimHost> {
  const name = simHostName(o.namePrefix ?? 'sim', i);
  const port = (o.basePort ?? 17000) + i;
  const dir = join(o.dataDir ?? dataDirFromEnv(), 'sim', name);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  let id: AgentIdentity | null = loadIdentity(dir);
  if (id && id.name !== name) throw new CorralError('INVALID_SPEC', `${dir} holds the identity of host "${id.name}", not "${name}"`);
  id ??= await joinCluster(dir, { url: o.join, token: await joinToken(o), name, address: `https://127.0.0.1:${port}`, agentVersion: o.version });
  const graph = await simServiceGraph({ dataDir: dir, cpus: o.cpus ?? 32, memory: o.memory ?? 128 * GiB, log: log.child({ host: name }) });
  plantEmptyImage(dir);
  const paths = dataPaths(dir);
  const audit = new AuditLog(paths.audit);
  let api: FastifyInstance;
  try {
    api = await buildApi(graph.services, {
      token: ensureToken(paths.token), audit,
      tls: { cert: `${id.certPem.trim()}\n${id.caPem.trim()}\n`, key: id.keyPem, ca: id.caPem },
      peer: controllerCaller(id.caPem),
    });
    await api.listen({ host: '127.0.0.1', port });
  } catch (e) {
    graph.stop();
    audit.close();
    throw e;
  }
  const instances = graph.services.instances;
  // no watchdog process: a simulated host's VMs are objects in its fake driver
  const link = new AgentLink(id, agentLinkHooks({ instances, store: graph.store, events: graph.services.events, firstEventId: 1, version: o.version, sharedPool: null, log, migrations: graph.services.migrationRecovery }), log.child({ host: name }));
  link.start();
  return { name, graph, api, link, audit };
}

async function stopHost(h: SimHost): Promise<void> {
  h.link.stop();
  await closeApi(h.api, 2000);
  h.graph.stop();
  h.audit.close();
}

/** Run up to `limit` of `jobs` at a time; the first failure is thrown once every started job has ended. */
async function inBatches<T>(count: number, limit: number, job: (i: number) => Promise<T>): Promise<T[]> {
  const out: T[] = [];
  let next = 0;
  let failed: unknown = null;
  await Promise.all(Array.from({ length: Math.min(limit, count) }, async () => {
    while (failed === null && next < count) {
      const i = next++;
      try {
        out[i] = await job(i);
      } catch (e) {
        failed ??= e;
      }
    }
  }));
  if (failed !== null) throw failed;
  return out;
}

function rssMiB(): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'));
  return m ? Number(m[1]) / 1024 : process.memoryUsage().rss / 1024 ** 2;
}

/** Run the simulator until SIGTERM or SIGINT (see the file's comment). */
export async function runSimulator(o: SimulateOptions): Promise<void> {
  if (!Number.isInteger(o.hosts) || o.hosts < 1 || o.hosts > 5000) throw new CorralError('INVALID_SPEC', `--simulate: a number of hosts from 1 to 5000, got ${o.hosts}`, { field: 'simulate' });
  const base = o.basePort ?? 17000;
  if (!Number.isInteger(base) || base < 1 || base + o.hosts - 1 > 65535) throw new CorralError('INVALID_SPEC', `--base-port: ${base} to ${base + o.hosts - 1} are not all TCP ports`, { field: 'basePort' });
  if (o.cpus !== undefined && (!Number.isInteger(o.cpus) || o.cpus < 1 || o.cpus > 4096)) throw new CorralError('INVALID_SPEC', `--cpus: a whole number from 1 to 4096, got ${o.cpus}`, { field: 'cpus' });
  if (o.memory !== undefined && o.memory < GiB) throw new CorralError('INVALID_SPEC', '--memory: at least 1G', { field: 'memory' });
  // one log for all hosts, each line naming its host; quiet unless asked (hundreds of hosts say the same things)
  const log = pino({ level: process.env.CORRAL_LOG_LEVEL ?? 'warn' });
  const rss0 = rssMiB();
  const t0 = performance.now();
  const hosts: SimHost[] = [];
  let stopping = false;
  const stopAll = async (): Promise<void> => {
    await Promise.all(hosts.map((h) => stopHost(h).catch((e: Error) => log.warn({ host: h.name, error: e.message }, 'simulated host did not stop cleanly'))));
  };
  const stopped = new Promise<string>((resolve) => {
    for (const sig of ['SIGTERM', 'SIGINT'] as const) process.once(sig, () => { stopping = true; resolve(sig); });
  });
  try {
    await inBatches(o.hosts, o.joinConcurrency ?? 8, async (i) => {
      if (stopping) return null; // stopped while starting: the hosts started so far are stopped below
      const h = await startHost(o, i, log);
      hosts.push(h);
      return h;
    });
    // up: every host has had a heartbeat answered
    while (!stopping && hosts.some((h) => h.link.state !== 'up')) {
      const removed = hosts.find((h) => h.link.state === 'removed');
      if (removed) throw new CorralError('UNTRUSTED_PEER', `simulated host ${removed.name} was removed from the cluster: its heartbeats are refused`);
      await new Promise((r) => setTimeout(r, 100));
    }
  } catch (e) {
    await stopAll();
    throw e;
  }
  if (!stopping) {
    const rss = rssMiB();
    const names = `${hosts.length === 1 ? hosts[0]!.name : `${simHostName(o.namePrefix ?? 'sim', 0)}..${simHostName(o.namePrefix ?? 'sim', o.hosts - 1)}`}`;
    process.stdout.write(`corral simulator: ${o.hosts} host${o.hosts === 1 ? '' : 's'} joined and up (${names} on 127.0.0.1:${base}-${base + o.hosts - 1}) in ${((performance.now() - t0) / 1000).toFixed(1)} s; process RSS ${rss.toFixed(0)} MiB (${((rss - rss0) / o.hosts).toFixed(2)} MiB a host)\n`);
  }
  const sig = await stopped;
  log.warn({ signal: sig }, 'simulator stopping');
  await stopAll();
}
