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
 *
 * With a fence command (fence-command.ts), a host that holds HA instances and whose lease expired is also handed to
 * it, once per loss (the host and its last heartbeat), in the background: its exit 0 says the host is off, so the
 * host is fenced then, without waiting for the watchdog's timeout. A failure is logged and recorded, and the
 * host waits for the deadline above. The command is not run in the manager's first lease either (hosts report).
 * Each step is recorded as an event (host.fence-command, host.fenced, instance.ha-restarting, -restarted, -failed).
 */
import type pg from 'pg';
import type { ClusterStore, HostRow } from './cluster-store.js';
import type { ClusterInstances, ClusterInstance } from './cluster-instances.js';
import type { AgentClient } from './agent-client.js';
import { summaryOfReply } from './instance-reports.js';
import { parse } from './agent-client.js';
import type { ClusterEvents, NewEvent } from './cluster-events.js';
import { runFenceCommand } from './fence-command.js';
import { isCorralError } from '../core/errors.js';

/** how long an agent may take to make and start an HA instance before the restart is tried again */
const RESTART_TIMEOUT_MS = 30_000;

/** "ha" in ASCII */
export const HA_LOCK_KEY = '26721';

export interface HaOptions {
  leaseMs: number;
  watchdogMs: number;
  tickMs?: number;
  /** run for a host whose lease expired (see the file's comment); none: only the fence deadline fences */
  fenceCommand?: string;
  fenceTimeoutMs?: number;
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
  /** no fence command runs before this: hosts get a lease to report to a new HA manager */
  private commandGraceUntil = 0;
  /** the losses (host and last heartbeat) the fence command was run for, or runs for now */
  private readonly fenceRuns = new Set<string>();
  /** the last HA failure recorded for each instance, so that a restart failing at every tick is recorded once */
  private readonly failures = new Map<string, string>();

  constructor(
    private readonly pool: pg.Pool,
    private readonly store: ClusterStore,
    private readonly instances: ClusterInstances,
    private readonly agents: AgentClient,
    private readonly events: ClusterEvents,
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
          this.commandGraceUntil = Date.now() + this.o.leaseMs;
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
      if (this.o.fenceCommand && Date.now() >= this.commandGraceUntil) await this.runFenceCommands(this.o.fenceCommand);
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

  /** Start the fence command for each host newly lost (see the file's comment); it runs on in the background. */
  private async runFenceCommands(command: string): Promise<void> {
    const now = new Set<string>();
    for (const h of await this.store.lostWithHa(this.o.leaseMs)) {
      const loss = `${h.name} ${h.lastHeartbeat ?? h.joinedAt}`;
      now.add(loss);
      if (this.fenceRuns.has(loss)) continue;
      this.fenceRuns.add(loss);
      void this.fence(command, h).catch((e: unknown) => {
        // not recorded: tried again at the next tick
        this.fenceRuns.delete(loss);
        this.log.warn({ host: h.name, error: (e as Error).message }, 'recording a fence command\'s outcome failed; trying again');
      });
    }
    // losses that are over are forgotten: the host is fenced (it stays so until it reports), or it reported (a
    // later loss has another last heartbeat)
    for (const loss of this.fenceRuns) if (!now.has(loss)) this.fenceRuns.delete(loss);
  }

  private async fence(command: string, h: HostRow): Promise<void> {
    this.log.warn({ host: h.name, address: h.address, command }, `host ${h.name} lost its lease while holding HA instances: running the fence command`);
    const out = await runFenceCommand(command, { host: h.name, address: h.address }, this.o.fenceTimeoutMs);
    const data = { command, ok: out.ok, reason: out.reason, exitCode: out.exitCode, durationMs: out.durationMs, output: out.output };
    if (!out.ok) {
      const then = `its HA instances wait for the fence deadline (no heartbeat for the lease and the watchdog's timeout, ${this.o.leaseMs + this.o.watchdogMs} ms)`;
      this.log.error({ host: h.name, command, reason: out.reason, output: out.output }, `the fence command failed for host ${h.name}: ${then}`);
      await this.events.record({ type: 'host.fence-command', host: h.name, data: { ...data, then } });
      return;
    }
    await this.events.record({ type: 'host.fence-command', host: h.name, data });
    const fenced = await this.store.fenceConfirmed(h.name, this.o.leaseMs,
      `the fence command ${command} confirmed it off (exit 0) after its lease expired (no heartbeat since ${h.lastHeartbeat ?? 'it joined'}): its HA instances start elsewhere`);
    if (fenced) this.log.warn({ host: h.name, reason: fenced.fenceReason }, `host ${h.name} fenced`);
    else this.log.info({ host: h.name }, `the fence command succeeded for host ${h.name}, which is fenced already or reported again meanwhile`);
  }

  /** Record an HA failure unless it is the one recorded last for this instance. */
  private failed(name: string, e: NewEvent & { data: { reason: string } }): NewEvent | undefined {
    if (this.failures.get(name) === e.data.reason) return undefined;
    this.failures.set(name, e.data.reason);
    return e;
  }

  private async restart(inst: ClusterInstance, from: HostRow): Promise<void> {
    const why = `host ${from.name} is fenced: ${from.fenceReason ?? 'no reason given'}`;
    let to: HostRow;
    try {
      to = await this.instances.relocate(inst.name, from.name, why);
    } catch (e) {
      this.log.warn({ instance: inst.name, from: from.name, error: (e as Error).message }, 'no host can take an HA instance now; trying again');
      // (an instance no longer on that host was moved or deleted meanwhile: nothing failed)
      const ev = isCorralError(e) && e.code === 'INVALID_STATE' ? undefined
        : this.failed(inst.name, { type: 'instance.ha-failed', host: from.name, instance: inst.name, data: { from: from.name, to: null, reason: (e as Error).message } });
      if (ev) await this.events.record(ev);
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
      this.failures.delete(inst.name);
      await this.events.record({ type: 'instance.ha-restarted', host: from.name, instance: inst.name, data: { from: from.name, to: to.name, reason: why } })
        .catch((e: unknown) => this.log.warn({ instance: inst.name, error: (e as Error).message }, 'recording an HA restart failed'));
      this.log.warn({ instance: inst.name, from: from.name, to: to.name }, `HA instance ${inst.name} restarted on ${to.name} (its host ${from.name} is fenced)`);
    } catch (e) {
      const reason = `starting it on host ${to.name} failed: ${(e as Error).message}`;
      await this.instances.setHost(inst.name, from.name, this.failed(inst.name, { type: 'instance.ha-failed', host: from.name, instance: inst.name, data: { from: from.name, to: to.name, reason } }));
      this.log.error({ instance: inst.name, from: from.name, to: to.name, error: (e as Error).message }, 'restarting an HA instance failed; trying again');
    }
  }
}
