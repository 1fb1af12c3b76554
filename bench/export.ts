/**
 * bench/export: corral export and import of one instance against qemu-img doing the same disk work by hand, in one
 * run, on one machine.
 *
 * The instance's root overlay (on the tiny image) gets MIB MiB written from the host with qemu-io: half random bytes
 * (incompressible), half a repeated byte (compressible), as data on a real disk is a mix. Then, ROUNDS times each:
 * - export: `corral export NAME FILE` (stopped instance: flattened, compressed, sha256 of the disk, the tar written by
 *   the CLI from the daemon's download) against `qemu-img convert -c -O qcow2` of the same overlay (flattened and
 *   compressed: the archive's disk with no checksum, no tar, no HTTP);
 * - import: `corral import FILE NEW` (upload, sha256 checked, inspected, written onto the image with convert -B)
 *   against `qemu-img convert -B IMAGE` of the compressed disk (the import's own disk work).
 * Prints MB/s of the data the disk holds (the overlay's allocation) and the ratios, the archive's size against
 * the disk's used size, and what one CLI round trip costs (node's start-up is part of each corral time).
 *
 *   make bench-export ARGS="--mib 256 --rounds 2"
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { median } from './stats.js';
import { Daemon, haveTinyBase, newDataDir } from '../test/integration/harness.js';

function arg(name: string, def: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1]! : def;
}
const MIB = Number(arg('mib', '256'));
const ROUNDS = Number(arg('rounds', '2'));

function seconds(fn: () => void): number {
  const t = process.hrtime.bigint();
  fn();
  return Number(process.hrtime.bigint() - t) / 1e9;
}

async function cliSeconds(d: Daemon, args: string[]): Promise<number> {
  const t = process.hrtime.bigint();
  const r = await d.cli(args, undefined, 30 * 60_000);
  if (r.code !== 0) throw new Error(`corral ${args.join(' ')}: ${r.stderr}`);
  return Number(process.hrtime.bigint() - t) / 1e9;
}

const mb = (bytes: number): string => (bytes / 1e6).toFixed(1);

async function main(): Promise<void> {
  if (!haveTinyBase()) throw new Error('the tiny image is not built (make test-base)');
  const work = mkdtempSync(join(tmpdir(), 'corral-bench-export-'));
  const d = new Daemon(newDataDir(), [], {});
  await d.start();
  try {
    await d.ok('POST', '/v1/instances', { name: 'bx', image: 'tiny', disk: `${Math.max(1024, 2 * MIB)}M` }, 201);
    const inst = await d.ok('GET', '/v1/instances/bx');
    const image = (await d.ok('GET', '/v1/images/tiny')).disk as string;
    const chunk = join(work, 'random');
    writeFileSync(chunk, randomBytes(16 * 1024 * 1024));
    const half = Math.floor(MIB / 2);
    const io: string[] = [];
    for (let off = 0; off < half; off += 16) io.push('-c', `write -q -s ${chunk} ${off}M 16M`);
    io.push('-c', `write -q -P 0x61 ${half}M ${MIB - half}M`);
    execFileSync('qemu-io', ['-f', 'qcow2', ...io, inst.disk.path], { stdio: 'ignore' });
    const used = statSync(inst.disk.path).blocks * 512;
    console.log(`disk: ${MIB} MiB written (half random, half one byte); the overlay uses ${mb(used)} MB`);

    const ex = { corral: [] as number[], raw: [] as number[] };
    const im = { corral: [] as number[], raw: [] as number[] };
    let archiveSize = 0;
    let rawSize = 0;
    for (let i = 0; i < ROUNDS; i++) {
      const archive = join(work, `bx-${i}.tar`);
      ex.corral.push(await cliSeconds(d, ['export', 'bx', archive]));
      archiveSize = statSync(archive).size;
      const raw = join(work, `raw-${i}.qcow2`);
      ex.raw.push(seconds(() => execFileSync('qemu-img', ['convert', '-f', 'qcow2', '-O', 'qcow2', '-c', inst.disk.path, raw])));
      rawSize = statSync(raw).size;
      im.corral.push(await cliSeconds(d, ['import', archive, `bx-in-${i}`]));
      const back = join(work, `back-${i}.qcow2`);
      im.raw.push(seconds(() => execFileSync('qemu-img', ['convert', '-f', 'qcow2', raw, '-O', 'qcow2', '-B', image, '-F', 'qcow2', back])));
      await d.ok('DELETE', `/v1/instances/bx-in-${i}`);
      for (const f of [archive, raw, back]) rmSync(f, { force: true });
    }
    const row = (what: string, c: number[], r: number[]): void => {
      const tc = median(c);
      const tr = median(r);
      console.log(`${what.padEnd(7)} corral ${tc.toFixed(2)} s (${mb(used / tc)} MB/s)  qemu-img ${tr.toFixed(2)} s (${mb(used / tr)} MB/s)  corral/qemu-img time ${(tc / tr).toFixed(2)}x`);
    };
    const cli: number[] = [];
    for (let i = 0; i < 3; i++) cli.push(await cliSeconds(d, ['image', 'list']));
    console.log(`(a CLI round trip, \`corral image list\`, takes ${median(cli).toFixed(2)} s of each corral time here)`);
    row('export', ex.corral, ex.raw);
    row('import', im.corral, im.raw);
    console.log(`size    archive ${mb(archiveSize)} MB, qemu-img convert -c ${mb(rawSize)} MB, disk used ${mb(used)} MB: archive/used ${(archiveSize / used).toFixed(2)}, archive/convert -c ${(archiveSize / rawSize).toFixed(3)}`);
  } finally {
    await d.destroy();
    rmSync(work, { recursive: true, force: true });
  }
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
