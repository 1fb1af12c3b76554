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
 *
 * The daemon runs in its own network namespace; the NICs are measured on user-mode NAT (to a namespace outside it) and
 * on a bridge network (a tap on the bridge, to a sink namespace plugged into the same bridge).
 */
import { execFileSync, spawn } from 'node:child_process';
import { median } from './stats.js';
import { ConsoleSession, createNetns, Daemon, deleteNetns, haveTinyBase, newDataDir } from '../test/integration/harness.js';
import { plugOutside } from '../test/integration/net-probes.js';

function arg(name: string, def: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1]! : def;
}
const DISK_MIB = Number(arg('disk-mib', '128'));
const NET_MIB = Number(arg('net-mib', '32'));
const ROUNDS = Number(arg('rounds', '2'));
const NS = `corral-bench-${process.pid}`;

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
  const vol = await d.ok('POST', '/v1/volumes', { name: 'bench', size: `${DISK_MIB + 16}M`, format: 'raw' }, 201);
  // Real data everywhere, so that reads do not just find holes (which QEMU answers without touching the disk).
  execFileSync('qemu-io', ['-f', 'raw', '-c', `write -P 0xa5 0 ${DISK_MIB + 16}M`, vol.path], { stdio: 'ignore' });
  await d.ok('POST', '/v1/instances', { name: 'bd', image: 'tiny', memory: '512M', cpus: 1 }, 201);
  for (const bus of ['ide', 'sata', 'virtio-blk', 'vhost-user-blk']) {
    const att = await d.api('POST', '/v1/instances/bd/disks', { volume: 'bench', bus });
    if (att.status !== 201) {
      console.log(`  ${bus}: not available (${att.body?.error?.message ?? att.status})`);
      continue;
    }
    const w: number[] = [];
    const r: number[] = [];
    for (let i = 0; i < ROUNDS; i++) {
      await d.ok('POST', '/v1/instances/bd/start', {});
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
      await d.ok('POST', '/v1/instances/bd/kill', {});
    }
    rows.push({ what: bus, write: median(w), read: median(r) });
    console.log(`  ${bus}: write ${median(w).toFixed(1)} MB/s, read ${median(r).toFixed(1)} MB/s`);
    await d.ok('DELETE', '/v1/instances/bd/disks/bench');
  }
  await d.ok('DELETE', '/v1/instances/bd');
  await d.ok('DELETE', '/v1/volumes/bench');
  return rows;
}

/** A TCP sink in a network namespace (busybox nc -l): resolves with the bytes one connection brought. */
function sink(ns: string, port: number): { done: Promise<number>; ready: Promise<void> } {
  // stdin stays an open pipe: nc would end the connection at EOF on it
  const p = spawn('ip', ['netns', 'exec', ns, 'busybox', 'nc', '-l', '-p', String(port)], { stdio: ['pipe', 'pipe', 'ignore'] });
  let n = 0;
  p.stdout.on('data', (b: Buffer) => { n += b.length; });
  const done = new Promise<number>((res) => p.on('close', () => res(n)));
  p.stdout.on('end', () => p.stdin.end());
  // give nc a moment to listen
  const ready = new Promise<void>((res) => setTimeout(res, 300));
  return { done, ready };
}

const SINK_NS = `corral-bsink-${process.pid}`;
const SINK_IP = '10.77.0.5';
/** an "outside" host for user-mode NAT: a namespace on a veth from the daemon's namespace */
const OUT_NS = `corral-bout-${process.pid}`;

/** A "host" endpoint on the bridge network: a namespace on a veth whose other end is a port of the bridge. */
function plugSink(bridge: string): void {
  createNetns(SINK_NS);
  execFileSync('ip', ['-n', NS, 'link', 'add', 'bsink0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', SINK_NS]);
  execFileSync('ip', ['-n', NS, 'link', 'set', 'bsink0', 'master', bridge, 'up']);
  execFileSync('ip', ['-n', SINK_NS, 'addr', 'add', `${SINK_IP}/24`, 'dev', 'eth0']);
  execFileSync('ip', ['-n', SINK_NS, 'link', 'set', 'eth0', 'up']);
}

async function nics(d: Daemon): Promise<Row[]> {
  const rows: Row[] = [];
  const net = await d.ok('POST', '/v1/networks', { name: 'benchnet', kind: 'bridge', cidr: '10.77.0.0/24', nat: false }, 201);
  plugSink(net.bridge);
  try {
    // user-mode NAT: slirp's outbound NAT to a host outside (the guest fence keeps 10.0.2.2, the host's own
    // loopback, out of reach); bridge: a tap on the bridge
    const outside = plugOutside(NS, OUT_NS, 'bout0');
    for (const [network, ns, host] of [['default', OUT_NS, outside], ['benchnet', SINK_NS, SINK_IP]] as const) {
      for (const model of ['e1000', 'virtio-net']) {
        const mbs: number[] = [];
        await d.ok('POST', '/v1/instances', { name: 'bn', image: 'tiny', memory: '512M', nicModel: model, network, start: true }, 201);
        await d.waitConsole('bn', /corral-tiny ready/, 120_000);
        const c = await ConsoleSession.open(d, 'bn');
        try {
          await c.run('i=0; while [ $i -lt 100 ] && [ ! -e /run/udhcpc.eth0.up ]; do sleep 0.2; i=$((i+1)); done; echo up', 30_000);
          for (let i = 0; i < ROUNDS; i++) {
            const s = sink(ns, 5001 + i);
            await s.ready;
            const secs = await timed(c, `dd if=/dev/zero bs=64k count=${NET_MIB * 16} | nc ${host} ${5001 + i}`, 20 * 60_000);
            const bytes = await s.done;
            if (bytes !== NET_MIB * 1024 * 1024) throw new Error(`${model} on ${network}: the sink got ${bytes} bytes, expected ${NET_MIB} MiB`);
            mbs.push(NET_MIB / secs);
          }
        } finally {
          await c.close();
        }
        await d.ok('DELETE', '/v1/instances/bn?force=true');
        const what = `${model} (${network === 'default' ? 'user NAT' : 'bridge/tap'})`;
        rows.push({ what, write: median(mbs), read: Number.NaN });
        console.log(`  ${what}: guest -> host ${median(mbs).toFixed(1)} MB/s`);
      }
    }
  } finally {
    deleteNetns(SINK_NS);
    deleteNetns(OUT_NS);
    await d.api('DELETE', '/v1/networks/benchnet');
  }
  return rows;
}

function ratios(title: string, rows: Row[], cols: Array<[string, keyof Row]>, baseOf: (r: Row) => Row | undefined = () => rows[0]): void {
  if (rows.length === 0) return;
  console.log(`\n${title} (ratio to the emulated baseline: ${rows[0]!.what.split(' ')[0]})`);
  for (const r of rows) {
    const base = baseOf(r);
    if (!base) continue;
    const parts = cols.map(([label, k]) => `${label} ${(r[k] as number).toFixed(1)} MB/s (${((r[k] as number) / (base[k] as number)).toFixed(2)}x)`);
    console.log(`  ${r.what.padEnd(15)} ${parts.join('   ')}`);
  }
}

async function main(): Promise<void> {
  if (!haveTinyBase()) throw new Error('the tiny image is not built (make test-base)');
  // The daemon (and so every QEMU, tap, bridge and dnsmasq) lives in its own network namespace.
  createNetns(NS);
  const d = new Daemon(newDataDir(), [], { CORRAL_PRESSURE_INTERVAL: '0' }, { netns: NS });
  try {
    await d.start();
    console.log(`bench/devices: disks ${DISK_MIB} MiB O_DIRECT dd, NICs ${NET_MIB} MiB guest -> host (user-mode NAT and a bridge), ${ROUNDS} rounds (median)`);
    const diskRows = await disks(d);
    const nicRows = await nics(d);
    ratios('Disks', diskRows, [['write', 'write'], ['read', 'read']]);
    // each NIC against e1000 on the same network
    ratios('NICs', nicRows, [['guest -> host', 'write']], (r) => nicRows.find((x) => x.what.startsWith('e1000') && x.what.slice(x.what.indexOf(' ')) === r.what.slice(r.what.indexOf(' '))));
  } finally {
    await d.destroy();
    deleteNetns(NS);
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
