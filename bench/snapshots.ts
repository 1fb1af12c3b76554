/**
 * bench/snapshots: how long `corral snapshot create` takes on the tiny guest (192 MiB, TCG), disk-only while it runs
 * (frozen by its agent), with --memory, and disk-only while it is stopped (qemu-img), and how long a restore of the
 * memory snapshot takes into the running QEMU. Each round creates and deletes a snapshot; the medians of the API's
 * wall time and of the daemon's own time (the `ms` of instance.snapshot-created), and the vmstate size. Figures only:
 * these machines are noisy and shared.
 *
 *   CORRAL_TEST_BASE=.data/test-base node dist/bench/snapshots.js [ROUNDS=5]
 */
import { performance } from 'node:perf_hooks';
import { Daemon, haveTinyBase, newDataDir, waitFor } from '../test/integration/harness.js';
import { median } from './stats.js';

const ROUNDS = Number(process.argv[2] ?? 5);
const NAME = 'bsnap';

interface Figures { wallMs: number[]; daemonMs: number[]; vmState: number }

async function round(d: Daemon, f: Figures, snap: string, body: Record<string, unknown>): Promise<void> {
  const t0 = performance.now();
  const made = await d.ok('POST', `/v1/instances/${NAME}/snapshots`, { name: snap, ...body }, 201);
  f.wallMs.push(performance.now() - t0);
  f.vmState = made.vmStateSize;
  const ev = (await d.events()).filter((e) => e.type === 'instance.snapshot-created' && e.data.snapshot === snap).pop();
  f.daemonMs.push(Number(ev?.data.ms));
  await d.ok('DELETE', `/v1/instances/${NAME}/snapshots/${snap}`);
}

const fresh = (): Figures => ({ wallMs: [], daemonMs: [], vmState: 0 });
const line = (what: string, f: Figures): string => `${what.padEnd(34)} wall ${median(f.wallMs).toFixed(0).padStart(6)} ms   daemon ${median(f.daemonMs).toFixed(0).padStart(6)} ms   vmstate ${(f.vmState / 2 ** 20).toFixed(1)} MiB`;

async function main(): Promise<void> {
  if (!haveTinyBase()) throw new Error('build the tiny image first: make test-base');
  const d = new Daemon(newDataDir());
  await d.start();
  try {
    await d.ok('POST', '/v1/instances', { name: NAME, image: 'tiny', memory: '192M', start: true }, 201);
    await d.waitConsole(NAME, /corral-tiny ready/, 180_000);
    await waitFor(async () => (await d.api('POST', `/v1/instances/${NAME}/exec`, { command: ['true'] })).status === 200, 180_000, 'the guest agent');
    const disk = fresh();
    const mem = fresh();
    const stopped = fresh();
    const restore: number[] = [];
    for (let i = 0; i < ROUNDS; i++) {
      await round(d, disk, `d${i}`, {});
      await round(d, mem, `m${i}`, { memory: true });
    }
    await d.ok('POST', `/v1/instances/${NAME}/snapshots`, { name: 'keep', memory: true }, 201);
    for (let i = 0; i < ROUNDS; i++) {
      const t0 = performance.now();
      await d.ok('POST', `/v1/instances/${NAME}/snapshots/keep/restore`, { force: true });
      restore.push(performance.now() - t0);
    }
    await d.ok('POST', `/v1/instances/${NAME}/stop`, { timeout: 30 });
    for (let i = 0; i < ROUNDS; i++) await round(d, stopped, `s${i}`, {});
    console.log(`snapshot create, median of ${ROUNDS} (tiny guest, 192 MiB, ${process.env.CORRAL_ACCEL ?? 'the host\'s accelerator'}):`);
    console.log(line('disk-only, running (agent freeze)', disk));
    console.log(line('with --memory, running', mem));
    console.log(line('disk-only, stopped (qemu-img)', stopped));
    console.log(`${'restore --memory --force, running'.padEnd(34)} wall ${median(restore).toFixed(0).padStart(6)} ms`);
    console.log(JSON.stringify({ rounds: ROUNDS, diskMs: median(disk.wallMs), memoryMs: median(mem.wallMs), stoppedMs: median(stopped.wallMs), restoreMemoryMs: median(restore), vmStateBytes: mem.vmState }));
  } finally {
    await d.destroy();
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
