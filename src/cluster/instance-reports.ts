/**
 * How agents tell controllers what instances they have, so that a controller lists the cluster from PostgreSQL
 * alone (no call to the hosts):
 * - ReportAck decides which heartbeats carry the host's list of instance summaries: only when the list changed since
 *   the last beat a controller answered, or when the beat goes to another controller than that one, or after beats
 *   that no controller answered (a controller may have lost nothing, but the agent cannot know).
 * - summaryOfReply picks the summary out of an agent's reply to a call the controller made (create, start, PATCH...),
 *   so that the controller's own actions show in its list at once.
 */
import { createHash } from 'node:crypto';
import { STATES } from '../core/state.js';
import type { InstanceSummary } from '../services/instance-view.js';

/** The SHA-256 of a list of summaries, in their order (the agent's store lists them by name). */
export function summariesHash(list: readonly InstanceSummary[]): string {
  return createHash('sha256').update(JSON.stringify(list)).digest('hex');
}

/** Which heartbeats carry the instance list: see the file's comment. */
export class ReportAck {
  private acked: { controller: string; hash: string } | null = null;
  /** how many beats carried the list and how many left it out (shown in the agent's debug log) */
  readonly counts = { sent: 0, omitted: 0 };

  /** Whether a beat to `controller` must carry the list whose hash is `hash`; counts the answer. */
  mustSend(controller: string, hash: string): boolean {
    const send = this.acked === null || this.acked.controller !== controller || this.acked.hash !== hash;
    if (send) this.counts.sent++;
    else this.counts.omitted++;
    return send;
  }

  /** `controller` answered a beat made when the list's hash was `hash` (whether it carried it or had it already). */
  answered(controller: string, hash: string): void {
    this.acked = { controller, hash };
  }

  /** No controller answered: the next beat that gets through carries the list. */
  lost(): void {
    this.acked = null;
  }
}

const STATE_NAMES: ReadonlySet<string> = new Set(STATES);
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * The summary of an instance in an agent's reply: an instance view (create, start, stop...) or `{ instance: view }`
 * (PATCH); null when the reply holds none (or not this instance's, when `name` is given).
 */
export function summaryOfReply(body: unknown, name?: string): InstanceSummary | null {
  if (body === null || typeof body !== 'object') return null;
  const inner = (body as { instance?: unknown }).instance;
  const v = (inner !== null && typeof inner === 'object' ? inner : body) as Record<string, unknown>;
  const str = (x: unknown): x is string => typeof x === 'string';
  const strOrNull = (x: unknown): string | null => (str(x) ? x : null);
  if (!str(v.name) || !str(v.uuid) || !UUID.test(v.uuid) || !str(v.state) || !STATE_NAMES.has(v.state) || typeof v.cpus !== 'number' || typeof v.memory !== 'number' || !str(v.updatedAt)) return null;
  if (name !== undefined && v.name !== name) return null;
  return {
    name: v.name, uuid: v.uuid, state: v.state as InstanceSummary['state'], image: str(v.image) ? v.image : '', cpus: v.cpus, memory: v.memory,
    accel: v.accel === 'kvm' || v.accel === 'tcg' ? v.accel : null, pid: typeof v.pid === 'number' ? v.pid : null,
    startedAt: strOrNull(v.startedAt), lastError: strOrNull(v.lastError), updatedAt: v.updatedAt,
  };
}
