/**
 * The mixed-load test's view of /v1/events: a client that follows the stream live, the check that a sequence of
 * events tells a consistent story of each instance (every move one the state table in src/core/state.ts
 * allows, each `from` the previous `to`), and each instance's history of states, against which every state a
 * client saw in a reply is checked.
 */
import { request, type ClientRequest } from 'node:http';
import { validTransition, type InstanceState } from '../../src/core/state.js';
import { onSse, type Daemon } from './harness.js';

export interface Ev { id?: number; type: string; instance: string | null; data: any }

/** A client following /v1/events from its start (?since=0): every stored event, then live ones, as they come. */
export class EventFollower {
  readonly events: Ev[] = [];
  private req: ClientRequest | null = null;
  ended = false;

  /** Opened once the replay has been sent (the stream's `: connected` comment). */
  static open(d: Daemon): Promise<EventFollower> {
    const f = new EventFollower();
    return new Promise((resolve, reject) => {
      const req = request({ socketPath: d.socket, path: '/v1/events?since=0' }, (res) => {
        if (res.statusCode !== 200) reject(new Error(`/v1/events answered ${res.statusCode}`));
        onSse(res, (block, event) => {
          if (block === ': connected') resolve(f);
          if (event) f.events.push(event as Ev);
          return true;
        });
        res.on('end', () => { f.ended = true; });
      });
      req.on('error', (e) => { if (!f.ended) reject(e); });
      req.end();
      f.req = req;
    });
  }

  /** The id of the last stored event received so far (0: none). */
  lastId(): number {
    for (let i = this.events.length - 1; i >= 0; i--) if (this.events[i]!.id !== undefined) return this.events[i]!.id!;
    return 0;
  }

  close(): void {
    this.ended = true;
    this.req?.destroy();
  }
}

/** One step of an instance's history: from event `id` on, its state (null: it does not exist). */
export interface Step { id: number; state: InstanceState | null }

/**
 * Check a sequence of events: per instance name, created only when absent (then stopped), every
 * instance.state move from the state the previous events left it in and allowed by the table, deleted only
 * when present; ids strictly increasing. The problems found (empty: none) and each instance's history.
 */
export function readHistory(events: Ev[]): { problems: string[]; history: Map<string, Step[]> } {
  const problems: string[] = [];
  const history = new Map<string, Step[]>();
  const cur = (name: string): InstanceState | null => history.get(name)?.at(-1)?.state ?? null;
  const push = (name: string, id: number, state: InstanceState | null): void => {
    if (!history.has(name)) history.set(name, []);
    history.get(name)!.push({ id, state });
  };
  let lastId = 0;
  for (const ev of events) {
    if (ev.id === undefined) {
      problems.push(`an unstored event in the stream: ${ev.type} ${JSON.stringify(ev.data)}`);
      continue;
    }
    if (ev.id <= lastId) problems.push(`event ${ev.id} came after event ${lastId}`);
    lastId = ev.id;
    const name = ev.instance;
    if (name === null) continue;
    const at = `event ${ev.id} (${ev.type} of ${name})`;
    if (ev.type === 'instance.created') {
      if (cur(name) !== null) problems.push(`${at}: created while it exists (${cur(name)})`);
      push(name, ev.id, 'stopped');
    } else if (ev.type === 'instance.deleted') {
      if (cur(name) === null) problems.push(`${at}: deleted while it does not exist`);
      push(name, ev.id, null);
    } else if (ev.type === 'instance.state') {
      const { from, to } = ev.data as { from: InstanceState; to: InstanceState };
      if (cur(name) === null) problems.push(`${at}: ${from} -> ${to} of an instance that does not exist`);
      else if (from !== cur(name)) problems.push(`${at}: from ${from}, but the previous events left it ${cur(name)}`);
      if (from === to || !validTransition(from, to)) problems.push(`${at}: ${from} -> ${to} is not a transition the state table allows`);
      push(name, ev.id, to);
    }
  }
  return { problems, history };
}

/**
 * Whether instance `name` was `state` at some moment at or after event `afterId` (the last event the client
 * had seen when it sent the request whose reply says so): a reply may be late, never from before its request.
 */
export function wasInState(history: Map<string, Step[]>, name: string, state: string, afterId: number): boolean {
  const steps = history.get(name) ?? [];
  let from = 0;
  for (let i = 0; i < steps.length; i++) if (steps[i]!.id <= afterId) from = i;
  return steps.slice(from).some((s) => s.state === state);
}
