/**
 * bench/start: boot the tiny guest to "corral-tiny ready" through Corral, and through the same
 * qemu-system-x86_64 argv run by hand, alternately; print both medians and their ratio, and the daemon's own
 * share of a start (API call to QEMU launched, plus QMP ready to reply).
 *
 *   make bench            (or: CORRAL_TEST_BASE=.data/test-base node dist/bench/start.js [ROUNDS])
 */
import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Daemon, haveTinyBase, newDataDir } from '../test/integration/harness.js';
import { median } from './stats.js';

const ROUNDS = Number(process.argv[2] ?? 7);
const READY = 'corral-tiny ready';

async function waitForFile(file: string, text: string, timeoutMs = 60_000): Promise<void> {
  const t0 = Date.now();
  for (;;) {
    try {
      if (readFileSync(file, 'utf8').includes(text)) return;
    } catch {
      /* not yet */
    }
    if (Date.now() - t0 > timeoutMs) throw new Error(`no "${text}" in ${file} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

function run(cmd: string, args: string[]): Promise<number> {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'inherit'] });
    p.on('error', reject);
    p.on('close', (code) => resolve(code ?? 1));
  });
}

/** The argv Corral used, with its paths moved into dir: the same command, run by hand. */
function rawArgv(corralArgv: string[], runDir: string, instDir: string, dir: string): string[] {
  return corralArgv.map((a) => a.split(runDir).join(join(dir, 'run')).split(instDir).join(join(dir, 'inst')));
}

async function main(): Promise<void> {
  if (!haveTinyBase()) throw new Error('build the tiny image first: make test-base');
  const d = new Daemon(newDataDir());
  await d.start();
  const corral: number[] = [];
  const raw: number[] = [];
  const daemonShare: number[] = [];
  const scratch = join(d.dataDir, 'raw');
  try {
    const c = await d.api('POST', '/v1/instances', { name: 'bench', image: 'tiny', memory: '256M' });
    if (c.status !== 201) throw new Error(JSON.stringify(c.body));
    const uuid = c.body.uuid as string;
    const instDir = join(d.dataDir, 'instances', uuid);
    const runDir = join(d.dataDir, 'run', uuid);
    let argv: string[] | null = null;

    for (let i = 0; i < ROUNDS + 1; i++) {
      // Corral: API call -> guest prints READY.
      rmSync(join(instDir, 'console.log'), { force: true });
      const t0 = performance.now();
      const r = await d.api('POST', '/v1/instances/bench/start', {});
      const tApi = performance.now() - t0;
      if (r.status !== 200) throw new Error(JSON.stringify(r.body));
      await waitForFile(join(instDir, 'console.log'), READY);
      const tCorral = performance.now() - t0;
      const timing = Object.fromEntries(String(r.headers['server-timing']).split(', ').map((p) => {
        const [k, v] = p.split(';dur=');
        return [k, Number(v)];
      }));
      argv ??= readFileSync(`/proc/${r.body.pid}/cmdline`, 'utf8').split('\0').slice(1, -1);
      await d.api('POST', '/v1/instances/bench/kill', {});

      // Raw QEMU: the same argv by hand, its own overlay and sockets.
      rmSync(scratch, { recursive: true, force: true });
      mkdirSync(join(scratch, 'run'), { recursive: true, mode: 0o700 });
      mkdirSync(join(scratch, 'inst'), { recursive: true });
      const disk = join(instDir, 'root.qcow2');
      await run('qemu-img', ['create', '-q', '-f', 'qcow2', '-F', 'qcow2', '-b', disk, join(scratch, 'inst', 'root.qcow2')]);
      const a = rawArgv(argv, runDir, instDir, scratch);
      const t1 = performance.now();
      const q = spawn('qemu-system-x86_64', a, { stdio: ['ignore', 'ignore', 'inherit'] });
      const gone = new Promise((res) => q.once('exit', res));
      await waitForFile(join(scratch, 'inst', 'console.log'), READY);
      const tRaw = performance.now() - t1;
      q.kill('SIGKILL');
      await gone;

      if (i === 0) continue; // warm-up round
      corral.push(tCorral);
      raw.push(tRaw);
      daemonShare.push(tApi - (timing.qemu ?? 0));
      process.stderr.write(`round ${i}: corral ${tCorral.toFixed(0)} ms, raw ${tRaw.toFixed(0)} ms, daemon share ${(tApi - (timing.qemu ?? 0)).toFixed(1)} ms\n`);
    }
  } finally {
    await d.destroy();
  }
  const mc = median(corral);
  const mr = median(raw);
  console.log(`boot to "${READY}" (${ROUNDS} rounds each, alternating, tiny guest, 256 MiB, accelerator as probed)`);
  console.log(`  corral start (API call -> ready): median ${mc.toFixed(0)} ms`);
  console.log(`  raw qemu-system-x86_64, same argv:  median ${mr.toFixed(0)} ms`);
  console.log(`  ratio corral/raw: ${(mc / mr).toFixed(3)}x (target <= 1.10x)`);
  console.log(`  daemon's own share (API call total minus QEMU's own start-up): median ${median(daemonShare).toFixed(1)} ms (target < 50 ms)`);
}

main().catch((e: Error) => {
  console.error(`bench failed: ${e.message}`);
  process.exit(1);
});
