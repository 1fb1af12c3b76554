/**
 * Live migration through a controller, shared pool only: two agents, each in a network namespace of its own (a test
 * host, as in scripts/cluster-demo.sh: a veth on a bridge whose address the controller listens on), share one
 * directory as their shared pool. Hosts must be apart: the guest fence (src/network/guest-fence.ts) refuses QEMU's
 * connections to its own host's addresses, so a migration between two agents on one loopback is refused. A guest counting on its console moves from a1 to a2 and goes on: the same boot id, its counter continues,
 * what it wrote before (in RAM and on its disk) reads back, its QEMU is on a2 and none on a1, with QEMU's figures.
 * A cancel leaves it running on a1; a local-disk instance and a destination without room are refused, nothing moved.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { Daemon, SKIP_NO_TINY, createNetns, deleteNetns, newDataDir, waitFor } from './harness.js';
import { Controller, freePort, initCluster } from './cluster-harness.js';
import pgLib from 'pg';
import type { TestPostgres } from '../unit/postgres.js';

const skip = SKIP_NO_TINY;
let pg: TestPostgres;
let ctl: Controller;
let shared: string;
const hosts = new Map<string, Daemon>();

// The test hosts' network, with names and a subnet of its own (a user's cluster demo is not touched): the bridge
// is NET.1 (the controller's address), a1 and a2 are NET.11 and NET.12 on the eth0 of namespaces NETNS-a1, -a2.
const tag = randomBytes(3).toString('hex');
const BRIDGE = `crlmig${tag}`;
const NETNS = `corral-mig-${tag}`;
let NET = '';
const ip = (...args: string[]): void => { execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] }); };
const hostIp = (n: string): string => `${NET}.1${n.slice(1)}`;

/** A /24 of 10.81.x.0 that no local address is in. */
function freeSubnet(): string {
  for (let tries = 0; tries < 50; tries++) {
    const net = `10.81.${randomBytes(1)[0]!}`;
    if (!execFileSync('ip', ['-4', '-o', 'addr', 'show', 'to', `${net}.0/24`], { encoding: 'utf8' }).trim()) return net;
  }
  throw new Error('no free 10.81.x.0/24');
}

function makeNetwork(names: string[]): void {
  NET = freeSubnet();
  ip('link', 'add', 'name', BRIDGE, 'type', 'bridge');
  ip('addr', 'add', `${NET}.1/24`, 'dev', BRIDGE);
  ip('link', 'set', 'dev', BRIDGE, 'up');
  for (const n of names) {
    const ns = `${NETNS}-${n}`;
    createNetns(ns);
    ip('link', 'add', 'name', `${BRIDGE}${n}`, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns);
    ip('link', 'set', 'dev', `${BRIDGE}${n}`, 'master', BRIDGE, 'up');
    ip('-n', ns, 'addr', 'add', `${hostIp(n)}/24`, 'dev', 'eth0');
    ip('-n', ns, 'link', 'set', 'eth0', 'up');
  }
}

/** Delete the namespaces (their eth0 takes its veth peer along) and the bridge; what is missing is fine. */
function removeNetwork(names: string[]): void {
  for (const n of names) deleteNetns(`${NETNS}-${n}`);
  for (const dev of [...names.map((n) => `${BRIDGE}${n}`), BRIDGE]) {
    try {
      ip('link', 'del', 'dev', dev);
    } catch {
      /* not there */
    }
  }
}

/** The pids of the QEMUs on this machine that have the guest's shared root disk open, with their data dir. */
function copiesOf(name: string): Array<{ pid: number; host: string }> {
  const out: Array<{ pid: number; host: string }> = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const argv = readFileSync(`/proc/${d}/cmdline`, 'utf8');
      if ((argv.startsWith('qemu-system') || argv.includes('/qemu-system')) && argv.includes(join(shared, 'instances', name, 'root.qcow2'))) {
        const host = [...hosts].find(([, h]) => argv.includes(h.dataDir))?.[0] ?? '?';
        out.push({ pid: Number(d), host });
      }
    } catch {
      /* gone */
    }
  }
  return out;
}

const ok = (args: string[]): Promise<any> => ctl.json(args);

async function hostOf(name: string): Promise<string> {
  const l = await ok(['list']);
  return (Array.isArray(l) ? l : l.instances).find((i: any) => i.name === name)?.host;
}

/** The cluster's events of an instance, as the controllers recorded them. */
async function eventsOf(name: string): Promise<Array<{ type: string; data: any }>> {
  const c = new pgLib.Client({ connectionString: pg.url });
  await c.connect();
  try {
    return (await c.query('SELECT type, data FROM events WHERE instance = $1 ORDER BY id', [name])).rows;
  } finally {
    await c.end();
  }
}

const bootId = async (d: Daemon): Promise<string> => /([0-9a-f-]{36})/.exec(await d.guest('m1', 'cat /proc/sys/kernel/random/boot_id'))![1]!;
const lastTick = (log: string): number => Math.max(-1, ...[...log.matchAll(/tick (\d+)/g)].map((m) => Number(m[1])));

before(async () => {
  if (skip) return;
  ({ pg, shared } = await initCluster());
  makeNetwork(['a1', 'a2']);
  ctl = new Controller(pg.url, await freePort(), {}, `${NET}.1`);
  await ctl.start();
  for (const n of ['a1', 'a2']) {
    const token = JSON.parse((await ctl.cli(['cluster', 'join-token', '--json'])).stdout).token;
    const d = new Daemon(newDataDir(), [], { CORRAL_HEARTBEAT_MS: '500' }, { command: 'agent', netns: `${NETNS}-${n}` });
    d.extraArgs = ['--join', ctl.url, '--token', token, '--name', n, '--listen', `${hostIp(n)}:8444`, '--shared-pool', shared];
    hosts.set(n, d);
    await d.start();
  }
  await waitFor(async () => (await ok(['host', 'list'])).filter((h: any) => h.state === 'up' && h.sharedPool === shared).length === 2, 30_000, 'two hosts up with the shared pool');
  await ok(['create', 'm1', '--image', 'tiny', '--memory', '128M', '--pool', 'shared', '--host', 'a1', '--start']);
  const a1 = hosts.get('a1')!;
  await a1.waitConsole('m1', /corral-tiny ready/);
});

after(async () => {
  for (const d of hosts.values()) await d.destroy();
  if (shared) for (const c of copiesOf('m1')) process.kill(c.pid, 'SIGKILL');
  await ctl?.destroy();
  if (NET) removeNetwork(['a1', 'a2']);
  await pg?.stop();
  if (shared) rmSync(shared, { recursive: true, force: true });
});

test('a single daemon refuses migrate; a local-disk instance and a destination without room are refused, nothing moved', { skip, timeout: 120_000 }, async () => {
  const daemon = await hosts.get('a1')!.api('POST', '/v1/instances/m1/migrate', {});
  assert.equal(daemon.body.error.code, 'NOT_A_CLUSTER');

  await ok(['create', 'loc1', '--image', 'tiny', '--memory', '64M', '--host', 'a1']);
  const local = await ctl.cli(['migrate', 'loc1', '--to', 'a2']);
  assert.notEqual(local.code, 0);
  assert.match(local.stderr, /NOT_MIGRATABLE: .*root disk: on the host's local pool/);

  // a2 is filled by a placed (stopped) instance: what placement reserved counts, running or not
  const a2 = (await ok(['pool', 'show'])).hosts.find((h: any) => h.name === 'a2');
  const fill = Math.floor((a2.free.memory - 64 * 1024 * 1024) / (1024 * 1024));
  await ok(['create', 'fill', '--image', 'tiny', '--memory', `${fill}M`, '--host', 'a2']);
  const full = await ctl.cli(['migrate', 'm1', '--to', 'a2']);
  assert.match(full.stderr, /NO_HOST_FITS: .*a2 lacks memory/);
  const auto = await ctl.cli(['migrate', 'm1']);
  assert.match(auto.stderr, /NO_HOST_FITS/, 'the placer finds no other host either');
  assert.equal(await hostOf('m1'), 'a1');
  assert.deepEqual(copiesOf('m1').map((c) => c.host), ['a1']);
  const after = (await ok(['pool', 'show'])).hosts.find((h: any) => h.name === 'a2');
  assert.equal(after.allocated.memory, a2.allocated.memory + fill * 1024 * 1024, 'no reservation is left on a2');
  await ok(['delete', 'fill']);
  await ok(['delete', 'loc1']);
});

test('a cancelled migration leaves the guest running on a1, with nothing left on a2', { skip, timeout: 120_000 }, async () => {
  // 1 MiB/s: 128 MiB would take minutes, time enough to cancel
  const running = ctl.cli(['migrate', 'm1', '--to', 'a2', '--bandwidth', '1M/s']);
  let done: string | null = null;
  void running.then((r) => { done = r.stderr; });
  await waitFor(async () => copiesOf('m1').some((c) => c.host === 'a2'), 30_000, 'the incoming QEMU on a2', () => `${done ?? 'still running'}; ${ctl.log.slice(-3000)}`);
  await waitFor(async () => (await ctl.cli(['migrate', 'm1', '--cancel'])).code === 0, 30_000, 'the cancel to be taken');
  const r = await running;
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /MIGRATION_FAILED: .*was cancelled: it runs on host a1/);
  await waitFor(async () => copiesOf('m1').length === 1, 15_000, 'the incoming QEMU gone');
  assert.deepEqual(copiesOf('m1').map((c) => c.host), ['a1']);
  assert.equal(await hostOf('m1'), 'a1');
  assert.equal((await hosts.get('a1')!.ok('GET', '/v1/instances/m1')).state, 'running');
  assert.equal((await hosts.get('a2')!.api('GET', '/v1/instances/m1')).status, 404);
  assert.match(await hosts.get('a1')!.guest('m1', 'echo alive'), /alive/);
  const failed = (await eventsOf('m1')).find((e) => e.type === 'instance.migration-failed');
  assert.ok(failed, 'the failure is one of the cluster\'s events');
  assert.equal(failed.data.to, 'a2');
});

test('migrated from a1 to a2: the same boot, the counter goes on, data reads back, one QEMU on a2, QEMU\'s figures', { skip, timeout: 180_000 }, async () => {
  const a1 = hosts.get('a1')!;
  const a2 = hosts.get('a2')!;
  const boot = await bootId(a1);
  assert.match(await a1.guest('m1', 'echo corral-migrate-marker > /tmp/m && dd if=/tmp/m of=/dev/vda bs=512 seek=100 conv=fsync 2>/dev/null; sync; echo written'), /written/);
  await a1.guest('m1', 'sh -c \'i=0; while :; do echo tick $i; i=$((i+1)); sleep 1; done\' & true');
  await waitFor(async () => lastTick(await a1.consoleLog('m1')) >= 2, 20_000, 'the counter to run');

  const res = await ok(['migrate', 'm1', '--to', 'a2']);
  assert.equal(res.from, 'a1');
  assert.equal(res.to, 'a2');
  for (const k of ['totalMs', 'downtimeMs', 'setupMs', 'transferredBytes', 'passes']) assert.equal(typeof res[k], 'number', `${k} in ${JSON.stringify(res)}`);
  assert.ok(res.downtimeMs <= res.totalMs);
  const before = lastTick(await a1.consoleLog('m1').catch(() => ''));

  assert.equal(await hostOf('m1'), 'a2');
  await waitFor(async () => copiesOf('m1').length === 1, 15_000, 'the source QEMU gone');
  assert.deepEqual(copiesOf('m1').map((c) => c.host), ['a2']);
  assert.equal((await a1.api('GET', '/v1/instances/m1')).status, 404, 'a1 forgot it');
  assert.equal((await a2.ok('GET', '/v1/instances/m1')).state, 'running');
  assert.ok(readdirSync(join(shared, 'instances')).includes('m1'), 'its disk stays on the shared pool');

  assert.equal(await bootId(a2), boot, 'the same boot: it was never restarted');
  await waitFor(async () => lastTick(await a2.consoleLog('m1')) > Math.max(before, 0) + 1, 20_000, 'the counter to go on on a2');
  assert.match(await a2.guest('m1', 'cat /tmp/m; dd if=/dev/vda bs=512 skip=100 count=1 2>/dev/null | head -c 22; echo'), /corral-migrate-marker[\s\S]*corral-migrate-marker/);
  const migrated = (await eventsOf('m1')).find((e) => e.type === 'instance.migrated');
  assert.ok(migrated, 'the migration is one of the cluster\'s events');
  assert.equal(migrated.data.downtimeMs, res.downtimeMs);
});
