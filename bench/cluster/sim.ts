/**
 * bench/cluster/sim: a cluster's controllers at HOSTS hosts and VMS instances, on one machine. A private PostgreSQL,
 * `corral cluster init`, two controllers, and one simulated agent (`corral agent --simulate HOSTS`: real agents'
 * join, API and heartbeat over a fake hypervisor) behind them. Then, through the controllers' API:
 * - create+start of VMS instances (POST /v1/instances, start: true), CONCURRENCY at a time, split over both
 *   controllers: instances a second, and the rate of the last 10% against the first 10% (flat is 1.00x);
 * - placement decisions a second: the same create phase counts one per instance; and the placement transaction
 *   alone (ClusterInstances.place, the part under the cluster-wide lock), from two pools at once, rows removed after;
 * - GET /v1/instances (all VMS, as each controller keeps them from what the hosts reported): p50 and p99 of 30
 *   calls, beside the whole-table query that builds the same list in PostgreSQL alone;
 * - memory: each controller's RSS before and after (per instance), and the simulator's per host.
 * One readable line each, then one JSON line with every figure.
 *
 *   node dist/bench/cluster/sim.js [HOSTS=100] [VMS=1000] [CONCURRENCY=16]
 */
import { readFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { performance } from 'node:perf_hooks';
import pg from 'pg';
import { clusterRequest } from '../../src/cluster/agent-link.js';
import { ClusterInstances } from '../../src/cluster/cluster-instances.js';
import { Controller, SimAgent, freePort, freePortRange, runCli } from '../../test/integration/cluster-harness.js';
import { startPostgres } from '../../test/unit/postgres.js';
import { median } from '../stats.js';

const HOSTS = Number(process.argv[2] ?? 100);
const VMS = Number(process.argv[3] ?? 1000);
const CONCURRENCY = Number(process.argv[4] ?? 16);
const LISTS = 30;
const PLACEMENTS = 400;

function rssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]!;
}

interface Api { url: string; ca: string; token: string }

function apiOf(c: Controller): Api {
  const e = c.cliEnv();
  return { url: c.url, ca: readFileSync(String(e.CORRAL_TLS_CA), 'utf8'), token: String(e.CORRAL_TOKEN) };
}

async function call(a: Api, method: string, path: string, body?: unknown, timeoutMs = 120_000): Promise<{ status: number; body: any }> {
  return clusterRequest(a.url, method, path, body, { ca: a.ca }, timeoutMs, { authorization: `Bearer ${a.token}` });
}

let lastListBytes = 0;

/** A GET with its timings: to the first byte of the answer (the controller's work) and to its last (the transfer too). */
function rawGet(a: Api, path: string): Promise<{ status: number; body: Buffer; firstByteMs: number; totalMs: number }> {
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const req = httpsRequest(new URL(path, a.url), { ca: a.ca, headers: { authorization: `Bearer ${a.token}`, accept: 'application/json' } }, (res) => {
      const firstByteMs = performance.now() - t0;
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const body = Buffer.concat(chunks);
        lastListBytes = body.length;
        resolve({ status: res.statusCode ?? 0, body, firstByteMs, totalMs: performance.now() - t0 });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

/** Run job(0..count-1), `limit` at a time; returns each job's end time (ms, performance.now()). */
async function pool(count: number, limit: number, job: (i: number) => Promise<void>): Promise<number[]> {
  const ends: number[] = [];
  let next = 0;
  await Promise.all(Array.from({ length: limit }, async () => {
    while (next < count) {
      const i = next++;
      await job(i);
      ends.push(performance.now());
    }
  }));
  return ends.sort((a, b) => a - b);
}

function line(what: string, value: string): void {
  console.log(`${what.padEnd(44)} ${value}`);
}

async function main(): Promise<void> {
  const t0 = performance.now();
  const db = await startPostgres();
  const ctls: Controller[] = [];
  let sim: SimAgent | null = null;
  try {
    const init = await runCli(['cluster', 'init', '--database', db.url, '--json'], {});
    if (init.code !== 0) throw new Error(`cluster init: ${init.stderr}`);
    for (let i = 0; i < 2; i++) {
      const c = new Controller(db.url, await freePort(), { CORRAL_UNREACHABLE_AFTER_MS: '30000' });
      ctls.push(c);
      await c.start();
    }
    const apis = ctls.map(apiOf);
    // each host holds VMS/HOSTS instances of 1 vCPU and 64 MiB: the default size (32 CPUs at 4 vCPUs each, 128 GiB)
    // holds 128 a host; more asks for more CPUs
    const perHost = Math.ceil(VMS / HOSTS);
    const cpus = Math.max(32, Math.ceil((perHost * 1.25) / 4));
    sim = new SimAgent(ctls[0]!, HOSTS, await freePortRange(HOSTS), ['--cpus', String(cpus)]);
    const simPid = (): number => sim!.proc!.pid!;
    const ready = await sim.start(600_000);
    line('simulator', ready.replace(/^corral simulator: /, ''));
    const simRss0 = rssMiB(simPid());
    const simPerHost = Number(/\(([\d.]+) MiB a host\)/.exec(ready)?.[1]);
    // every host up as the controllers see it
    for (;;) {
      const hs = (await call(apis[1]!, 'GET', '/v1/hosts')).body.hosts as Array<{ state: string }>;
      if (hs.length === HOSTS && hs.every((h) => h.state === 'up')) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    line('setup (PostgreSQL, 2 controllers, hosts)', `${((performance.now() - t0) / 1000).toFixed(1)} s`);
    const ctlRss0 = ctls.map((c) => rssMiB(c.proc!.pid!));

    // a warm-up (TLS sessions, JIT) of 2 x CONCURRENCY instances, deleted again, so that the first 10% measure the
    // cluster and not a cold process
    const warm = 2 * CONCURRENCY;
    await pool(warm, CONCURRENCY, async (i) => {
      const r = await call(apis[i % 2]!, 'POST', '/v1/instances', { name: `warm-${i}`, image: 'tiny', memory: '64M', start: true });
      if (r.status !== 201) throw new Error(`warm-up create: ${r.status} ${JSON.stringify(r.body).slice(0, 300)}`);
    });
    await pool(warm, CONCURRENCY, async (i) => {
      const r = await call(apis[i % 2]!, 'DELETE', `/v1/instances/warm-${i}?force=true`);
      if (r.status >= 300) throw new Error(`warm-up delete: ${r.status} ${JSON.stringify(r.body).slice(0, 300)}`);
    });

    // create+start, split over both controllers
    const created: number[] = [];
    const tc = performance.now();
    const ends = await pool(VMS, CONCURRENCY, async (i) => {
      const s = performance.now();
      const name = `vm-${String(i).padStart(6, '0')}`;
      const r = await call(apis[i % 2]!, 'POST', '/v1/instances', { name, image: 'tiny', memory: '64M', start: true });
      if (r.status !== 201 || r.body.state !== 'running') throw new Error(`create ${name}: ${r.status} ${JSON.stringify(r.body).slice(0, 300)}`);
      created.push(performance.now() - s);
    });
    const createSecs = (ends[ends.length - 1]! - tc) / 1000;
    const rate = VMS / createSecs;
    const tenth = Math.max(1, Math.floor(VMS / 10));
    const firstRate = tenth / ((ends[tenth - 1]! - tc) / 1000);
    const lastRate = tenth / ((ends[VMS - 1]! - ends[VMS - 1 - tenth]!) / 1000);
    line(`create+start of ${VMS} over ${HOSTS} hosts`, `${createSecs.toFixed(1)} s, ${rate.toFixed(1)} VMs/s (create p50 ${median(created).toFixed(0)} ms, p99 ${pct(created, 99).toFixed(0)} ms; ZStack: 1,000 in 103 s = 9.7/s)`);
    line('create rate, last 10% vs first 10%', `${(lastRate / firstRate).toFixed(2)}x (${firstRate.toFixed(1)}/s then ${lastRate.toFixed(1)}/s; flat is 1.00x)`);

    // list of all instances
    const lists: number[] = [];
    const firstBytes: number[] = [];
    const parses: number[] = [];
    for (let i = 0; i < LISTS; i++) {
      const r = await rawGet(apis[i % 2]!, '/v1/instances');
      const s = performance.now();
      const got = JSON.parse(r.body.toString('utf8')).instances as Array<{ state: string }>;
      parses.push(performance.now() - s);
      if (r.status !== 200 || got.length !== VMS || got.some((x) => x.state !== 'running')) throw new Error(`list: ${r.status}, ${got?.length} instances`);
      lists.push(r.totalMs);
      firstBytes.push(r.firstByteMs);
    }
    line(`GET /v1/instances (${VMS}), ${LISTS} calls`, `p50 ${median(lists).toFixed(1)} ms, p99 ${pct(lists, 99).toFixed(1)} ms (first byte p50 ${median(firstBytes).toFixed(1)} ms; then ${(median(parses)).toFixed(1)} ms to parse its ${(lastListBytes / 1024 ** 2).toFixed(1)} MiB)`);
    // side by side: the whole-table query alone (what each list cost before controllers kept it), no HTTP, no TLS
    const direct = new pg.Pool({ connectionString: db.url, max: 2 });
    const wholeTable = new ClusterInstances(direct, { unreachableAfterMs: 30_000, policy: 'spread' });
    const wholeMs: number[] = [];
    for (let i = 0; i < LISTS; i++) {
      const s = performance.now();
      await wholeTable.listJson();
      wholeMs.push(performance.now() - s);
    }
    await direct.end();
    line('the whole-table list query alone', `p50 ${median(wholeMs).toFixed(1)} ms (the kept list through the API: ${(median(lists) / median(wholeMs)).toFixed(2)}x of it)`);
    const ctlRss1 = ctls.map((c) => rssMiB(c.proc!.pid!));
    const perVmKiB = ctls.map((_, i) => ((ctlRss1[i]! - ctlRss0[i]!) * 1024) / VMS);
    line('controller RSS before -> after', ctls.map((_, i) => `${ctlRss0[i]!.toFixed(0)} -> ${ctlRss1[i]!.toFixed(0)} MiB (${perVmKiB[i]!.toFixed(1)} KiB a VM)`).join(', '));
    const simRss1 = rssMiB(simPid());
    line('simulator RSS', `${simRss0.toFixed(0)} MiB with ${HOSTS} hosts (${simPerHost.toFixed(2)} MiB a host above the process's own), ${((simRss1 - simRss0) * 1024 / VMS).toFixed(1)} KiB a VM, ${simRss1.toFixed(0)} MiB with ${VMS} VMs`);

    // the placement transaction alone, from two pools at once (as two controllers), over HOSTS hosts and VMS rows
    const pools = [0, 1].map(() => new pg.Pool({ connectionString: db.url, max: CONCURRENCY / 2 }));
    const placers = pools.map((p) => new ClusterInstances(p, { unreachableAfterMs: 30_000, policy: 'spread' }));
    const tp = performance.now();
    const placeMs: number[] = [];
    await pool(PLACEMENTS, CONCURRENCY, async (i) => {
      const s = performance.now();
      await placers[i % 2]!.place({ name: `place-${i}`, cpus: 1, memory: 64 * 1024 ** 2 });
      placeMs.push(performance.now() - s);
    });
    const placeRate = PLACEMENTS / ((performance.now() - tp) / 1000);
    await pools[0]!.query("DELETE FROM instances WHERE name LIKE 'place-%'");
    await Promise.all(pools.map((p) => p.end()));
    line(`placement transactions, ${PLACEMENTS} from 2 pools`, `${placeRate.toFixed(0)}/s (p50 ${median(placeMs).toFixed(1)} ms under ${CONCURRENCY} at once, ${HOSTS} hosts, ${VMS} instances)`);

    const stopped = await sim.stop();
    if (stopped !== 0) throw new Error(`the simulator exited ${stopped}: ${sim.log.slice(-2000)}`);
    console.log(JSON.stringify({
      hosts: HOSTS, vms: VMS, concurrency: CONCURRENCY,
      createStartPerSec: +rate.toFixed(1), createSecs: +createSecs.toFixed(1), createP50Ms: +median(created).toFixed(1), createP99Ms: +pct(created, 99).toFixed(1),
      rateLastVsFirst: +(lastRate / firstRate).toFixed(2), placementsPerSecCreate: +rate.toFixed(1), placementTxPerSec: +placeRate.toFixed(0),
      listP50Ms: +median(lists).toFixed(1), listP99Ms: +pct(lists, 99).toFixed(1), listFirstByteP50Ms: +median(firstBytes).toFixed(1), listParseP50Ms: +median(parses).toFixed(1), wholeTableListP50Ms: +median(wholeMs).toFixed(1),
      controllerRssMiB: ctlRss1.map((x) => +x.toFixed(0)), controllerKiBPerVm: perVmKiB.map((x) => +x.toFixed(1)),
      simRssMiB: +simRss0.toFixed(0), simMiBPerHost: simPerHost, simKiBPerVm: +(((simRss1 - simRss0) * 1024) / VMS).toFixed(1), simRssWithVmsMiB: +simRss1.toFixed(0),
      totalSecs: +((performance.now() - t0) / 1000).toFixed(1),
    }));
  } finally {
    await sim?.destroy();
    for (const c of ctls) await c.destroy();
    await db.stop();
  }
}

main().catch((e: Error) => {
  console.error(`bench failed: ${e.message}`);
  process.exit(1);
});

