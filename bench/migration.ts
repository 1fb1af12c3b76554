/**
 * bench/migration: live migration of the tiny guest through Corral and by hand, side by side in one run. Two hosts
 * a1 and a2 in network namespaces of their own with a controller (test/integration/netns-cluster.ts), and:
 * - Corral: `corral migrate b1 --to a2 --json` through the controller, then back to a1, and so on: the CLI's wall
 *   time from its start to its result, and QEMU's own total-time and downtime from its figures;
 * - raw: the same guest by hand, a QEMU with the argv Corral gave b1 (its paths moved to a scratch dir, its own overlay
 *   over the same image), run as root in the same namespaces; each round starts a second QEMU with the same argv plus
 *   `-S -incoming defer` on the other host, `migrate-incoming tcp:ITS-IP:PORT` there, the same parameters and
 *   capabilities on the source as Corral sets (downtime limit 300 ms, QEMU's default bandwidth, auto-converge),
 *   `migrate`, query-migrate every 100 ms until completed, `cont` on the destination and `quit` on the source: the wall
 *   time from the destination QEMU's spawn to the source's quit, and QEMU's own figures.
 * Rounds alternate Corral and raw (after one warm-up of each); the medians, the ratios corral/raw, and the CLI's own
 * start-up (`corral --version`), which Corral's wall time includes; then one JSON line with every figure.
 *
 *   make bench-migration   (or: CORRAL_TEST_BASE=.data/test-base node dist/bench/migration.js [ROUNDS=5])
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { QmpClient } from '../src/qemu/qmp.js';
import { haveTinyBase, waitFor } from '../test/integration/harness.js';
import { runCli } from '../test/integration/cluster-harness.js';
import { NetnsCluster } from '../test/integration/netns-cluster.js';
import { median } from './stats.js';

const ROUNDS = Number(process.argv[2] ?? 5);
const READY = 'corral-tiny ready';
const POLL_MS = 100;

interface Round { wallMs: number; totalMs: number; downtimeMs: number }

/** One raw QEMU: its process, its QMP, the host it runs on. */
interface RawQemu { proc: ChildProcess; qmp: QmpClient; host: string; dir: string }

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function main(): Promise<void> {
  if (!haveTinyBase()) throw new Error('build the tiny image first: make test-base');
  const c = new NetnsCluster();
  const raws: RawQemu[] = [];
  const scratch = mkdtempSync('/tmp/corral-bench-mig-');
  const corral: Round[] = [];
  const raw: Round[] = [];
  const cliStart: number[] = [];
  try {
    await c.start(['a1', 'a2']);
    await c.ok(['create', 'b1', '--image', 'tiny', '--memory', '256M', '--pool', 'shared', '--host', 'a1', '--start']);
    await c.host('a1').waitConsole('b1', new RegExp(READY));

    // the raw side: Corral's argv for b1, its run dir and disk moved to the scratch dir
    const [q] = c.copiesOf('b1');
    const argv = readFileSync(`/proc/${q!.pid}/cmdline`, 'utf8').split('\0').slice(1, -1);
    const view = await c.host('a1').ok('GET', '/v1/instances/b1');
    const runDir = join(c.host('a1').dataDir, 'run', view.uuid);
    const disk = join(c.shared, 'instances', 'b1', 'root.qcow2');
    const info = JSON.parse(execFileSync('qemu-img', ['info', '-U', '--output=json', '-f', 'qcow2', disk], { encoding: 'utf8' }));
    const overlay = join(scratch, 'root.qcow2');
    execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', '-F', info['backing-filename-format'] ?? 'qcow2', '-b', info['full-backing-filename'], overlay]);
    let n = 0;
    const start = async (host: string, incoming: boolean): Promise<RawQemu> => {
      const dir = join(scratch, `q${++n}`);
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      const a = argv.map((x) => x.split(runDir).join(dir).split(disk).join(overlay));
      const log = openSync(join(dir, 'console.log'), 'a');
      // -add-fd fd=3: the console log, as Corral's console keeper passes it
      const proc = spawn('nsenter', [`--net=/run/netns/${c.nsOf(host)}`, '--', 'qemu-system-x86_64', ...a, ...(incoming ? ['-S', '-incoming', 'defer'] : [])],
        { stdio: ['ignore', 'ignore', 'inherit', log] });
      closeSync(log);
      const sock = join(dir, 'qmp.sock');
      await waitFor(async () => existsSync(sock), 30_000, `QMP of the raw QEMU on ${host}`);
      const r: RawQemu = { proc, qmp: await QmpClient.connect(sock), host, dir };
      raws.push(r);
      return r;
    };
    let src = await start('a1', false);
    await waitFor(async () => readFileSync(join(src.dir, 'console.log'), 'utf8').includes(READY), 120_000, 'the raw guest to boot');

    let port = 49_200;
    const rawRound = async (to: string): Promise<Round> => {
      const t0 = performance.now();
      const dst = await start(to, true);
      const uri = `tcp:${c.hostIp(to)}:${++port}`;
      await dst.qmp.execute('migrate-incoming', { uri });
      await src.qmp.execute('migrate-set-capabilities', { capabilities: [{ capability: 'auto-converge', state: true }] });
      await src.qmp.execute('migrate-set-parameters', { 'downtime-limit': 300, 'max-bandwidth': 128 * 1024 * 1024 });
      await src.qmp.execute('migrate', { uri });
      let st: { status: string; 'total-time'?: number; downtime?: number; 'error-desc'?: string };
      for (;;) {
        st = await src.qmp.execute('query-migrate');
        if (st.status === 'completed') break;
        if (st.status === 'failed' || st.status === 'cancelled') throw new Error(`raw migration ${st.status}: ${st['error-desc'] ?? ''}`);
        await sleep(POLL_MS);
      }
      // the destination may still be loading the last of the state, as Corral's finish waits for
      for (let s = await dst.qmp.execute<{ status: string }>('query-status'); s.status === 'inmigrate'; s = await dst.qmp.execute('query-status')) await sleep(10);
      await dst.qmp.execute('cont');
      await src.qmp.execute('quit').catch(() => undefined);
      await new Promise((r) => (src.proc.exitCode !== null ? r(null) : src.proc.once('exit', r)));
      const wallMs = performance.now() - t0;
      src.qmp.close();
      src = dst;
      return { wallMs, totalMs: st['total-time'] ?? NaN, downtimeMs: st.downtime ?? NaN };
    };
    const corralRound = async (to: string): Promise<Round> => {
      const t0 = performance.now();
      const r = await runCli(['migrate', 'b1', '--to', to, '--json'], c.ctl.cliEnv(), 300_000);
      const wallMs = performance.now() - t0;
      if (r.code !== 0) throw new Error(`corral migrate: ${r.stderr}`);
      const res = JSON.parse(r.stdout) as { totalMs: number; downtimeMs: number };
      return { wallMs, totalMs: res.totalMs, downtimeMs: res.downtimeMs };
    };

    for (let i = 0; i <= ROUNDS; i++) {
      const to = i % 2 === 0 ? 'a2' : 'a1';
      const a = await corralRound(to);
      const b = await rawRound(to);
      const t0 = performance.now();
      await runCli(['--version'], {});
      const cli = performance.now() - t0;
      if (i === 0) continue; // warm-up
      corral.push(a);
      raw.push(b);
      cliStart.push(cli);
      process.stderr.write(`round ${i} (to ${to}): corral ${a.wallMs.toFixed(0)} ms (QEMU total ${a.totalMs} ms, downtime ${a.downtimeMs} ms), raw ${b.wallMs.toFixed(0)} ms (QEMU total ${b.totalMs} ms, downtime ${b.downtimeMs} ms)\n`);
    }
  } finally {
    for (const r of raws) {
      r.qmp.close();
      if (r.proc.exitCode === null) r.proc.kill('SIGKILL');
    }
    await c.stop();
    rmSync(scratch, { recursive: true, force: true });
  }
  const m = (xs: Round[], k: keyof Round): number => median(xs.map((x) => x[k]));
  const f = (x: number): string => x.toFixed(0).padStart(6);
  console.log(`live migration of the tiny guest (256 MiB, idle, shared-pool disk, accelerator as probed) between two hosts in network namespaces; ${ROUNDS} rounds each, alternating, after a warm-up`);
  console.log(`  corral migrate (CLI start -> result):           median ${f(m(corral, 'wallMs'))} ms; QEMU total-time ${f(m(corral, 'totalMs'))} ms, downtime ${f(m(corral, 'downtimeMs'))} ms`);
  console.log(`  raw QMP (destination QEMU spawn -> source quit): median ${f(m(raw, 'wallMs'))} ms; QEMU total-time ${f(m(raw, 'totalMs'))} ms, downtime ${f(m(raw, 'downtimeMs'))} ms`);
  console.log(`  ratio corral/raw: end to end ${(m(corral, 'wallMs') / m(raw, 'wallMs')).toFixed(2)}x, QEMU total-time ${(m(corral, 'totalMs') / m(raw, 'totalMs')).toFixed(2)}x, downtime ${(m(corral, 'downtimeMs') / m(raw, 'downtimeMs')).toFixed(2)}x`);
  console.log(`  of Corral's wall time, the CLI's own start-up (corral --version): median ${median(cliStart).toFixed(0)} ms`);
  console.log(JSON.stringify({ rounds: ROUNDS, corral, raw, cliStartMs: cliStart }));
}

main().catch((e: Error) => {
  console.error(`bench failed: ${e.stack ?? e.message}`);
  process.exit(1);
});
