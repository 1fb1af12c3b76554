/**
 * What a host's report says against what the cluster holds, made to agree. A report lists every instance of its
 * host, so two kinds of difference show in it:
 * - **strangers**: instances the host has and the cluster does not (made on the host directly, through its own
 *   socket; on a host that joined with guests already on it; or a create whose answer the controller never got, so
 *   that it gave the reservation back). They are **adopted**: a row on that host with what the host reports them to
 *   have (vCPUs, memory, uuid, view), so they are listed, reserved in placement and forwarded to like any other
 *   (event instance.adopted).
 * - **vanished**: rows of the host, reported by it before, that its report no longer has (deleted on the host
 *   directly). Their rows are removed, giving their reservation back (event instance.deleted, saying so).
 * A report can be older than what the controller did since (a beat built before a delete through a controller, and
 * arriving after it), so nothing is done on the report's word alone: the agent is asked about each name first (GET
 * /v1/instances/NAME), and only its answer now (there: adopt; INSTANCE_NOT_FOUND: remove) is acted on. Checks run
 * in the background, one host at a time, the latest report of a host waiting for its turn; a name that cannot be
 * checked now is checked at the next report that still shows the difference.
 */
import type pg from 'pg';
import type { HostRow } from './cluster-store.js';
import { parse, type AgentClient } from './agent-client.js';
import { summaryOfReply } from './instance-reports.js';
import type { InstanceSummary } from '../services/instance-view.js';

/** names checked with the agent after one report, at most (the rest wait for the next report) */
const MAX_CHECKS = 64;

export interface Reconciled {
  adopted: string[];
  removed: string[];
}

export interface ReconcileDeps {
  pool: pg.Pool;
  agents: Pick<AgentClient, 'call'>;
  log: { info: (o: object, m: string) => void; warn: (o: object, m: string) => void };
  /** told what each check changed (events, tests) */
  done?: (host: string, r: Reconciled) => void;
}

export class ReportReconciler {
  private readonly running = new Set<string>();
  private readonly waiting = new Map<string, { host: HostRow; strangers: string[]; reported: string[] }>();

  constructor(private readonly d: ReconcileDeps) {}

  /** After a host's report: the names the cluster did not know (report()'s answer) and every name it reported. */
  check(host: HostRow, strangers: string[], reported: string[]): void {
    this.waiting.set(host.name, { host, strangers, reported });
    if (!this.running.has(host.name)) void this.next(host.name);
  }

  private async next(name: string): Promise<void> {
    const job = this.waiting.get(name);
    if (!job) return;
    this.waiting.delete(name);
    this.running.add(name);
    try {
      const r = await this.reconcile(job.host, job.strangers, job.reported);
      if (r.adopted.length > 0 || r.removed.length > 0) this.d.done?.(name, r);
    } catch (e) {
      this.d.log.warn({ host: name, error: (e as Error).message }, 'a host\'s report could not be reconciled; the next one will be');
    } finally {
      this.running.delete(name);
      if (this.waiting.has(name)) void this.next(name);
    }
  }

  /** One report's differences, each confirmed with the agent first. */
  async reconcile(host: HostRow, strangers: string[], reported: string[]): Promise<Reconciled> {
    const out: Reconciled = { adopted: [], removed: [] };
    const vanished = (await this.d.pool.query<{ name: string }>(
      `SELECT name FROM instances WHERE host = $1 AND view->>'host' = $1 AND NOT (name = ANY($2::text[])) ORDER BY name LIMIT ${MAX_CHECKS}`,
      [host.name, reported])).rows.map((r) => r.name);
    for (const name of strangers.slice(0, MAX_CHECKS)) {
      const now = await this.ask(host, name);
      if (now === 'gone' || now === 'unknown') continue;
      if (await this.adopt(host.name, now)) {
        out.adopted.push(name);
        this.d.log.info({ host: host.name, instance: name }, `instance ${name}, made on host ${host.name} directly, is adopted by the cluster`);
      }
    }
    for (const name of vanished) {
      if ((await this.ask(host, name)) !== 'gone') continue;
      const r = await this.d.pool.query(
        `WITH d AS (DELETE FROM instances WHERE name = $1 AND host = $2 AND view->>'host' = $2 RETURNING name, host)
         INSERT INTO events (type, host, instance, data)
         SELECT 'instance.deleted', host, name, jsonb_build_object('reason', 'deleted on host ' || host || ' directly: the cluster forgets it') FROM d`,
        [name, host.name]);
      if (r.rowCount === 1) {
        out.removed.push(name);
        this.d.log.info({ host: host.name, instance: name }, `instance ${name} is gone from host ${host.name} (deleted there directly): the cluster forgets it`);
      }
    }
    return out;
  }

  /** The agent's answer now: the instance's summary, 'gone' (INSTANCE_NOT_FOUND), or 'unknown' (no clear answer). */
  private async ask(host: HostRow, name: string): Promise<InstanceSummary | 'gone' | 'unknown'> {
    try {
      const r = await this.d.agents.call(host, 'GET', `/v1/instances/${encodeURIComponent(name)}`);
      const body = parse(r.body);
      if (r.status === 404) return (body as { error?: { code?: string } })?.error?.code === 'INSTANCE_NOT_FOUND' ? 'gone' : 'unknown';
      if (r.status !== 200) return 'unknown';
      return summaryOfReply(body, name) ?? 'unknown';
    } catch {
      return 'unknown';
    }
  }

  /** A row for an instance the host has, at the size it has: false when the name was taken meanwhile. */
  private async adopt(host: string, s: InstanceSummary): Promise<boolean> {
    const r = await this.d.pool.query(
      `WITH i AS (INSERT INTO instances (name, host, uuid, cpus, memory, view, reported_at)
                  VALUES ($1, $2, $3::uuid, $4, $5, $6::jsonb || jsonb_build_object('host', $2::text), now())
                  ON CONFLICT (name) DO NOTHING RETURNING name, host, cpus, memory)
       INSERT INTO events (type, host, instance, data)
       SELECT 'instance.adopted', host, name, jsonb_build_object('cpus', cpus, 'memory', memory,
         'reason', 'made on host ' || host || ' directly: the cluster adopts it') FROM i`,
      [s.name, host, s.uuid, s.cpus, s.memory, JSON.stringify(s)]);
    return r.rowCount === 1;
  }
}
