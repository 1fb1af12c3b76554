/**
 * The operations of the mixed-load test: each drawn by a seeded RNG, sent as a real client would, and recorded
 * with what came back and the last event its client had seen when it sent it. `judge` says what is wrong with
 * a recorded reply: a 5xx, an error code that operation should never give, a refusal that the state table
 * (src/core/state.ts, canRun) would not make, a success that left the wrong state, or a state the instance
 * never was in after the request was sent.
 */
import { canRun, type Operation } from '../../src/core/state.js';
import type { Daemon, Reply } from './harness.js';
import { wasInState, type Step } from './load-events.js';

export const OPS = ['start', 'stop', 'kill', 'pause', 'resume', 'restart', 'set', 'memory', 'cpus', 'attach', 'detach', 'recreate'] as const;
export type Op = (typeof OPS)[number];
/** How often each is drawn: lifecycle operations most. */
const WEIGHTS: Record<Op, number> = {
  start: 6, stop: 3, kill: 2, pause: 2, resume: 2, restart: 2, set: 2, memory: 1, cpus: 1, attach: 3, detach: 2, recreate: 1,
};

export interface LoadSetup { instances: string[]; volumes: string[]; create: (name: string) => Record<string, unknown> }

export interface Sent {
  client: number;
  seq: number;
  /** get: the poll that follows each op */
  op: Op | 'get';
  instance: string;
  method: string;
  path: string;
  body?: unknown;
  /** the last event id the client had received when it sent this */
  afterId: number;
  /** when it was sent (ms since the epoch) and how long the reply took */
  at: number;
  ms: number;
  reply: Reply;
}

/** The table operation behind each op (its refusals must agree with canRun). */
const TABLE_OP: Partial<Record<Op | 'get', Operation>> = {
  start: 'start', stop: 'stop', kill: 'kill', pause: 'pause', resume: 'resume', restart: 'restart', set: 'set',
};
/** The state a successful op leaves (as its reply shows it). */
const AFTER: Partial<Record<Op | 'get', string[]>> = {
  start: ['running'], stop: ['stopped'], kill: ['stopped'], pause: ['paused'], resume: ['running'], restart: ['running'],
  set: ['stopped', 'crashed', 'error'],
};
/** The coded refusals each request may meet under concurrent load (besides INVALID_STATE and INSTANCE_NOT_FOUND). */
const REFUSALS: Record<string, string[]> = {
  start: ['INSUFFICIENT_RESOURCES'],
  restart: ['INSUFFICIENT_RESOURCES'],
  memory: ['INVALID_SPEC', 'INSUFFICIENT_RESOURCES'],
  cpus: ['INVALID_SPEC', 'INSUFFICIENT_RESOURCES', 'UNSUPPORTED'],
  attach: ['VOLUME_IN_USE', 'ALREADY_EXISTS'],
  /**
   * INVALID_SPEC: a volume another client detached meanwhile ("not attached"). TIMEOUT (504): a guest still
   * booting has not set up PCIe hotplug and does not answer the unplug in time; the disk stays attached, and
   * should the guest release it later the daemon finishes the detach (checked at the end against the guests)
   */
  detach: ['INVALID_SPEC', 'TIMEOUT'],
  /** another client re-created it first */
  create: ['ALREADY_EXISTS'],
};

const pick = <T>(rand: () => number, xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;

function drawOp(rand: () => number): Op {
  const total = OPS.reduce((s, o) => s + WEIGHTS[o], 0);
  let x = rand() * total;
  for (const o of OPS) if ((x -= WEIGHTS[o]) < 0) return o;
  return 'start';
}

/** The requests of one op (recreate is two: delete, then create). */
async function requests(d: Daemon, op: Op, name: string, setup: LoadSetup, rand: () => number): Promise<Array<[string, string, unknown?]>> {
  const at = `/v1/instances/${name}`;
  switch (op) {
    case 'stop': case 'restart':
      return [['POST', `${at}/${op}`, { timeout: pick(rand, [0, 1, 2]) }]];
    case 'set':
      return [['PATCH', at, rand() < 0.5 ? { cpus: pick(rand, [1, 2]) } : { memory: pick(rand, ['96M', '128M']) }]];
    case 'memory':
      return [['POST', `${at}/memory`, { size: pick(rand, ['96M', '112M', '128M']) }]];
    case 'cpus':
      return [['POST', `${at}/cpus`, { count: pick(rand, [1, 2]) }]];
    case 'attach':
      return [['POST', `${at}/disks`, { volume: pick(rand, setup.volumes) }]];
    case 'detach': {
      // one of its own volumes as this client last saw them (another client may detach it first)
      const r = await d.api('GET', `${at}/disks`);
      const own = r.status === 200 ? r.body.disks.map((x: { volume: string }) => x.volume) : [];
      return [['DELETE', `${at}/disks/${pick(rand, own.length > 0 ? own : setup.volumes)}`]];
    }
    case 'recreate':
      return [['DELETE', `${at}?force=true`], ['POST', '/v1/instances', setup.create(name)]];
    default:
      return [['POST', `${at}/${op}`, {}]];
  }
}

/**
 * One client: `count` ops drawn from `rand` on random instances, `lanes` of them in flight at once; after each,
 * a GET of the instance (a poll, recorded as op 'get'). `lastId` is the client's own event stream's position.
 */
export async function runClient(
  d: Daemon, client: number, count: number, lanes: number, rand: () => number, setup: LoadSetup, lastId: () => number,
): Promise<Sent[]> {
  const sent: Sent[] = [];
  let next = 0;
  const send = async (seq: number, op: Op | 'get', instance: string, method: string, path: string, body?: unknown): Promise<Reply> => {
    const afterId = lastId();
    const at = Date.now();
    const reply = await d.api(method, path, body);
    sent.push({ client, seq, op, instance, method, path, body, afterId, at, ms: Date.now() - at, reply });
    return reply;
  };
  const lane = async (): Promise<void> => {
    while (next < count) {
      const seq = next++;
      const op = drawOp(rand);
      const name = pick(rand, setup.instances);
      for (const [method, path, body] of await requests(d, op, name, setup, rand)) await send(seq, op, name, method, path, body);
      await send(seq, 'get', name, 'GET', `/v1/instances/${name}`);
    }
  };
  await Promise.all(Array.from({ length: lanes }, lane));
  return sent;
}

/** What is wrong with one recorded request (empty: nothing), judged against the instances' histories. */
export function judge(s: Sent, history: Map<string, Step[]>): string[] {
  const out: string[] = [];
  const { status, body } = s.reply;
  const what = `client ${s.client} op ${s.seq} ${s.method} ${s.path} ${s.body === undefined ? '' : JSON.stringify(s.body)} -> ${status}`;
  const seen = (state: string, how: string): void => {
    if (!wasInState(history, s.instance, state, s.afterId)) out.push(`${what}: ${how} ${state}, a state the instance was not in after event ${s.afterId}`);
  };
  const isCreate = s.method === 'POST' && s.path === '/v1/instances';
  const kind = isCreate ? 'create' : s.op;
  const timedOut = kind === 'detach' && status === 504 && body?.error?.code === 'TIMEOUT';
  if ((status >= 500 && !timedOut) || status < 200) return [`${what}: ${JSON.stringify(body)}`];
  if (status >= 400) {
    const code: string | undefined = body?.error?.code;
    const allowed = ['INVALID_STATE', 'INSTANCE_NOT_FOUND', ...(REFUSALS[kind] ?? [])];
    if (!code || !allowed.includes(code)) return [`${what}: the refusal ${code ?? JSON.stringify(body)} is not one ${kind} may give here: ${body?.error?.message}`];
    if (code === 'INVALID_STATE') {
      const state: string | undefined = body.error.state;
      if (!state) return [`${what}: INVALID_STATE without the state: ${body.error.message}`];
      const tableOp = TABLE_OP[s.op];
      if (tableOp && canRun(tableOp, state as never)) out.push(`${what}: refused as ${state}, a state ${tableOp} may run in: ${body.error.message}`);
      seen(state, 'refused as');
    }
    return out;
  }
  const view = isCreate || s.method === 'GET' ? body : s.op === 'set' ? body.instance : TABLE_OP[s.op] ? body : null;
  if (view) {
    if (isCreate && view.state !== 'stopped') out.push(`${what}: created ${view.state}`);
    const after = AFTER[s.op];
    if (!isCreate && s.method !== 'GET' && after && !after.includes(view.state)) out.push(`${what}: succeeded leaving it ${view.state} (expected ${after.join(' or ')})`);
    seen(view.state, 'showed it');
  } else if (s.op === 'memory' && body.state !== undefined) {
    seen(body.state, 'resized it as');
  }
  return out;
}
