/**
 * bench/devices: the same work through each device approach, in one run, on one machine.
 *
 * Disks: one raw volume, attached in turn as ide, sata, virtio-blk and vhost-user-blk to the tiny guest; inside
 * the guest, dd writes then reads SIZE MiB straight to/from the block device with O_DIRECT (no guest page cache),
 * timed by the guest's own clock (/proc/uptime). NICs: the guest streams SIZE MiB to a TCP sink on the host
 * with busybox nc, through an e1000 and a virtio-net NIC on the same network. Prints MB/s and the ratio of each
 * to the emulated baseline (ide for disks, e1000 for NICs).
 *
 *   CORRAL_TEST_BASE=.data/test-base node dist/bench/devices.js [--disk-mib 128] [--net-mib 32] [--rounds 2]
 *     [--network NAME --cidr 10.77.0.0/24]   (a bridge network for the NICs instead of user-mode NAT)
 */
import { execFileSync } from 'node:child_process';
import { createServer, type AddressInfo } from 'node:net';
import { ConsoleSession, Daemon, haveTinyBase, newDataDir } from '../test/integration/harness.js';

function arg(name: string, def: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1]! : def;
}
const DISK_MIB = Number(arg('disk-mib', '128'));
const NET_MIB = Number(arg('net-mib', '32'));
const ROUNDS = Number(arg('rounds', '2'));
const BRIDGE = arg('network', '');
const CIDR = arg('cidr', '10.77.0.0/24');

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

async function ok(d: Daemon, method: string, path: string, body?: unknown): Promise<any> {
  const r = await d.api(method, path, body);
  if (r.status >= 300) throw new Error(`${method} ${path}: ${JSON.stringify(r.body)}`);
  return r.body;
}

/** Seconds a guest command takes by the guest's clock. */
async function timed(c: ConsoleSession, cmd: string, timeoutMs: number): Promise<number> {
  const out = await c.run(`a=$(cut -d' ' -f1 /proc/uptime); ${cmd} >/dev/null 2>&1; b=$(cut -d' ' -f1 /proc/uptime); echo "T=$a $b"`, timeoutMs);
  const m = /T=([\d.]+) ([\d.]+)/.exec(out);
  if (!m) throw new Error(`no timing in: ${out}`);
  return Number(m[2]) - Number(m[1]);
}

/** The guest block device that appeared for the volume (anything but the root disk). */
async function findDisk(c: ConsoleSession, root: string): Promise<string> {
  const out = await c.run(`i=0; while [ $i -lt 100 ]; do f=$(ls /sys/block | grep -E '^(sd|vd)[a-z]$' | grep -v '^${root}$' | head -1); [ -n "$f" ] && break; sleep 0.2; i=$((i+1)); done; echo "DEV=$f"`, 40_000);
  const m = /DEV=([a-z]+)\r?\n/.exec(out);
  if (!m) throw new Error(`no data disk in the guest: ${out}`);
  return m[1]!;
}

interface Row { what: string; write: number; read: number }

async function disks(d: Daemon): Promise<Row[]> {
  const rows: Row[] = [];
  const vol = await ok(d, 'POST', '/v1/volumes', { name: 'bench', size: `${DISK_MIB + 16}M`, format: 'raw' });
  // Real data everywhere, so that reads do not just find holes (which QEMU answers without touching the disk).
  execFileSync('qemu-io', ['-f', 'raw', '-c', `write -P 0xa5 0 ${DISK_MIB + 16}M`, vol.path], { stdio: 'ignore' });
  await ok(d, 'POST', '/v1/instances', { name: 'bd', image: 'tiny', memory: '512M', cpus: 1 });
  for (const bus of ['ide', 'sata', 'virtio-blk', 'vhost-user-blk']) {
    const att = await d.api('POST', '/v1/instances/bd/disks', { volume: 'bench', bus });
    if (att.status !== 201) {
      console.log(`  ${bus}: not available (${att.body?.error?.message ?? att.status})`);
      continue;
    }
    const w: number[] = [];
    const r: number[] = [];
    for (let i = 0; i < ROUNDS; i++) {
      await ok(d, 'POST', '/v1/instances/bd/start', {});
      await d.waitConsole('bd', /corral-tiny ready/, 120_000);
      const c = await ConsoleSession.open(d, 'bd');
      try {
        const dev = await findDisk(c, 'vda');
        const t = 20 * 60_000;
        r.push(DISK_MIB / (await timed(c, `dd if=/dev/${dev} of=/dev/null bs=1M count=${DISK_MIB} iflag=direct`, t)));
        w.push(DISK_MIB / (await timed(c, `dd if=/dev/zero of=/dev/${dev} bs=1M count=${DISK_MIB} oflag=direct`, t)));
      } finally {
        await c.close();
      }
      await ok(d, 'POST', '/v1/instances/bd/kill', {});
    }
    rows.push({ what: bus, write: median(w), read: median(r) });
    console.log(`  ${bus}: write ${median(w).toFixed(1)} MB/s, read ${median(r).toFixed(1)} MB/s`);
    await ok(d, 'DELETE', '/v1/instances/bd/disks/bench');
  }
  await ok(d, 'DELETE', '/v1/instances/bd');
  await ok(d, 'DELETE', '/v1/volumes/bench');
  return rows;
}

/** A TCP sink on the host: counts bytes, resolves each connection's byte count when it closes. */
async function sink(): Promise<{ port: number; next: () => Promise<number>; close: () => void }> {
  const waiting: Array<(n: number) => void> = [];
  const server = createServer((s) => {
    let n = 0;
    s.on('data', (b: Buffer) => { n += b.length; });
    s.on('close', () => waiting.shift()?.(n));
  });
  await new Promise<void>((res) => server.listen(0, '0.0.0.0', res));
  return {
    port: (server.address() as AddressInfo).port,
    next: () => new Promise<number>((res) => waiting.push(res)),
    close: () => server.close(),
  };
}

async function nics(d: Daemon): Promise<Row[]> {
  const rows: Row[] = [];
  const s = await sink();
  let host = '10.0.2.2';
  let network: string | undefined;
  if (BRIDGE) {
    const net = await ok(d, 'POST', '/v1/networks', { name: BRIDGE, kind: 'bridge', cidr: CIDR, nat: false });
    host = net.gateway;
    network = BRIDGE;
  }
  try {
    for (const model of ['e1000', 'virtio-net']) {
      const mbs: number[] = [];
      await ok(d, 'POST', '/v1/instances', { name: 'bn', image: 'tiny', memory: '512M', nicModel: model, ...(network ? { network } : {}), start: true });
      await d.waitConsole('bn', /corral-tiny ready/, 120_000);
      const c = await ConsoleSession.open(d, 'bn');
      try {
        await c.run('i=0; while [ $i -lt 100 ] && [ ! -e /run/udhcpc.eth0.up ]; do sleep 0.2; i=$((i+1)); done; echo up', 30_000);
        for (let i = 0; i < ROUNDS; i++) {
          const got = s.next();
          const secs = await timed(c, `dd if=/dev/zero bs=64k count=${NET_MIB * 16} | nc ${host} ${s.port}`, 20 * 60_000);
          const bytes = await got;
          if (bytes !== NET_MIB * 1024 * 1024) throw new Error(`${model}: the host got ${bytes} bytes, expected ${NET_MIB} MiB`);
          mbs.push(NET_MIB / secs);
        }
      } finally {
        await c.close();
      }
      await ok(d, 'DELETE', '/v1/instances/bn?force=true');
      rows.push({ what: model, write: median(mbs), read: Number.NaN });
      console.log(`  ${model}: guest -> host ${median(mbs).toFixed(1)} MB/s`);
    }
  } finally {
    s.close();
    if (network) await d.api('DELETE', `/v1/networks/${network}`);
  }
  return rows;
}

function ratios(title: string, rows: Row[], cols: Array<[string, keyof Row]>): void {
  const base = rows[0];
  if (!base) return;
  console.log(`\n${title} (ratio to ${base.what}, the emulated baseline)`);
  for (const r of rows) {
    const parts = cols.map(([label, k]) => `${label} ${(r[k] as number).toFixed(1)} MB/s (${((r[k] as number) / (base[k] as number)).toFixed(2)}x)`);
    console.log(`  ${r.what.padEnd(15)} ${parts.join('   ')}`);
  }
}

async function main(): Promise<void> {
  if (!haveTinyBase()) throw new Error('the tiny image is not built (make test-base)');
  const d = new Daemon(newDataDir(), [], { CORRAL_PRESSURE_INTERVAL: '0' });
  try {
    await d.start();
    console.log(`bench/devices: disks ${DISK_MIB} MiB O_DIRECT dd, NICs ${NET_MIB} MiB guest -> host over ${BRIDGE ? `bridge network ${BRIDGE}` : 'user-mode NAT'}, ${ROUNDS} rounds (median)`);
    const diskRows = await disks(d);
    const nicRows = await nics(d);
    ratios('Disks', diskRows, [['write', 'write'], ['read', 'read']]);
    ratios('NICs', nicRows, [['guest -> host', 'write']]);
  } finally {
    await d.destroy();
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
