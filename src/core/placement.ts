/**
 * Placement: which host takes a new instance. Pure. Two policies:
 *   spread: the fitting host with the most free memory (ties: most free CPUs, then the smaller name);
 *   pack:   the fitting host with the least free memory (ties: least free CPUs, then the smaller name).
 * A host fits when it is schedulable, carries every label the request asks for, and has free memory and
 * free CPUs (capacity - allocated) at least as large as the request.
 *
 * `place` is the reference: one allocation-free linear scan, O(hosts). `Placer` keeps host state, applies
 * each placement's allocation, and answers in O(log hosts) with a treap per label class ordered by
 * (free memory, free CPUs, name) and augmented with the largest free CPUs of each subtree. It gives exactly
 * the host `place` gives (a property test checks this); on failure it asks `place` for the reason.
 */
import { invalidSpec } from './errors.js';
import { formatSize } from './units.js';

export type Policy = 'spread' | 'pack';

export interface HostState {
  name: string;
  capacity: { cpus: number; memory: number };
  allocated: { cpus: number; memory: number };
  labels?: Record<string, string>;
  /** false: take no new instances (cordoned). Default true. */
  schedulable?: boolean;
}

export interface PlacementRequest {
  cpus: number;
  memory: number;
  /** Labels the host must carry, with these values. */
  labels?: Record<string, string>;
}

export type PlacementResult = { host: string } | { host: null; reason: string };

const NO_KEYS: readonly string[] = [];

function checkRequest(r: PlacementRequest): void {
  if (!(Number.isFinite(r.cpus) && r.cpus >= 0)) throw invalidSpec('cpus', `must be a number, 0 or more, got ${r.cpus}`);
  if (!(Number.isFinite(r.memory) && r.memory >= 0)) throw invalidSpec('memory', `must be a number of bytes, 0 or more, got ${r.memory}`);
}

function hasLabels(have: Record<string, string> | undefined, keys: readonly string[], want: Record<string, string>): boolean {
  if (keys.length === 0) return true;
  if (have === undefined) return false;
  for (let i = 0; i < keys.length; i++) {
    const k = keys[i]!;
    if (!Object.hasOwn(have, k) || have[k] !== want[k]) return false;
  }
  return true;
}

/** Whether free (m, c) on host n beats (bm, bc) on host bn under the policy. */
function better(spread: boolean, m: number, c: number, n: string, bm: number, bc: number, bn: string): boolean {
  if (m !== bm) return spread ? m > bm : m < bm;
  if (c !== bc) return spread ? c > bc : c < bc;
  return n < bn;
}

function describe(r: PlacementRequest): string {
  const cpus = `${r.cpus} vCPU${r.cpus === 1 ? '' : 's'}`;
  const labels = r.labels && Object.keys(r.labels).length > 0
    ? ` with labels ${Object.entries(r.labels).map(([k, v]) => JSON.stringify(`${k}=${v}`)).join(', ')}` : '';
  return `${cpus} and ${formatSize(r.memory)}${labels}`;
}

/** The reference placement: one pass over the hosts, nothing allocated per host. */
export function place(hosts: readonly HostState[], request: PlacementRequest, policy: Policy): PlacementResult {
  checkRequest(request);
  const want = request.labels ?? {};
  const keys = request.labels ? Object.keys(request.labels) : NO_KEYS;
  const spread = policy === 'spread';
  const needM = request.memory;
  const needC = request.cpus;
  let best = -1, bestM = 0, bestC = 0, bestName = '';
  let cordoned = 0, unlabelled = 0, lackBoth = 0, lackMem = 0, lackCpu = 0;
  for (let i = 0; i < hosts.length; i++) {
    const h = hosts[i]!;
    if (h.schedulable === false) { cordoned++; continue; }
    if (keys.length !== 0 && !hasLabels(h.labels, keys, want)) { unlabelled++; continue; }
    const m = h.capacity.memory - h.allocated.memory;
    const c = h.capacity.cpus - h.allocated.cpus;
    if (m < needM) { if (c < needC) lackBoth++; else lackMem++; continue; }
    if (c < needC) { lackCpu++; continue; }
    if (best < 0 || better(spread, m, c, h.name, bestM, bestC, bestName)) { best = i; bestM = m; bestC = c; bestName = h.name; }
  }
  if (best >= 0) return { host: bestName };
  if (hosts.length === 0) return { host: null, reason: `no host fits ${describe(request)}: there are no hosts` };
  const parts: string[] = [];
  const add = (n: number, what: string): void => { if (n > 0) parts.push(`${n} ${what}`); };
  add(cordoned, 'unschedulable');
  add(unlabelled, 'lack the labels');
  add(lackBoth, 'lack memory and CPUs');
  add(lackMem, 'lack memory');
  add(lackCpu, 'lack CPUs');
  const n = hosts.length;
  return { host: null, reason: `no host fits ${describe(request)}: ${n} host${n === 1 ? '' : 's'}: ${parts.join(', ')}` };
}

function copyHost(h: HostState): HostState {
  const c: HostState = { ...h, capacity: { ...h.capacity }, allocated: { ...h.allocated } };
  if (h.labels) c.labels = { ...h.labels };
  return c;
}

export interface PlacerOptions {
  /** Use the reference linear scan for every request (for comparison and benchmarks). */
  linear?: boolean;
}

/** Keeps host state across placements: each successful placement allocates its request on the chosen host. */
export class Placer {
  readonly policy: Policy;
  private readonly linear: boolean;
  private readonly hs: HostState[];
  private readonly byName = new Map<string, number>();
  // Per host: free memory and CPUs (capacity - allocated, computed as `place` computes them), name rank
  // (signed so that "later in the order" is "better" for spread), label class (-1: unschedulable).
  private readonly fm: Float64Array;
  private readonly fc: Float64Array;
  private readonly tie: Float64Array;
  private readonly cls: Int32Array;
  // Treap: children, heap priority, largest free CPUs in the subtree.
  private readonly L: Int32Array;
  private readonly R: Int32Array;
  private readonly pri: Float64Array;
  private readonly maxC: Float64Array;
  private readonly roots: number[] = [];
  private readonly classLabels: Array<Record<string, string> | undefined> = [];
  private sl = -1;
  private sr = -1;

  constructor(hosts: readonly HostState[], policy: Policy, opts: PlacerOptions = {}) {
    this.policy = policy;
    this.linear = opts.linear === true;
    const n = hosts.length;
    this.hs = hosts.map(copyHost);
    this.hs.forEach((h, i) => {
      if (this.byName.has(h.name)) throw invalidSpec('hosts', `host name "${h.name}" appears twice`);
      this.byName.set(h.name, i);
    });
    this.fm = new Float64Array(n);
    this.fc = new Float64Array(n);
    this.tie = new Float64Array(n);
    this.cls = new Int32Array(n);
    this.L = new Int32Array(n).fill(-1);
    this.R = new Int32Array(n).fill(-1);
    this.pri = new Float64Array(n);
    this.maxC = new Float64Array(n);
    const order = this.hs.map((_, i) => i).sort((a, b) => (this.hs[a]!.name < this.hs[b]!.name ? -1 : 1));
    order.forEach((i, rank) => { this.tie[i] = policy === 'spread' ? -rank : rank; });
    const classOf = new Map<string, number>();
    let seed = 0x9e3779b9;
    for (let i = 0; i < n; i++) {
      const h = this.hs[i]!;
      seed = (Math.imul(seed ^ (seed >>> 15), 0x2c1b3c6d) + 0x6d2b79f5) | 0;
      this.pri[i] = (seed >>> 0) / 2 ** 32;
      this.refresh(i);
      if (h.schedulable === false || this.linear) { this.cls[i] = -1; continue; }
      const sig = JSON.stringify(Object.entries(h.labels ?? {}).sort(([a], [b]) => (a < b ? -1 : 1)));
      let c = classOf.get(sig);
      if (c === undefined) {
        c = this.roots.length;
        classOf.set(sig, c);
        this.roots.push(-1);
        this.classLabels.push(h.labels);
      }
      this.cls[i] = c;
      this.roots[c] = this.insert(this.roots[c]!, i);
    }
  }

  /** Place one request; on success the chosen host's allocation grows by the request. */
  place(request: PlacementRequest): PlacementResult {
    if (this.linear) {
      const r = place(this.hs, request, this.policy);
      if (r.host !== null) this.adjust(this.byName.get(r.host)!, request.cpus, request.memory);
      return r;
    }
    checkRequest(request);
    const want = request.labels ?? {};
    const keys = request.labels ? Object.keys(request.labels) : NO_KEYS;
    const spread = this.policy === 'spread';
    let best = -1;
    for (let k = 0; k < this.roots.length; k++) {
      if (!hasLabels(this.classLabels[k], keys, want)) continue;
      const root = this.roots[k]!;
      const x = spread ? this.findSpread(root, request.memory, request.cpus) : this.findPack(root, request.memory, request.cpus);
      if (x >= 0 && (best < 0 || (spread ? this.less(best, x) : this.less(x, best)))) best = x;
    }
    if (best < 0) return place(this.hs, request, this.policy);
    this.adjust(best, request.cpus, request.memory);
    return { host: this.hs[best]!.name };
  }

  /** Give back what an instance held on a host (it stopped or was deleted). */
  release(host: string, cpus: number, memory: number): void {
    const i = this.byName.get(host);
    if (i === undefined) throw invalidSpec('host', `no host "${host}"`);
    checkRequest({ cpus, memory });
    this.adjust(i, -cpus, -memory);
  }

  /** A copy of the current state of every host. */
  snapshot(): HostState[] {
    return this.hs.map(copyHost);
  }

  private adjust(i: number, cpus: number, memory: number): void {
    const h = this.hs[i]!;
    const c = this.cls[i]!;
    if (c >= 0) this.roots[c] = this.remove(this.roots[c]!, i);
    h.allocated.cpus += cpus;
    h.allocated.memory += memory;
    this.refresh(i);
    if (c >= 0) this.roots[c] = this.insert(this.roots[c]!, i);
  }

  private refresh(i: number): void {
    const h = this.hs[i]!;
    this.fm[i] = h.capacity.memory - h.allocated.memory;
    this.fc[i] = h.capacity.cpus - h.allocated.cpus;
    this.L[i] = this.R[i] = -1;
    this.maxC[i] = this.fc[i]!;
  }

  /** Order of the treap: free memory, then free CPUs, then the name rank, ascending. */
  private less(a: number, b: number): boolean {
    const fm = this.fm, fc = this.fc;
    if (fm[a] !== fm[b]) return fm[a]! < fm[b]!;
    if (fc[a] !== fc[b]) return fc[a]! < fc[b]!;
    return this.tie[a]! < this.tie[b]!;
  }

  private pull(t: number): void {
    let m = this.fc[t]!;
    const l = this.L[t]!, r = this.R[t]!;
    if (l >= 0 && this.maxC[l]! > m) m = this.maxC[l]!;
    if (r >= 0 && this.maxC[r]! > m) m = this.maxC[r]!;
    this.maxC[t] = m;
  }

  /** Split t into the nodes before x (this.sl) and the rest (this.sr). */
  private split(t: number, x: number): void {
    if (t < 0) { this.sl = this.sr = -1; return; }
    if (this.less(t, x)) {
      this.split(this.R[t]!, x);
      this.R[t] = this.sl; this.pull(t); this.sl = t;
    } else {
      this.split(this.L[t]!, x);
      this.L[t] = this.sr; this.pull(t); this.sr = t;
    }
  }

  private merge(a: number, b: number): number {
    if (a < 0) return b;
    if (b < 0) return a;
    if (this.pri[a]! > this.pri[b]!) { this.R[a] = this.merge(this.R[a]!, b); this.pull(a); return a; }
    this.L[b] = this.merge(a, this.L[b]!); this.pull(b); return b;
  }

  private insert(t: number, x: number): number {
    if (t < 0) return x;
    if (this.pri[x]! > this.pri[t]!) {
      this.split(t, x);
      this.L[x] = this.sl; this.R[x] = this.sr; this.pull(x);
      return x;
    }
    if (this.less(x, t)) this.L[t] = this.insert(this.L[t]!, x);
    else this.R[t] = this.insert(this.R[t]!, x);
    this.pull(t);
    return t;
  }

  private remove(t: number, x: number): number {
    if (t === x) return this.merge(this.L[t]!, this.R[t]!);
    if (this.less(x, t)) this.L[t] = this.remove(this.L[t]!, x);
    else this.R[t] = this.remove(this.R[t]!, x);
    this.pull(t);
    return t;
  }

  /** Spread: the last host in the order with enough CPUs has the most memory of those; it fits or none does. */
  private findSpread(t: number, m: number, c: number): number {
    const L = this.L, R = this.R, maxC = this.maxC;
    while (t >= 0) {
      const r = R[t]!;
      if (r >= 0 && maxC[r]! >= c) { t = r; continue; }
      if (this.fc[t]! >= c) return this.fm[t]! >= m ? t : -1;
      const l = L[t]!;
      if (l >= 0 && maxC[l]! >= c) { t = l; continue; }
      return -1;
    }
    return -1;
  }

  /** Pack: the first host in the order with enough memory and enough CPUs. */
  private findPack(t: number, m: number, c: number): number {
    if (t < 0) return -1;
    if (this.fm[t]! < m) return this.findPack(this.R[t]!, m, c);
    const l = this.findPack(this.L[t]!, m, c);
    if (l >= 0) return l;
    if (this.fc[t]! >= c) return t;
    return this.firstWithCpus(this.R[t]!, c);
  }

  private firstWithCpus(t: number, c: number): number {
    const L = this.L, maxC = this.maxC;
    while (t >= 0 && maxC[t]! >= c) {
      const l = L[t]!;
      if (l >= 0 && maxC[l]! >= c) { t = l; continue; }
      if (this.fc[t]! >= c) return t;
      t = this.R[t]!;
    }
    return -1;
  }
}

/** Place requests in order on a fresh Placer, each success allocating on its host. */
export function placeMany(hosts: readonly HostState[], requests: readonly PlacementRequest[], policy: Policy, opts: PlacerOptions = {}): PlacementResult[] {
  const p = new Placer(hosts, policy, opts);
  return requests.map((r) => p.place(r));
}
