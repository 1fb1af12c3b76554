/**
 * What a controller driving a live migration (migration.ts) watches besides the source's progress:
 * - the destination: its agent is asked every second what its QEMU says (GET .../migration/facts). The instance
 *   gone from it, its QEMU ended, or its host not answering for DESTINATION_GRACE_MS: the destination is lost, and
 *   the driver cancels the migration (the source runs on; the guest never ran on the destination, which runs only
 *   once the source completed). The source's QEMU goes on sending to a destination whose agent alone died, so
 *   without this a migration would go on to a host that nobody can finish it on.
 * - the source: a poll of its progress that fails (its QEMU gone, its agent not answering) ends the migration with
 *   MIGRATION_FAILED (outcome source-lost): the destination, which holds a part of the guest at most, is removed.
 */
import { CorralError } from '../core/errors.js';
import { parse, type AgentClient } from './agent-client.js';
import type { HostRow } from './cluster-store.js';

const EVERY_MS = 1000;
export const DESTINATION_GRACE_MS = 5000;

export interface WatchOptions { everyMs?: number; graceMs?: number }

export class DestinationWatch {
  /** why the destination is lost (null: it is not) */
  lost: string | null = null;
  private readonly timer: NodeJS.Timeout;
  private failingSince: number | null = null;
  private busy = false;

  constructor(private readonly look: () => Promise<'there' | 'gone' | 'ended'>, private readonly host: string, private readonly o: WatchOptions = {}) {
    this.timer = setInterval(() => void this.check(), o.everyMs ?? EVERY_MS);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /** One look (the timer's; tests call it). */
  async check(): Promise<void> {
    if (this.busy || this.lost !== null) return;
    this.busy = true;
    try {
      const r = await this.look();
      this.failingSince = null;
      if (r === 'gone') this.lost = `host ${this.host} no longer has the incoming instance`;
      else if (r === 'ended') this.lost = `the incoming QEMU on host ${this.host} ended`;
    } catch (e) {
      const grace = this.o.graceMs ?? DESTINATION_GRACE_MS;
      this.failingSince ??= Date.now();
      if (Date.now() - this.failingSince >= grace) this.lost = `host ${this.host} has not answered for ${Math.round(grace / 1000)} s (${(e as Error).message})`;
    } finally {
      this.busy = false;
    }
  }
}

/** A watch of instance `name` on host `to` (see the file's comment). */
export function watchDestination(agents: Pick<AgentClient, 'call'>, to: HostRow, name: string, o: WatchOptions = {}): DestinationWatch {
  return new DestinationWatch(async () => {
    const r = await agents.call(to, 'GET', `/v1/instances/${encodeURIComponent(name)}/migration/facts`);
    const body = parse(r.body) as { run?: string | null; error?: { code?: string; message?: string } };
    if (r.status === 404 && body.error?.code === 'INSTANCE_NOT_FOUND') return 'gone';
    if (r.status === 404 && body.error?.code === 'NOT_FOUND') return 'there'; // an agent without the route: not watched
    if (r.status !== 200) throw new Error(body.error?.message ?? `HTTP ${r.status}`);
    return body.run === null ? 'ended' : 'there';
  }, to.name, o);
}

/** The error of a failed poll of the source (see the file's comment). */
export function sourceLost(name: string, from: HostRow, e: unknown): CorralError {
  return new CorralError('MIGRATION_FAILED', `the source of the migration of instance "${name}" on host ${from.name} failed (${(e as Error).message}): the migration is given up`, { name, outcome: 'source-lost', host: from.name });
}
