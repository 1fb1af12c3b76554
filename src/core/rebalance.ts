/**
 * Rebalancing: which running instances to move between hosts so that their allocation is even. Pure.
 *
 * "Even" here: a host's load is its dominant share, the larger of its allocated vCPUs over its vCPU capacity and
 * its allocated memory over its memory capacity (as the cluster counts them: what placement reserved, against what
 * the host reports it can hold). The pool is even when the spread of the loads, the highest less the lowest over
 * the hosts that take part, is at most a tolerance (DEFAULT_TOLERANCE: 5 percentage points). A move is worth making
 * only if it makes the pool strictly more even: a smaller spread, or the same spread and a smaller sum of the
 * squared loads (the hosts in between draw closer); a move that makes either worse is never proposed.
 *
 * The planner is greedy: at each step, of every movable instance and every host that could take it (another host
 * that takes part, carries the labels the instance asks for, mounts the shared pool if its disk is there, holds no
 * other member of its anti-affine group, and has room: the placer's own fit, core/placement.ts), the move that
 * leaves the pool most even; ties go to the smaller instance (less to copy), then by names. It stops at the limit of
 * moves, when the pool is even, or when no move improves it; an instance moves at most once in a plan.
 *
 * planRelief() is the memory-pressure variant: a guest must leave one host (its balloons could not free enough), so
 * the best move off that host is proposed whether or not it makes the pool more even; ties go to the larger guest.
 */
import { place, type HostState as PlacerHost } from './placement.js';
import { invalidSpec } from './errors.js';

export const DEFAULT_MAX_MOVES = 3;
export const MAX_MOVES_LIMIT = 100;
/** a spread of dominant shares at most this is even: nothing moves */
export const DEFAULT_TOLERANCE = 0.05;
/** differences smaller than this are rounding, not improvement */
const EPS = 1e-9;

export interface RebalanceHost {
  name: string;
  capacity: { cpus: number; memory: number };
  allocated: { cpus: number; memory: number };
  labels?: Record<string, string>;
  /** it mounts the cluster's shared pool */
  sharedPool?: boolean;
  /** false: it takes no part (not up: maintenance, unreachable, fenced): nothing moves into or out of it, and its load does not count */
  eligible?: boolean;
}

export interface RebalanceInstance {
  name: string;
  host: string;
  cpus: number;
  memory: number;
  /** the labels its host must carry */
  hostLabels?: Record<string, string> | null;
  group?: string | null;
  antiAffinity?: boolean;
  /** its root disk is on the shared pool: only hosts that mount it can take it */
  shared?: boolean;
  /** it can be live-migrated now (running, nothing tying it to its host, no migration under way) */
  movable: boolean;
}

/** A host's allocation and its dominant share. */
export interface HostLoad { cpus: number; memory: number; share: number }

export interface RebalanceMove {
  instance: string;
  from: string;
  to: string;
  cpus: number;
  memory: number;
  /** both hosts' capacity, and their allocation before and after the move */
  capacity: { from: { cpus: number; memory: number }; to: { cpus: number; memory: number } };
  before: { from: HostLoad; to: HostLoad };
  after: { from: HostLoad; to: HostLoad };
  /** the pool's spread of dominant shares before and after this move */
  spreadBefore: number;
  spreadAfter: number;
}

export interface RebalancePlan {
  moves: RebalanceMove[];
  spreadBefore: number;
  spreadAfter: number;
  /** the spread is within the tolerance after the moves */
  even: boolean;
  /** the hosts and instances as they would be after the moves */
  hosts: RebalanceHost[];
  instances: RebalanceInstance[];
}

export interface RebalanceOptions {
  maxMoves?: number;
  tolerance?: number;
  /** instances never to move (a move of theirs failed or was refused) */
  exclude?: ReadonlySet<string>;
}

const takesPart = (h: RebalanceHost): boolean => h.eligible !== false && h.capacity.cpus > 0 && h.capacity.memory > 0;

/** A host's dominant share: the larger of its vCPU and memory allocation over capacity. */
export function dominantShare(h: Pick<RebalanceHost, 'capacity' | 'allocated'>): number {
  const c = h.capacity.cpus > 0 ? h.allocated.cpus / h.capacity.cpus : 0;
  const m = h.capacity.memory > 0 ? h.allocated.memory / h.capacity.memory : 0;
  return Math.max(c, m);
}

export function loadOf(h: RebalanceHost): HostLoad {
  return { cpus: h.allocated.cpus, memory: h.allocated.memory, share: dominantShare(h) };
}

/** The highest dominant share less the lowest, over the hosts that take part (0 with fewer than two). */
export function spreadOf(hosts: readonly RebalanceHost[]): number {
  return score(hosts.filter(takesPart).map(dominantShare)).spread;
}

function score(shares: readonly number[]): { spread: number; squares: number } {
  if (shares.length === 0) return { spread: 0, squares: 0 };
  let lo = Infinity, hi = -Infinity, sq = 0;
  for (const s of shares) {
    if (s < lo) lo = s;
    if (s > hi) hi = s;
    sq += s * s;
  }
  return { spread: hi - lo, squares: sq };
}

/** Whether score a is strictly more even than b. */
function better(a: { spread: number; squares: number }, b: { spread: number; squares: number }): boolean {
  if (a.spread < b.spread - EPS) return true;
  return Math.abs(a.spread - b.spread) <= EPS && a.squares < b.squares - EPS;
}

function copyHost(h: RebalanceHost): RebalanceHost {
  return { ...h, capacity: { ...h.capacity }, allocated: { ...h.allocated }, ...(h.labels ? { labels: { ...h.labels } } : {}) };
}

function checkOptions(o: RebalanceOptions): { maxMoves: number; tolerance: number } {
  const maxMoves = o.maxMoves ?? DEFAULT_MAX_MOVES;
  if (!Number.isInteger(maxMoves) || maxMoves < 1 || maxMoves > MAX_MOVES_LIMIT) throw invalidSpec('maxMoves', `a whole number from 1 to ${MAX_MOVES_LIMIT}, got ${maxMoves}`);
  const tolerance = o.tolerance ?? DEFAULT_TOLERANCE;
  if (!(Number.isFinite(tolerance) && tolerance >= 0 && tolerance < 1)) throw invalidSpec('tolerance', `a share from 0 to below 1, got ${tolerance}`);
  return { maxMoves, tolerance };
}

/**
 * The state a planner works on: hosts by name, each anti-affine group's hosts, and the loads' extremes and sum of
 * squares, so that the score after a move (which changes two hosts' loads) costs O(1), not a pass over the hosts.
 */
class Pool {
  readonly hosts: RebalanceHost[];
  readonly instances: RebalanceInstance[];
  private readonly byName = new Map<string, RebalanceHost>();
  /** anti-affine groups: how many members each host holds */
  private readonly antiGroups = new Map<string, Map<string, number>>();
  private readonly share = new Map<RebalanceHost, number>();
  /** the three highest and three lowest loads (hosts that take part), and the sum of the squared loads */
  private hi: Array<{ h: RebalanceHost; s: number }> = [];
  private lo: Array<{ h: RebalanceHost; s: number }> = [];
  private squares = 0;

  constructor(hosts: readonly RebalanceHost[], instances: readonly RebalanceInstance[]) {
    this.hosts = hosts.map(copyHost);
    for (const h of this.hosts) {
      if (this.byName.has(h.name)) throw invalidSpec('hosts', `host name "${h.name}" appears twice`);
      this.byName.set(h.name, h);
    }
    this.instances = instances.map((i) => ({ ...i }));
    for (const i of this.instances) if (i.group && i.antiAffinity) this.antiGroups.set(i.group, new Map());
    for (const i of this.instances) this.count(i, 1);
    this.refresh();
  }

  private count(i: RebalanceInstance, d: number): void {
    const g = i.group ? this.antiGroups.get(i.group) : undefined;
    if (g) g.set(i.host, (g.get(i.host) ?? 0) + d);
  }

  private refresh(): void {
    this.share.clear();
    this.squares = 0;
    for (const h of this.hosts) {
      if (!takesPart(h)) continue;
      const s = dominantShare(h);
      this.share.set(h, s);
      this.squares += s * s;
    }
    const all = [...this.share].map(([h, s]) => ({ h, s }));
    this.hi = [...all].sort((a, b) => b.s - a.s).slice(0, 3);
    this.lo = [...all].sort((a, b) => a.s - b.s).slice(0, 3);
  }

  host(name: string): RebalanceHost | undefined {
    return this.byName.get(name);
  }

  score(): { spread: number; squares: number } {
    return score([...this.share.values()]);
  }

  /** The score if `i` went from its host to `to` (both take part). */
  scoreIf(i: RebalanceInstance, to: RebalanceHost): { spread: number; squares: number } {
    const from = this.byName.get(i.host)!;
    const sf = dominantShare({ capacity: from.capacity, allocated: { cpus: from.allocated.cpus - i.cpus, memory: from.allocated.memory - i.memory } });
    const st = dominantShare({ capacity: to.capacity, allocated: { cpus: to.allocated.cpus + i.cpus, memory: to.allocated.memory + i.memory } });
    const other = (list: Array<{ h: RebalanceHost; s: number }>): number | undefined => list.find((x) => x.h !== from && x.h !== to)?.s;
    const max = Math.max(other(this.hi) ?? -Infinity, sf, st);
    const min = Math.min(other(this.lo) ?? Infinity, sf, st);
    const old = (this.share.get(from) ?? 0) ** 2 + (this.share.get(to) ?? 0) ** 2;
    return { spread: max - min, squares: this.squares - old + sf * sf + st * st };
  }

  /** Whether `to` could take `i`: the placer's fit (labels, room), the shared pool and anti-affinity. */
  fits(i: RebalanceInstance, to: RebalanceHost): boolean {
    if (to.name === i.host || !takesPart(to)) return false;
    if (i.shared && !to.sharedPool) return false;
    if (i.group && (this.antiGroups.get(i.group)?.get(to.name) ?? 0) > 0) return false;
    const candidate: PlacerHost = { name: to.name, capacity: to.capacity, allocated: to.allocated, ...(to.labels ? { labels: to.labels } : {}) };
    const labels = i.hostLabels && Object.keys(i.hostLabels).length > 0 ? { labels: i.hostLabels } : {};
    return place([candidate], { cpus: i.cpus, memory: i.memory, ...labels }, 'spread').host !== null;
  }

  /** The instances that may move now, off hosts that take part. */
  movable(exclude: ReadonlySet<string> | undefined, from?: string): RebalanceInstance[] {
    return this.instances.filter((i) => {
      if (!i.movable || exclude?.has(i.name) || (from !== undefined && i.host !== from)) return false;
      const h = this.byName.get(i.host);
      return h !== undefined && takesPart(h);
    });
  }

  /** Make the move; its record. */
  apply(i: RebalanceInstance, to: RebalanceHost): RebalanceMove {
    const from = this.byName.get(i.host)!;
    const spreadBefore = this.score().spread;
    const before = { from: loadOf(from), to: loadOf(to) };
    from.allocated.cpus -= i.cpus;
    from.allocated.memory -= i.memory;
    to.allocated.cpus += i.cpus;
    to.allocated.memory += i.memory;
    this.count(i, -1);
    i.host = to.name;
    this.count(i, 1);
    this.refresh();
    return {
      instance: i.name, from: from.name, to: to.name, cpus: i.cpus, memory: i.memory,
      capacity: { from: { ...from.capacity }, to: { ...to.capacity } }, before, after: { from: loadOf(from), to: loadOf(to) }, spreadBefore, spreadAfter: this.score().spread,
    };
  }
}

/** Whether a candidate (instance i to host t, scoring s) beats the best so far; `larger`: ties go to the larger instance. */
function beats(s: { spread: number; squares: number }, i: RebalanceInstance, t: RebalanceHost,
  best: { s: { spread: number; squares: number }; i: RebalanceInstance; t: RebalanceHost } | null, larger: boolean): boolean {
  if (best === null) return true;
  if (better(s, best.s)) return true;
  if (better(best.s, s)) return false;
  if (i.memory !== best.i.memory) return larger ? i.memory > best.i.memory : i.memory < best.i.memory;
  if (i.cpus !== best.i.cpus) return larger ? i.cpus > best.i.cpus : i.cpus < best.i.cpus;
  if (i.name !== best.i.name) return i.name < best.i.name;
  return t.name < best.t.name;
}

/** The moves that even out the pool (see the file's comment), at most maxMoves of them. */
export function planRebalance(hosts: readonly RebalanceHost[], instances: readonly RebalanceInstance[], opts: RebalanceOptions = {}): RebalancePlan {
  const { maxMoves, tolerance } = checkOptions(opts);
  const pool = new Pool(hosts, instances);
  const spreadBefore = pool.score().spread;
  const moves: RebalanceMove[] = [];
  // an instance moves at most once in a plan
  const done = new Set(opts.exclude ?? []);
  while (moves.length < maxMoves) {
    const now = pool.score();
    if (now.spread <= tolerance + EPS) break;
    let best: { s: { spread: number; squares: number }; i: RebalanceInstance; t: RebalanceHost } | null = null;
    for (const i of pool.movable(done)) {
      for (const t of pool.hosts) {
        if (!pool.fits(i, t)) continue;
        const s = pool.scoreIf(i, t);
        if (!better(s, now)) continue;
        if (beats(s, i, t, best, false)) best = { s, i, t };
      }
    }
    if (best === null) break;
    done.add(best.i.name);
    moves.push(pool.apply(best.i, best.t));
  }
  const spreadAfter = pool.score().spread;
  return { moves, spreadBefore, spreadAfter, even: spreadAfter <= tolerance + EPS, hosts: pool.hosts, instances: pool.instances };
}

/**
 * One guest off host `from` (under memory pressure that its balloons could not relieve): of its movable instances
 * and the hosts that could take them (not those in `avoid`: other hosts under pressure), the move that leaves the
 * pool most even, made even if it is less even than now; ties go to the larger guest. Null: none can go anywhere.
 */
export function planRelief(hosts: readonly RebalanceHost[], instances: readonly RebalanceInstance[], from: string, opts: { exclude?: ReadonlySet<string>; avoid?: ReadonlySet<string> } = {}): RebalanceMove | null {
  const pool = new Pool(hosts, instances);
  const src = pool.host(from);
  if (!src || !takesPart(src)) return null;
  let best: { s: { spread: number; squares: number }; i: RebalanceInstance; t: RebalanceHost } | null = null;
  for (const i of pool.movable(opts.exclude, from)) {
    for (const t of pool.hosts) {
      if (opts.avoid?.has(t.name) || !pool.fits(i, t)) continue;
      const s = pool.scoreIf(i, t);
      if (beats(s, i, t, best, true)) best = { s, i, t };
    }
  }
  return best === null ? null : pool.apply(best.i, best.t);
}

/** A share as a percentage with one decimal: 0.375 -> "37.5%". */
export function formatShare(share: number): string {
  return `${(Math.round(share * 1000) / 10).toFixed(1)}%`;
}
