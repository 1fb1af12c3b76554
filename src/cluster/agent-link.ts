/**
 * An agent's link to its cluster: joining (once, with a join token) and the heartbeat after that.
 *
 * Joining: the token carries the SHA-256 of the cluster CA. The agent fetches the CA from the controller without
 * trusting the connection, keeps it only if its hash is the token's, and from then on talks to controllers only
 * over TLS verified by that CA: it sends a certificate request for a key it made (the key never leaves the host)
 * and gets its certificate. Identity files live in $CORRAL_DATA_DIR/cluster (0700; agent.key 0600).
 *
 * Heartbeat: every few seconds the agent reports its pool (capacity, allocation), version, memory report and (when it
 * changed, as the instance list) its CPU report (services/host-report.ts), over mutual TLS. A
 * controller or PostgreSQL that does not answer changes nothing on the host: VMs keep running and the next beat
 * goes out on time. A refusal because the host was removed stops the beats (the log says so). A beat carries the
 * summary of each instance of the host only when that list changed since the last answered beat (instance-reports.ts):
 * the controllers list the cluster's instances from what the hosts reported.
 */
import { createHash, randomUUID } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { join } from 'node:path';
import { CorralError } from '../core/errors.js';
import { parseJoinToken } from '../core/join-token.js';
import { validateLabels } from '../core/labels.js';
import { makeKeyAndCsr } from './pki.js';
import { ensureWatchdog, WatchdogPet, type HaPid } from './watchdog.js';
import type { InstanceSummary } from '../services/instance-view.js';
import type { MigrationMark } from '../services/migration-recovery.js';
import type { StoredEvent } from '../store/store.js';
import { ReportAck, summariesHash } from './instance-reports.js';
import type { CpuReport } from '../core/cpu-models.js';
import type { MemoryReport } from '../core/migration-checks.js';

export interface AgentIdentity {
  /** the controller URLs the agent talks to (https://HOST:PORT) */
  controllers: string[];
  name: string;
  uuid: string;
  caPem: string;
  certPem: string;
  keyPem: string;
}

interface Reply { status: number; body: unknown }

export interface ClusterTls { ca?: string; cert?: string; key?: string; insecure?: boolean }

/** One HTTPS request to a controller; resolves with status and parsed body, whatever the status. */
export function clusterRequest(base: string, method: string, path: string, body: unknown, tls: ClusterTls, timeoutMs = 10_000, headers: Record<string, string> = {}): Promise<Reply> {
  const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
  const u = new URL(path, base);
  return new Promise((resolve, reject) => {
    const req = request(u, {
      method, timeout: timeoutMs,
      headers: { ...headers, accept: 'application/json', ...(payload ? { 'content-type': 'application/json', 'content-length': String(payload.length) } : {}) },
      ...(tls.insecure ? { rejectUnauthorized: false } : { ca: tls.ca }),
      ...(tls.cert ? { cert: tls.cert, key: tls.key } : {}),
    }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let parsed: unknown = text;
        try { parsed = JSON.parse(text); } catch { /* not JSON: kept as text */ }
        resolve({ status: res.statusCode ?? 0, body: parsed });
      });
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end(payload);
  });
}

/** The API's error in a reply, as a CorralError with its code (or COMMAND_FAILED for a body that is not one). */
export function replyError(r: Reply, what: string): CorralError {
  const e = (r.body as { error?: Record<string, unknown> } | null)?.error;
  if (e && typeof e.code === 'string' && typeof e.message === 'string') {
    const { code, message, ...rest } = e;
    return new CorralError(code as never, `${what}: ${message as string}`, { ...rest, status: r.status });
  }
  return new CorralError('COMMAND_FAILED', `${what}: HTTP ${r.status} ${typeof r.body === 'string' ? r.body.slice(0, 200) : ''}`);
}

export function identityDir(dataDir: string): string {
  return join(dataDir, 'cluster');
}

export function loadIdentity(dataDir: string): AgentIdentity | null {
  const dir = identityDir(dataDir);
  if (!existsSync(join(dir, 'cluster.json'))) return null;
  const meta = JSON.parse(readFileSync(join(dir, 'cluster.json'), 'utf8')) as { controllers: string[]; name: string; uuid: string };
  const read = (f: string): string => readFileSync(join(dir, f), 'utf8');
  return { ...meta, caPem: read('ca.crt'), certPem: read('agent.crt'), keyPem: read('agent.key') };
}

function saveIdentity(dataDir: string, id: AgentIdentity): void {
  const dir = identityDir(dataDir);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
  writeFileSync(join(dir, 'agent.key'), id.keyPem, { mode: 0o600 });
  writeFileSync(join(dir, 'agent.crt'), id.certPem, { mode: 0o644 });
  writeFileSync(join(dir, 'ca.crt'), id.caPem, { mode: 0o644 });
  // the record last: an identity is there whole or not at all
  const tmp = join(dir, `cluster.json.tmp${process.pid}`);
  writeFileSync(tmp, `${JSON.stringify({ controllers: id.controllers, name: id.name, uuid: id.uuid }, null, 2)}\n`, { mode: 0o600 });
  renameSync(tmp, join(dir, 'cluster.json'));
}

export interface JoinOptions {
  url: string;
  token: string;
  name: string;
  /** this agent's API (https://IP:PORT), or empty */
  address: string;
  agentVersion: string;
  /** the labels the host joins with (corral agent --label) */
  labels?: Record<string, string>;
}

/** Enrol this host: see the file's comment. Saves the identity in the data dir and returns it. */
export async function joinCluster(dataDir: string, o: JoinOptions): Promise<AgentIdentity> {
  const existing = loadIdentity(dataDir);
  if (existing) throw new CorralError('ALREADY_EXISTS', `this host already joined a cluster as "${existing.name}" (${identityDir(dataDir)}): start it with corral agent, without --join`);
  const token = parseJoinToken(o.token);
  const base = controllerUrl(o.url);
  const labels = validateLabels('label', o.labels ?? {});
  let ca: Reply;
  try {
    ca = await clusterRequest(base, 'GET', '/v1/cluster/ca', undefined, { insecure: true });
  } catch (e) {
    throw new CorralError('HOST_UNAVAILABLE', `cannot reach the controller at ${base}: ${(e as Error).message}`, { url: base });
  }
  const caPem = (ca.body as { certPem?: unknown } | null)?.certPem;
  if (ca.status !== 200 || typeof caPem !== 'string') throw replyError(ca, `the controller at ${base} gave no cluster CA`);
  const der = pemBody(caPem);
  const got = createHash('sha256').update(der).digest('hex');
  if (got !== token.caSha256) {
    throw new CorralError('UNTRUSTED_PEER', `the server at ${base} is not the cluster this token is for: its CA's SHA-256 is ${got}, the token's ${token.caSha256}; nothing was sent to it`);
  }
  const { keyPem, csrPem } = await makeKeyAndCsr(o.name);
  const uuid = randomUUID();
  let r: Reply;
  try {
    r = await clusterRequest(base, 'POST', '/v1/cluster/join', { token: o.token, name: o.name, uuid, address: o.address, csr: csrPem, agentVersion: o.agentVersion, labels }, { ca: caPem });
  } catch (e) {
    throw new CorralError('HOST_UNAVAILABLE', `cannot join through ${base}: ${(e as Error).message}`, { url: base });
  }
  if (r.status !== 201) throw replyError(r, `the controller at ${base} refused the join`);
  const certPem = (r.body as { certPem: string }).certPem;
  const id: AgentIdentity = { controllers: [base], name: o.name, uuid, caPem, certPem, keyPem };
  saveIdentity(dataDir, id);
  return id;
}

function pemBody(pem: string): Buffer {
  return Buffer.from(pem.replace(/-----(BEGIN|END) CERTIFICATE-----/g, '').replace(/\s+/g, ''), 'base64');
}

function controllerUrl(text: string): string {
  let u: URL;
  try {
    u = new URL(text);
  } catch {
    throw new CorralError('INVALID_SPEC', `join: "${text}" is not a URL (https://CONTROLLER:PORT)`, { field: 'join' });
  }
  if (u.protocol !== 'https:') throw new CorralError('INVALID_SPEC', `join: the controller is reached over https://, not "${text}"`, { field: 'join' });
  return u.origin;
}

export interface LinkLog {
  debug?: (o: object, m: string) => void;
  info: (o: object, m: string) => void;
  warn: (o: object, m: string) => void;
  error: (o: object, m: string) => void;
}

export type LinkState = 'connecting' | 'up' | 'controller-unreachable' | 'removed';

/** What the agent's services give the link. */
export interface LinkHooks {
  /** the heartbeat's body: the pool, the version, the shared pool, the HA instances here, every instance's summary */
  report(): Promise<{
    capacity: unknown; allocation: unknown; agentVersion: string; sharedPool: string | null; ha: string[]; instances: InstanceSummary[];
    /** what the host's QEMU can run (null: not probed yet); sent only when it changed, as the instance list */
    cpuReport?: CpuReport | null;
    memoryReport?: MemoryReport;
    migrations?: MigrationMark[];
  }>;
  /** the running HA instances' QEMU pids, for the watchdog */
  haPids(): HaPid[];
  /** kill every HA instance here: the lease is lost; the names of those it killed */
  fence(reason: string): Promise<string[]>;
  /** start again the HA instances the lease's loss killed, the cluster having moved none of them meanwhile */
  restart(names: string[]): Promise<void>;
  /** remove the records of instances the cluster moved to another host (their shared root disks stay) */
  forget(names: string[]): Promise<void>;
  /**
   * remove what live migrations left here that no controller will finish (the report's `migrations` the controller
   * answered): `sentAt`, when the beat that reported them was built (ms since the epoch)
   */
  abandon?(names: string[], sentAt: number): Promise<void>;
  /**
   * the host's own events after an id, oldest first (for the cluster's events), and the id to start from when the
   * cluster has none of this host's yet (its agent's start: earlier history stays on the host); none: not sent
   */
  events?: { since(id: number, limit: number): StoredEvent[]; firstId: number };
}

interface BeatReply { state?: string; leaseMs?: number; watchdogMs?: number; forget?: string[]; abandon?: string[]; eventsAfter?: number }

/** a host's own events sent with one beat, at most (a backlog goes over the next beats) */
const EVENTS_PER_BEAT = 200;

/**
 * The heartbeat loop, and the lease it renews. Each beat goes to the first controller that answers; an answered
 * beat renews the lease from the moment it was sent (the database stamps it later, so the agent's view is the
 * shorter one). When no beat has been answered for the lease less a margin, the agent fences itself: it kills its HA
 * instances before the controller may start them elsewhere. Every tick also pets the watchdog (watchdog.ts).
 */
export class AgentLink {
  state: LinkState = 'connecting';
  private timer: NodeJS.Timeout | undefined;
  private leaseTimer: NodeJS.Timeout | undefined;
  private stopped = false;
  private renewedAt: number | null = null;
  private leaseMs: number | null = null;
  private watchdogMs: number | null = null;
  private fenced = false;
  /** the HA instances this agent killed when its lease ran out: started again once it is renewed, unless moved */
  private fencedNames: string[] = [];
  /** the newest of this host's own events the cluster has, as its last reply said (null: not known yet) */
  private eventsAfter: number | null = null;
  /** which beats carry the instance list */
  readonly reports = new ReportAck();
  /** which beats carry the CPU report */
  private readonly cpuReports = new ReportAck();
  /** the host watchdog's pets; none on a simulated host (its VMs are objects of a fake driver) */
  private readonly pet: WatchdogPet | null;

  /** `dataDir`: the agent's, where its watchdog watches (watchdog.ts); left out, no watchdog. */
  constructor(
    private readonly id: AgentIdentity,
    private readonly hooks: LinkHooks,
    private readonly log: LinkLog,
    dataDir?: string,
    private readonly intervalMs = Number(process.env.CORRAL_HEARTBEAT_MS) || 3000,
  ) {
    this.pet = dataDir === undefined ? null : new WatchdogPet(identityDir(dataDir));
    if (dataDir !== undefined) ensureWatchdog(identityDir(dataDir));
  }

  start(): void {
    void this.beat();
    this.leaseTimer = setInterval(() => void this.checkLease(), 200);
    this.leaseTimer.unref();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    clearInterval(this.leaseTimer);
    this.pet?.close();
  }

  private schedule(): void {
    if (this.stopped || this.state === 'removed') return;
    this.timer = setTimeout(() => void this.beat(), this.intervalMs);
    this.timer.unref();
  }

  private async checkLease(): Promise<void> {
    if (this.fenced || this.renewedAt === null || this.leaseMs === null) return;
    const margin = this.intervalMs + 500;
    const age = performance.now() - this.renewedAt;
    if (age < this.leaseMs - margin) return;
    this.fenced = true;
    const reason = `no controller has renewed this host's lease for ${Math.round(age)} ms (lease ${this.leaseMs} ms)`;
    this.log.error({ host: this.id.name }, `${reason}: killing the HA instances here before the cluster starts them elsewhere`);
    this.fencedNames = await this.hooks.fence(reason).catch((e: Error) => {
      this.log.error({ error: e.message }, 'fencing failed');
      return [];
    });
  }

  private async beat(): Promise<void> {
    try {
      if (this.watchdogMs !== null) this.pet?.pet(this.watchdogMs, this.hooks.haPids());
      const builtAt = Date.now();
      const { instances, cpuReport, ...rest } = await this.hooks.report();
      const hash = summariesHash(instances);
      const cpuHash = cpuReport ? createHash('sha256').update(JSON.stringify(cpuReport)).digest('hex') : null;
      // the host's own events after what the cluster said it has (none before the first reply names it)
      const events = this.eventsAfter !== null && this.hooks.events ? this.hooks.events.since(this.eventsAfter, EVENTS_PER_BEAT) : [];
      const sentAt = performance.now();
      let lastErr = '';
      for (const c of this.id.controllers) {
        try {
          const send = this.reports.mustSend(c, hash);
          const sendCpu = cpuHash !== null && this.cpuReports.mustSend(c, cpuHash);
          const body = { ...rest, ...(send ? { instances } : {}), ...(sendCpu ? { cpuReport } : {}), ...(events.length > 0 ? { events } : {}) };
          this.log.debug?.({ controller: c, instances: send ? instances.length : 'unchanged', listsSent: this.reports.counts.sent, listsOmitted: this.reports.counts.omitted }, 'heartbeat');
          const r = await clusterRequest(c, 'POST', '/v1/cluster/heartbeat', body, { ca: this.id.caPem, cert: this.id.certPem, key: this.id.keyPem }, Math.max(1000, this.intervalMs));
          if (r.status === 200) {
            this.reports.answered(c, hash);
            if (cpuHash !== null) this.cpuReports.answered(c, cpuHash);
            const reply = (r.body ?? {}) as BeatReply;
            if (this.state !== 'up') this.log.info({ controller: c, host: this.id.name }, 'cluster link up: heartbeats answered');
            this.state = 'up';
            this.renewedAt = sentAt;
            this.fenced = false;
            if (typeof reply.leaseMs === 'number') this.leaseMs = reply.leaseMs;
            if (typeof reply.watchdogMs === 'number') this.watchdogMs = reply.watchdogMs;
            if (typeof reply.eventsAfter === 'number' && this.hooks.events) {
              this.eventsAfter = reply.eventsAfter > 0 ? reply.eventsAfter : Math.max(0, this.hooks.events.firstId - 1);
            }
            const forget = reply.forget ?? [];
            if (forget.length > 0) {
              this.log.warn({ instances: forget }, 'the cluster runs these instances on another host now: their records here are removed (their shared disks stay)');
              await this.hooks.forget(forget);
            }
            // (in the background: killing QEMUs must not delay the next beat, which renews the lease)
            if ((reply.abandon ?? []).length > 0 && this.hooks.abandon) {
              void this.hooks.abandon(reply.abandon!, builtAt).catch((e: Error) => this.log.warn({ error: e.message }, 'removing what live migrations left failed'));
            }
            // the lease is back and this host was not fenced meanwhile: what the lease's loss killed runs again here
            const again = reply.state === 'fenced' ? [] : this.fencedNames.filter((n) => !forget.includes(n));
            if (reply.state !== 'fenced') this.fencedNames = [];
            if (again.length > 0) {
              this.log.warn({ instances: again }, 'the lease is renewed and the cluster moved none of them: starting again the HA instances its loss stopped');
              await this.hooks.restart(again);
            }
            return;
          }
          const e = replyError(r, `controller ${c}`);
          if (e.code === 'UNTRUSTED_PEER' && (e.details as { revoked?: boolean }).revoked === true) {
            this.state = 'removed';
            this.log.error({ controller: c, host: this.id.name }, `this host was removed from the cluster: heartbeats stop (its VMs keep running); ${e.message}`);
            return;
          }
          lastErr = e.message;
        } catch (e) {
          lastErr = `${c}: ${(e as Error).message}`;
        }
      }
      if (this.state !== 'controller-unreachable') this.log.warn({ error: lastErr }, 'no controller answered the heartbeat; VMs keep running, trying again');
      this.state = 'controller-unreachable';
      this.reports.lost();
      this.cpuReports.lost();
    } catch (e) {
      this.log.warn({ error: (e as Error).message }, 'heartbeat not sent');
    } finally {
      this.schedule();
    }
  }
}
