/**
 * bench/cluster/create-scale: how create and list cost grow with the number of instances on one host. Creates
 * instances through the API in batches (CONCURRENCY at a time) and prints, per batch, the creates per second,
 * the median latency of one create, the latency of `list` and the daemon's RSS; the last line compares the last
 * batch with the first (flat is 1.00x).
 *
 *   node dist/bench/cluster/create-scale.js [TOTAL=2000] [BATCH=250] [CONCURRENCY=8]
 */
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { Daemon, haveTinyBase, newDataDir } from '../../test/integration/harness.js';
import { median } from '../stats.js';

const TOTAL = Number(process.argv[2] ?? 2000);
const BATCH = Number(process.argv[3] ?? 250);
const CONCURRENCY = Number(process.argv[4] ?? 8);

function rssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

interface Batch { upTo: number; perSec: number; createMs: number; listMs: number; rss: number }

async function main(): Promise<void> {
  if (!haveTinyBase()) throw new Error('build the tiny image first: make test-base');
  const d = new Daemon(newDataDir());
  await d.start();
  const rows: Batch[] = [];
  try {
    let made = 0;
    while (made < TOTAL) {
      const names = Array.from({ length: Math.min(BATCH, TOTAL - made) }, (_, i) => `s${made + i}`);
      const took: number[] = [];
      const t0 = performance.now();
      for (let i = 0; i < names.length; i += CONCURRENCY) {
        await Promise.all(names.slice(i, i + CONCURRENCY).map(async (name) => {
          const s = performance.now();
          const r = await d.api('POST', '/v1/instances', { name, image: 'tiny', memory: '64M' });
          if (r.status !== 201) throw new Error(`create ${name}: ${r.status} ${JSON.stringify(r.body)}`);
          took.push(performance.now() - s);
        }));
      }
      const secs = (performance.now() - t0) / 1000;
      made += names.length;
      const lists: number[] = [];
      for (let i = 0; i < 5; i++) {
        const s = performance.now();
        const l = await d.api('GET', '/v1/instances');
        if (l.body.instances.length !== made) throw new Error(`list has ${l.body.instances.length}, expected ${made}`);
        lists.push(performance.now() - s);
      }
      const b = { upTo: made, perSec: names.length / secs, createMs: median(took), listMs: median(lists), rss: rssMiB(d.proc!.pid!) };
      rows.push(b);
      console.log(`instances ${String(b.upTo).padStart(6)}: ${b.perSec.toFixed(1).padStart(6)} creates/s, create p50 ${b.createMs.toFixed(1).padStart(6)} ms, list p50 ${b.listMs.toFixed(1).padStart(7)} ms, daemon RSS ${b.rss.toFixed(0)} MiB`);
    }
  } finally {
    await d.destroy();
  }
  const first = rows[0]!;
  const last = rows[rows.length - 1]!;
  console.log(`create rate, last batch vs first: ${(last.perSec / first.perSec).toFixed(2)}x (flat is 1.00x)`);
}

main().catch((e: Error) => {
  console.error(`bench failed: ${e.message}`);
  process.exit(1);
});
