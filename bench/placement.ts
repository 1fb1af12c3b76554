/**
 * bench/placement: place 100,000 instance requests in sequence on 10,000 simulated hosts, with the spread and
 * the pack policy, each placement allocating on its host. Runs the Placer (treap per label class) and the
 * reference linear scan on the same hosts and requests, checks that both choose the same hosts, and prints
 * placements per second against the 100 pods/s throughput the Kubernetes scheduler is held to.
 * (Kubernetes does far more per pod: filters, scores, an API round trip; this ratio is for scale, not a race.)
 *
 *   node dist/bench/placement.js [HOSTS] [REQUESTS] [--no-linear]
 */
import { performance } from 'node:perf_hooks';
import { Placer } from '../src/core/placement.js';
import type { HostState, PlacementRequest, PlacementResult, Policy } from '../src/core/placement.js';
import { DEFAULT_POOL_CONFIG, poolCapacity } from '../src/core/pool.js';
import { GiB, MiB } from '../src/core/units.js';
import { rng } from '../test/unit/rng.js';

const args = process.argv.slice(2).filter((a) => !a.startsWith('--'));
const HOSTS = Number(args[0] ?? 10_000);
const REQUESTS = Number(args[1] ?? 100_000);
const LINEAR = !process.argv.includes('--no-linear');
const K8S_SLO = 100; // pods per second

function makeHosts(n: number, r: () => number): HostState[] {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
  const hosts: HostState[] = [];
  for (let i = 0; i < n; i++) {
    const raw = { cpus: pick([16, 24, 32, 48, 64, 96, 128]), memory: pick([64, 128, 192, 256, 384, 512, 768, 1024]) * GiB };
    hosts.push({
      name: `host-${String(i).padStart(5, '0')}`,
      capacity: poolCapacity(raw, DEFAULT_POOL_CONFIG), // 4 vCPUs a thread, memory less 512 MiB
      allocated: { cpus: 0, memory: 0 },
      labels: { zone: `zone-${i % 3}` },
    });
  }
  return hosts;
}

function makeRequests(n: number, r: () => number): PlacementRequest[] {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
  const out: PlacementRequest[] = [];
  for (let i = 0; i < n; i++) {
    const q: PlacementRequest = { cpus: pick([1, 2, 4, 8, 16]), memory: pick([512 * MiB, GiB, 2 * GiB, 4 * GiB, 8 * GiB, 16 * GiB, 32 * GiB, 64 * GiB]) };
    if (r() < 0.1) q.labels = { zone: `zone-${Math.floor(r() * 3)}` }; // one in ten pins a zone
    out.push(q);
  }
  return out;
}

interface Run { seconds: number; setup: number; results: PlacementResult[] }

function run(hosts: HostState[], requests: PlacementRequest[], policy: Policy, linear: boolean): Run {
  const t0 = performance.now();
  const p = new Placer(hosts, policy, { linear });
  const t1 = performance.now();
  const results: PlacementResult[] = new Array(requests.length);
  for (let i = 0; i < requests.length; i++) results[i] = p.place(requests[i]!);
  const t2 = performance.now();
  return { seconds: (t2 - t1) / 1000, setup: (t1 - t0) / 1000, results };
}

const fmt = (x: number): string => Math.round(x).toLocaleString('en-US');

function line(label: string, r: Run): string {
  const placed = r.results.filter((x) => x.host !== null).length;
  const rate = r.results.length / r.seconds;
  return `${label}: ${r.results.length} requests in ${r.seconds.toFixed(3)} s = ${fmt(rate)} placements/s = ${fmt(rate / K8S_SLO)}x the ${K8S_SLO} pods/s SLO` +
    ` (placed ${placed}, refused ${r.results.length - placed}; set-up ${(r.setup * 1000).toFixed(1)} ms)`;
}

const hosts = makeHosts(HOSTS, rng(42));
const requests = makeRequests(REQUESTS, rng(7));
const cap = hosts.reduce((a, h) => ({ cpus: a.cpus + h.capacity.cpus, memory: a.memory + h.capacity.memory }), { cpus: 0, memory: 0 });
const want = requests.reduce((a, q) => ({ cpus: a.cpus + q.cpus, memory: a.memory + q.memory }), { cpus: 0, memory: 0 });
console.log(`${HOSTS} hosts (${fmt(cap.cpus)} vCPUs, ${fmt(cap.memory / GiB)} GiB); ${REQUESTS} requests asking ${fmt(want.cpus)} vCPUs, ${fmt(want.memory / GiB)} GiB`);
console.log(`node ${process.version}`);

// Warm the JIT on a slice so the timed runs measure steady state.
for (const policy of ['spread', 'pack'] as const) run(hosts, requests.slice(0, 2000), policy, false);

for (const policy of ['spread', 'pack'] as const) {
  const fast = run(hosts, requests, policy, false);
  console.log(line(policy, fast));
  if (!LINEAR) continue;
  const ref = run(hosts, requests, policy, true);
  let same = 0;
  for (let i = 0; i < requests.length; i++) if (fast.results[i]!.host === ref.results[i]!.host) same++;
  console.log(line(`${policy} (linear scan)`, ref));
  console.log(`${policy}: same host chosen for ${same}/${requests.length} requests; Placer is ${(ref.seconds / fast.seconds).toFixed(1)}x the linear scan`);
  if (same !== requests.length) process.exitCode = 1;
}
