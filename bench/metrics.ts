/**
 * bench/metrics: how long a Prometheus scrape of a daemon's /metrics takes with N instances (default 100), R of them
 * running tiny guests (default 6; the others stopped), beside the floor of the same work done by hand: reading the
 * /proc files /metrics reads for each running QEMU (stat, smaps_rollup, the tasks' stat), with no QMP, agent or
 * formatting. Prints each scrape's median and p95 over 20 scrapes, the reply's size and series count, and the ratio.
 *
 *   make bench-metrics ARGS="N R"   (or: CORRAL_TEST_BASE=.data/test-base node dist/bench/metrics.js N R)
 */
import { readdirSync, readFileSync } from 'node:fs';
import { Daemon, haveTinyBase, newDataDir } from '../test/integration/harness.js';
import { median } from './stats.js';

const N = Number(process.argv[2] ?? 100);
const R = Math.min(N, Number(process.argv[3] ?? 6));
const ROUNDS = 20;

const p95 = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * 0.95))]!;

/** What /metrics reads of a QEMU by hand: its stat, smaps_rollup and each task's stat. */
function procFloor(pids: number[]): void {
  for (const pid of pids) {
    readFileSync(`/proc/${pid}/stat`, 'utf8');
    readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
    for (const t of readdirSync(`/proc/${pid}/task`)) readFileSync(`/proc/${pid}/task/${t}/stat`, 'utf8');
  }
  readFileSync('/proc/self/net/dev', 'utf8');
}

async function main(): Promise<void> {
  if (!haveTinyBase()) throw new Error('the tiny image is not built: make test-base');
  const d = new Daemon(newDataDir(), [], { CORRAL_PRESSURE_INTERVAL: '0' });
  try {
    await d.start();
    let next = 0;
    await Promise.all(Array.from({ length: 4 }, async () => {
      while (next < N) {
        const i = next++;
        const running = i < R;
        const r = await d.api('POST', '/v1/instances', { name: `vm-${String(i).padStart(4, '0')}`, image: 'tiny', memory: '128M', ...(running ? {} : { network: 'none' }) });
        if (r.status !== 201) throw new Error(`create ${i}: ${JSON.stringify(r.body)}`);
      }
    }));
    const pids: number[] = [];
    for (let i = 0; i < R; i++) {
      const name = `vm-${String(i).padStart(4, '0')}`;
      pids.push((await d.ok('POST', `/v1/instances/${name}/start`)).pid as number);
    }
    for (let i = 0; i < R; i++) await d.waitConsole(`vm-${String(i).padStart(4, '0')}`, /corral-tiny ready/, 240_000);
    console.log(`${N} instances, ${R} running tiny guests (TCG), the others stopped`);
    const scrapes: number[] = [];
    let body = '';
    for (let i = 0; i < ROUNDS; i++) {
      const s = performance.now();
      const r = await d.api<string>('GET', '/metrics');
      scrapes.push(performance.now() - s);
      if (r.status !== 200) throw new Error(`/metrics answered ${r.status}`);
      body = r.body;
    }
    const floors: number[] = [];
    for (let i = 0; i < ROUNDS; i++) {
      const s = performance.now();
      procFloor(pids);
      floors.push(performance.now() - s);
    }
    const series = body.split('\n').filter((l) => l && !l.startsWith('#')).length;
    const fig = {
      instances: N, running: R, scrapeMedianMs: +median(scrapes).toFixed(1), scrapeP95Ms: +p95(scrapes).toFixed(1),
      procFloorMedianMs: +median(floors).toFixed(2), ratio: +(median(scrapes) / median(floors)).toFixed(1), bytes: Buffer.byteLength(body), series,
    };
    console.log(`GET /metrics: median ${fig.scrapeMedianMs} ms, p95 ${fig.scrapeP95Ms} ms over ${ROUNDS} scrapes; ${(fig.bytes / 1024).toFixed(1)} KiB, ${series} series`);
    console.log(`the /proc reads alone for the ${R} QEMUs (no QMP, no agent, no formatting): median ${fig.procFloorMedianMs} ms; ratio ${fig.ratio}x`);
    console.log(JSON.stringify(fig));
  } finally {
    await d.destroy();
  }
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
