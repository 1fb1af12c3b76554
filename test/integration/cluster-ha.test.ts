/**
 * HA on shared storage: three agents share one directory as their shared pool. An HA guest writes to its root disk;
 * its host's agent is killed (SIGKILL), later another one is frozen (SIGSTOP): each time the host watchdog kills the
 * guest's QEMU, the controller fences the host once its lease and the watchdog's timeout have run out, and starts
 * the guest on another host from the same disk (the data is there). A non-HA guest on a lost host keeps running and
 * is not moved. A poller looking at every QEMU on the machine never sees two copies of the HA guest. A host that
 * comes back forgets the guest the cluster moved away and takes work again.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { isAlive } from '../../src/qemu/proc.js';
import { Daemon, SKIP_NO_TINY, newDataDir, waitFor } from './harness.js';
import { Controller, freePort, initCluster } from './cluster-harness.js';
import type { TestPostgres } from '../unit/postgres.js';

const skip = SKIP_NO_TINY;
const LEASE_MS = 4000;
const WATCHDOG_MS = 3000;
let pg: TestPostgres;
let ctl: Controller;
let shared: string;
const hosts = new Map<string, Daemon>();
const ports = new Map<string, number>();
let poller: NodeJS.Timeout | undefined;
let worstCopies = 0;

/** The pids of the QEMUs on this machine that have the HA guest's shared root disk open (from their argv). */
function copiesOf(name: string): number[] {
  const out: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const argv = readFileSync(`/proc/${d}/cmdline`, 'utf8');
      if (argv.startsWith('qemu-system') || argv.includes('/qemu-system')) {
        if (argv.includes(join(shared, 'instances', name, 'root.qcow2'))) out.push(Number(d));
      }
    } catch {
      /* gone */
    }
  }
  return out;
}

/** What a host's watchdog files say (for a failure's message). */
function watchdogState(d: Daemon): string {
  const dir = join(d.dataDir, 'cluster');
  const read = (f: string): string => { try { return readFileSync(join(dir, f), 'utf8').trim(); } catch (e) { return String((e as Error).message); } };
  const pid = read('watchdog.pid');
  let alive = 'no';
  try { alive = readFileSync(`/proc/${pid}/cmdline`, 'utf8'); } catch { /* gone */ }
  return `ha-pids: ${read('ha-pids')}; pet: ${read('watchdog.pet')}; fired: ${read('watchdog.fired')}; watchdog ${pid}: ${alive}`;
}

async function startAgent(name: string, token?: string): Promise<Daemon> {
  if (!ports.has(name)) ports.set(name, await freePort());
  const prev = hosts.get(name);
  const d = prev ?? new Daemon(newDataDir(), [], { CORRAL_HEARTBEAT_MS: '500', CORRAL_LOG_LEVEL: 'info' }, { command: 'agent' });
  d.extraArgs = [...(token ? ['--join', ctl.url, '--token', token] : []), '--name', name, '--listen', `127.0.0.1:${ports.get(name)}`, '--shared-pool', shared];
  hosts.set(name, d);
  await d.start();
  return d;
}

const ok = (args: string[]): Promise<any> => ctl.json(args);

async function hostState(name: string): Promise<any> {
  return (await ok(['host', 'list'])).find((h: any) => h.name === name);
}

before(async () => {
  if (skip) return;
  ({ pg, shared } = await initCluster());
  ctl = new Controller(pg.url, await freePort(), { CORRAL_UNREACHABLE_AFTER_MS: String(LEASE_MS), CORRAL_WATCHDOG_MS: String(WATCHDOG_MS) });
  await ctl.start();
  for (const n of ['a1', 'a2', 'a3']) await startAgent(n, JSON.parse((await ctl.cli(['cluster', 'join-token', '--json'])).stdout).token);
  await waitFor(async () => (await ok(['host', 'list'])).filter((h: any) => h.state === 'up' && h.sharedPool === shared).length === 3, 30_000, 'three hosts up with the shared pool');
  poller = setInterval(() => { worstCopies = Math.max(worstCopies, copiesOf('ha1').length); }, 100);
});

after(async () => {
  clearInterval(poller);
  for (const d of hosts.values()) {
    try { d.proc?.kill('SIGCONT'); } catch { /* gone */ }
    await d.destroy();
  }
  for (const pid of copiesOf('ha1')) process.kill(pid, 'SIGKILL');
  await ctl?.destroy();
  await pg?.stop();
  if (shared) rmSync(shared, { recursive: true, force: true });
});

test('HA needs the shared pool; an HA guest is made on it and writes to its disk', { skip, timeout: 120_000 }, async () => {
  const local = await ctl.cli(['create', 'bad', '--image', 'tiny', '--ha']);
  assert.match(local.stderr, /INVALID_SPEC: ha: a highly available instance needs its root disk on the shared pool/);
  const made = await ok(['create', 'ha1', '--image', 'tiny', '--memory', '128M', '--pool', 'shared', '--ha', '--host', 'a1', '--start']);
  assert.equal(made.host, 'a1');
  assert.ok(existsSync(join(shared, 'instances', 'ha1', 'root.qcow2')), 'its root disk is on the shared pool');
  assert.ok(existsSync(join(shared, 'images', 'tiny')), 'with its image\'s base copied there');
  await ok(['create', 'nh1', '--image', 'tiny', '--memory', '128M', '--host', 'a1', '--start']);
  const a1 = hosts.get('a1')!;
  await a1.waitConsole('ha1', /corral-tiny ready/);
  await a1.waitConsole('nh1', /corral-tiny ready/);
  const out = await a1.guest('ha1', 'echo corral-ha-marker-1 > /tmp/m && dd if=/tmp/m of=/dev/vda bs=512 seek=100 conv=fsync 2>/dev/null; sync; echo written');
  assert.match(out, /written/);
  assert.deepEqual(copiesOf('ha1').length, 1);
});

test('its host\'s agent killed: the watchdog kills the guest, the host is fenced, the guest boots on another host with its data; the non-HA guest runs on', { skip, timeout: 180_000 }, async () => {
  const a1 = hosts.get('a1')!;
  const oldPid = (await a1.ok('GET', '/v1/instances/ha1')).pid;
  const nhPid = (await a1.ok('GET', '/v1/instances/nh1')).pid;
  await a1.kill9();
  await waitFor(() => !isAlive(oldPid), 20_000, 'the watchdog to kill the old QEMU');
  let moved: any;
  await waitFor(async () => {
    moved = (await ok(['list'])).instances.find((i: any) => i.name === 'ha1');
    return moved?.host !== 'a1' && moved?.state === 'running';
  }, 60_000, 'ha1 to run on another host', () => JSON.stringify(moved));
  const h1 = await hostState('a1');
  assert.equal(h1.state, 'fenced');
  assert.match(h1.fenceReason, /no heartbeat since/);
  // the host's events say what happened and why (no fence command here: the deadline fenced it)
  const events = (await ok(['host', 'show', 'a1'])).events.map((e: any) => [e.type, e.instance, e.data.by ?? e.data.to ?? null]);
  assert.deepEqual(events.filter((e: any[]) => /^host\.fenced|^instance\.ha-restart/.test(e[0])), [
    ['host.fenced', null, 'deadline'], ['instance.ha-restarting', 'ha1', moved.host], ['instance.ha-restarted', 'ha1', moved.host],
  ]);
  const to = hosts.get(moved.host)!;
  await to.waitConsole('ha1', /corral-tiny ready/);
  assert.match(await to.guest('ha1', 'dd if=/dev/vda bs=512 skip=100 count=1 2>/dev/null | head -c 19; echo'), /corral-ha-marker-1/);
  assert.ok(isAlive(nhPid), 'the non-HA guest on the lost host keeps running');
  assert.equal((await ok(['list'])).instances.find((i: any) => i.name === 'nh1').host, 'a1', 'and is not moved');
  assert.equal(worstCopies, 1, 'never two copies');

  // the agent comes back: it forgets the guest the cluster moved, keeps its own, and takes work again
  await startAgent('a1');
  await waitFor(async () => (await hostState('a1'))?.state === 'up', 30_000, 'a1 up again');
  await waitFor(async () => (await a1.api('GET', '/v1/instances/ha1')).status === 404, 20_000, 'a1 to forget ha1');
  assert.ok(existsSync(join(shared, 'instances', 'ha1', 'root.qcow2')), 'the shared disk stays');
  assert.equal((await a1.ok('GET', '/v1/instances/nh1')).pid, nhPid);
  assert.equal((await ok(['show', 'ha1'])).host, moved.host);
  assert.deepEqual(copiesOf('ha1').length, 1);
});

test('its host\'s agent frozen (SIGSTOP, host still up): the watchdog fences the guest before it starts elsewhere', { skip, timeout: 180_000 }, async () => {
  const from = (await ok(['show', 'ha1'])).host as string;
  const d = hosts.get(from)!;
  const oldPid = (await d.ok('GET', '/v1/instances/ha1')).pid;
  d.proc!.kill('SIGSTOP');
  try {
    await waitFor(() => !isAlive(oldPid), 20_000, 'the watchdog to kill the frozen host\'s QEMU', () => watchdogState(d));
    let moved: any;
    await waitFor(async () => {
      moved = (await ok(['list'])).instances.find((i: any) => i.name === 'ha1');
      return moved?.host !== from && moved?.state === 'running';
    }, 60_000, 'ha1 to run on another host', () => JSON.stringify(moved));
    await hosts.get(moved.host)!.waitConsole('ha1', /corral-tiny ready/);
  } finally {
    d.proc!.kill('SIGCONT');
  }
  await waitFor(async () => (await hostState(from))?.state === 'up', 30_000, `${from} up again`);
  await waitFor(async () => (await d.api('GET', '/v1/instances/ha1')).status === 404, 20_000, `${from} to forget ha1`);
  assert.equal(worstCopies, 1, 'never two copies');
  assert.deepEqual(copiesOf('ha1').length, 1);
});

test('every controller down for longer than the lease: the HA guest is stopped by its host, then started again there once the lease is back (not moved); never two copies', { skip, timeout: 180_000 }, async () => {
  const at = (await ok(['show', 'ha1'])).host as string;
  const d = hosts.get(at)!;
  const before = (await d.ok('GET', '/v1/instances/ha1')).pid;
  await ctl.stop();
  await waitFor(async () => !isAlive(before), 20_000, 'the host to fence its HA guest when its lease runs out');
  await d.waitState('ha1', 'stopped', 10_000);
  await ctl.start();
  let now: any;
  await waitFor(async () => {
    now = await d.ok('GET', '/v1/instances/ha1');
    return now.state === 'running';
  }, 60_000, 'its host to start it again', () => JSON.stringify(now));
  assert.notEqual(now.pid, before);
  assert.equal((await ok(['show', 'ha1'])).host, at, 'the same host: nothing was moved');
  for (const h of await ok(['host', 'list'])) assert.equal(h.state, 'up', JSON.stringify(h));
  assert.equal(worstCopies, 1, 'never two copies');
});
