/**
 * bench/density: how many guests fit. Starts N tiny guests (512 MiB each) through Corral, lets them idle,
 * makes each fill 256 MiB of tmpfs and free it, and compares the memory the guests were given with what their
 * QEMUs really hold on the host (RSS summed): once with the balloon (free page reporting hands freed pages
 * back), once with `balloon: false` (freed guest pages stay resident).
 *
 *   CORRAL_TEST_BASE=.data/test-base node dist/bench/density.js [N=10]
 */
import { readFileSync } from 'node:fs';
import { ConsoleSession, Daemon, haveTinyBase, newDataDir } from '../test/integration/harness.js';

const N = Number(process.argv[2] ?? 10);
const MEM = 512 * 1024 * 1024;
const FILL_MIB = 256;
const MiB = 1024 * 1024;

const rssOf = (pid: number): number => Number(/^VmRSS:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) * 1024;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const fmt = (b: number): string => `${(b / MiB).toFixed(0)} MiB`;

interface Result { given: number; idle: number; afterFill: number; peak: number }

async function round(balloon: boolean): Promise<Result> {
  // Room for N one-vCPU guests on a small host; the pressure controller stays out of the measurement.
  const d = new Daemon(newDataDir(), [], { CORRAL_CPU_RATIO: '16', CORRAL_PRESSURE_INTERVAL: '0' });
  try {
    await d.start();
    const names = Array.from({ length: N }, (_, i) => `d${i}`);
    const pids: number[] = [];
    for (const name of names) {
      const r = await d.api('POST', '/v1/instances', { name, image: 'tiny', memory: MEM, balloon, start: true });
      if (r.status !== 201) throw new Error(`create ${name}: ${JSON.stringify(r.body)}`);
      pids.push(r.body.pid);
    }
    for (const name of names) await d.waitConsole(name, /corral-tiny ready/, 180_000);
    await sleep(10_000);
    const idle = pids.reduce((a, p) => a + rssOf(p), 0);
    let peak = 0;
    for (const name of names) {
      const c = await ConsoleSession.open(d, name);
      try {
        await c.run('mount -o remount,size=400M /dev/shm', 60_000);
        await c.run(`dd if=/dev/zero of=/dev/shm/fill bs=1M count=${FILL_MIB} 2>/dev/null`, 120_000);
        peak = Math.max(peak, pids.reduce((a, p) => a + rssOf(p), 0));
        await c.run('rm /dev/shm/fill', 60_000);
      } finally {
        await c.close();
      }
    }
    await sleep(15_000);
    const afterFill = pids.reduce((a, p) => a + rssOf(p), 0);
    return { given: N * MEM, idle, afterFill, peak };
  } finally {
    await d.destroy();
  }
}

async function main(): Promise<void> {
  if (!haveTinyBase()) throw new Error('the tiny image is not built (make test-base)');
  const rows: Array<[string, Result]> = [];
  for (const balloon of [true, false]) {
    const r = await round(balloon);
    rows.push([balloon ? 'balloon + free page reporting' : 'no balloon', r]);
    process.stdout.write(`${rows.at(-1)![0]}: given ${fmt(r.given)}, host RSS idle ${fmt(r.idle)}, after fill-and-free ${fmt(r.afterFill)} (peak during fills ${fmt(r.peak)})\n`);
  }
  process.stdout.write(`\n${N} guests x ${fmt(MEM)}, each filling and freeing ${FILL_MIB} MiB\n`);
  for (const [what, r] of rows) {
    process.stdout.write(`${what.padEnd(30)} given ${fmt(r.given).padStart(9)}  used ${fmt(r.afterFill).padStart(9)}  given/used ${(r.given / r.afterFill).toFixed(2)}\n`);
  }
  const [on, off] = [rows[0]![1], rows[1]![1]];
  process.stdout.write(`host memory saved by free page reporting after fill-and-free: ${fmt(off.afterFill - on.afterFill)} (${(off.afterFill / on.afterFill).toFixed(2)}x)\n`);
}

await main();
