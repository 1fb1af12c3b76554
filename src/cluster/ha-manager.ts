/**
 * The cluster's HA manager: one at a time across controllers (a session advisory lock on a connection of its own;
 * whichever controller holds it acts, the others wait and take over when it goes).
 *
 * Every second it fences the hosts that hold HA instances and whose last heartbeat is older than the lease plus
 * the host watchdog's timeout (plus a second), though never in its first lease-plus-watchdog as the manager (after
 * an outage of every controller, hosts get that long to report: their agents start again what the lease's loss
 * stopped, rather than the cluster moving everything): by then the host's agent has killed its HA instances itself (lease
 * lost), or its watchdog has (agent dead or hung), or the host is down. Only then does it start each HA instance
 * of a fenced host on another host: placed as a new instance would be (shared pool, anti-affinity, the host labels
 * it was made with, room), created there from its stored request taking over its root disk on the shared pool
 * (`adopt`), and started. A restart
 * that fails puts the instance back on its fenced host, to be tried again at the next tick. The disk's image lock
 * is the second guard: a copy still running somewhere holds it, and the new QEMU would refuse to start.
 */
import type pg from 'pg';
import type { ClusterStore, HostRow } from './cluster-store.js';
import type { ClusterInstances, ClusterInstance } from './cluster-instances.js';
import type { AgentClient } from './agent-client.js';
import { summaryOfReply } from './instance-reports.js';
import { parse } from './agent-client.js';

/** how long an agent may take to make and start an HA instance before the restart is tried again */
const RESTART_TIMEOUT_MS = 30_000;

/** "ha" in ASCII */
export const HA_LOCK_KEY = '26721';

export interface HaOptions {
  leaseMs: number;
  watchdogMs: number;
  tickMs?: number;
}

export interface HaLog {
  info: (o: object, m: string) => void;
  warn: (o: object, m: string) => void;
  error: (o: object, m: string) => void;
}

export class HaManager {
  private client: pg.PoolClient | null = null;
  private leader = false;
  private timer: NodeJS.Timeout | undefined;
  private running = false;
  private stopped = false;
  /** no host is fenced before this (ms since the epoch): set when this controller becomes the HA manager */
  private graceUntil = 0;

  constructor(
    private readonly pool: pg.Pool,
    private readonly store: ClusterStore,
    private readonly instances: ClusterInstances,
    private readonly agents: AgentClient,
    private readonly o: HaOptions,
    private readonly log: HaLog,
  ) {}

  start(): void {
    this.timer = setInterval(() => void this.tick(), this.o.tickMs ?? 1000);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    this.client?.release(true);
    this.client = null;
  }

  /** Whether this controller holds the HA lock (taking it if free). */
  private async lead(): Promise<boolean> {
    try {
      if (!this.client) {
        this.client = await this.pool.connect();
        this.client.on('error', () => undefined);
        this.leader = false;
      }
      if (!this.leader) {
        const r = await this.client.query<{ ok: boolean }>('SELECT pg_try_advisory_lock($1::bigint) AS ok', [HA_LOCK_KEY]);
        this.leader = r.rows[0]?.ok === true;
        if (this.leader) {
          // hosts could not report while no controller ran: give them a lease and a watchdog's time to, first
          this.graceUntil = Date.now() + this.o.leaseMs + this.o.watchdogMs;
          this.log.info({}, 'this controller runs the HA manager');
        }
      } else {
        await this.client.query('SELECT 1'); // the lock lives with this session: make sure it still does
      }
    } catch {
      this.client?.release(true);
      this.client = null;
      this.leader = false;
    }
    return this.leader;
  }

  async tick(): Promise<void> {
    if (this.running || this.stopped) return;
    this.running = true;
    try {
      if (!(await this.lead())) return;
      if (Date.now() >= this.graceUntil) {
        for (const h of await this.store.fenceExpired(this.o.leaseMs + this.o.watchdogMs + 1000)) {
          this.log.warn({ host: h.name, reason: h.fenceReason }, `host ${h.name} fenced`);
        }
      }
      for (const host of (await this.store.listHosts()).filter((h) => h.state === 'fenced')) {
        for (const inst of await this.instances.haOn(host.name)) await this.restart(inst, host);
      }
    } catch (e) {
      this.log.warn({ error: (e as Error).message }, 'HA manager tick failed; trying again');
    } finally {
      this.running = false;
    }
  }

  private async restart(inst: ClusterInstance, from: HostRow): Promise<void> {
    let to: HostRow;
    try {
      to = await this.instances.relocate(inst.name, from.name);
    } catch (e) {
      this.log.warn({ instance: inst.name, from: from.name, error: (e as Error).message }, 'no host can take an HA instance now; trying again');
      return;
    }
    // its size now (a resize since the create is in the reservation), not the one it was made with
    const body = { ...(inst.spec ?? {}), name: inst.name, cpus: inst.cpus, memory: inst.memory, adopt: true, start: true };
    this.log.info({ instance: inst.name, from: from.name, to: to.name }, `starting HA instance ${inst.name} on ${to.name}`);
    try {
      let r = await this.agents.call(to, 'POST', '/v1/instances', body, RESTART_TIMEOUT_MS);
      if (r.status >= 300) {
        const err = parse(r.body) as { error?: { code?: string } };
        if (err.error?.code !== 'ALREADY_EXISTS') throw new Error(r.body.toString());
        // made there by a tick that did not finish: start it if it is not running
        r = await this.agents.call(to, 'POST', `/v1/instances/${encodeURIComponent(inst.name)}/start`, {});
      }
      // the cluster's list shows it on its new host at once
      const summary = r.status < 300 ? summaryOfReply(parse(r.body), inst.name) : null;
      if (summary) await this.instances.setView(inst.name, to.name, summary).catch(() => undefined);
      this.log.warn({ instance: inst.name, from: from.name, to: to.name }, `HA instance ${inst.name} restarted on ${to.name} (its host ${from.name} is fenced)`);
    } catch (e) {
      await this.instances.setHost(inst.name, from.name);
      this.log.error({ instance: inst.name, from: from.name, to: to.name, error: (e as Error).message }, 'restarting an HA instance failed; trying again');
    }
  }
}
