/**
 * Cluster events and the fence command, with real guests: three agents share a directory as their shared pool;
 * the controller's watchdog timeout is 10 minutes, so within this test only a fence command's success can let
 * an HA guest start on another host. The fence command is a script written here that, like a power-off, SIGKILLs
 * the host's agent, its watchdog and its QEMUs, and notes the host in a file; told to fail, it exits 1.
 *
 * `corral events` follows the controller from before the first host joins: it sees the hosts join, the guest
 * placed, the fence command fail (and the guest left where it is, its host not fenced: the fence deadline is far),
 * the host back, then the fence command succeed, the host fenced and the guest restarted elsewhere.
 * `corral events --since 0` replays the same; `corral host show` lists the host's events.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CLI, Daemon, SKIP_NO_TINY, newDataDir, waitFor } from './harness.js';
import { Controller, freePort, initCluster } from './cluster-harness.js';
import type { TestPostgres } from '../unit/postgres.js';

const skip = SKIP_NO_TINY;
const LEASE_MS = 4000;
let pg: TestPostgres;
let ctl: Controller;
let shared: string;
let fenceDir: string;
const hosts = new Map<string, Daemon>();
const ports = new Map<string, number>();
let poller: NodeJS.Timeout | undefined;
let worstCopies = 0;

interface Ev { id: number; time: string; type: string; instance: string | null; data: Record<string, any> }

/** `corral events --json` (or with more arguments) running against the controller, its events as they come. */
class Follower {
  readonly events: Ev[] = [];
  readonly proc: ChildProcess;
  stderr = '';
  constructor(args: string[] = []) {
    this.proc = spawn(process.execPath, [CLI, 'events', '--json', ...args], { env: { ...process.env, ...ctl.cliEnv() }, stdio: ['ignore', 'pipe', 'pipe'] });
    let buf = '';
    this.proc.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        this.events.push(JSON.parse(buf.slice(0, i)) as Ev);
        buf = buf.slice(i + 1);
      }
    });
    this.proc.stderr!.on('data', (d: Buffer) => { this.stderr += d.toString(); });
  }

  find(type: string, pred: (e: Ev) => boolean = () => true): Ev | undefined {
    return this.events.find((e) => e.type === type && pred(e));
  }

  async wait(type: string, pred: (e: Ev) => boolean = () => true, timeoutMs = 60_000): Promise<Ev> {
    await waitFor(() => this.find(type, pred) !== undefined, timeoutMs, `corral events to show ${type}`, () => `${this.stderr}\n${this.events.map((e) => `${e.type} ${JSON.stringify(e.data)}`).join('\n')}`);
    return this.find(type, pred)!;
  }

  stop(): void {
    this.proc.kill('SIGKILL');
  }
}
let follower: Follower;

/** The pids of the QEMUs on this machine that have the HA guest's shared root disk open (from their argv). */
function copiesOf(name: string): number[] {
  const out: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const argv = readFileSync(`/proc/${d}/cmdline`, 'utf8');
      if ((argv.startsWith('qemu-system') || argv.includes('/qemu-system')) && argv.includes(join(shared, 'instances', name, 'root.qcow2'))) out.push(Number(d));
    } catch {
      /* gone */
    }
  }
  return out;
}

/** The fence script: a power-off of one of this test's hosts (see the file's comment). */
function writeFenceScript(): string {
  const path = join(fenceDir, 'power-off');
  writeFileSync(path, `#!/bin/sh
echo "$CORRAL_FENCE_HOST $CORRAL_FENCE_ADDRESS" >> ${fenceDir}/asked
if [ -e ${fenceDir}/fail ]; then echo "BMC of $CORRAL_FENCE_HOST: no answer" >&2; exit 1; fi
data=$(cat ${fenceDir}/$CORRAL_FENCE_HOST.data)
kill -9 $(cat ${fenceDir}/$CORRAL_FENCE_HOST.pid) $(cat $data/cluster/watchdog.pid) 2>/dev/null
for f in $data/run/*/qemu.pid; do kill -9 $(cat $f) 2>/dev/null; done
echo "$CORRAL_FENCE_HOST" >> ${fenceDir}/off
echo "$CORRAL_FENCE_HOST is off"
`);
  chmodSync(path, 0o755);
  return path;
}

async function startAgent(name: string, token?: string): Promise<Daemon> {
  if (!ports.has(name)) ports.set(name, await freePort());
  const d = hosts.get(name) ?? new Daemon(newDataDir(), [], { CORRAL_HEARTBEAT_MS: '500', CORRAL_LOG_LEVEL: 'info' }, { command: 'agent' });
  d.extraArgs = [...(token ? ['--join', ctl.url, '--token', token] : []), '--name', name, '--listen', `127.0.0.1:${ports.get(name)}`, '--shared-pool', shared];
  hosts.set(name, d);
  await d.start();
  // what the fence script needs to power this host off
  writeFileSync(join(fenceDir, `${name}.pid`), String(d.proc!.pid));
  writeFileSync(join(fenceDir, `${name}.data`), d.dataDir);
  return d;
}

const ok = (args: string[]): Promise<any> => ctl.json(args);

const hostState = async (name: string): Promise<any> => (await ok(['host', 'list'])).find((h: any) => h.name === name);
const lines = (file: string): string[] => (existsSync(file) ? readFileSync(file, 'utf8').trim().split('\n') : []);

before(async () => {
  if (skip) return;
  ({ pg, shared } = await initCluster());
  fenceDir = mkdtempSync('/tmp/corral-fence-');
  ctl = new Controller(pg.url, await freePort(), {
    CORRAL_UNREACHABLE_AFTER_MS: String(LEASE_MS), CORRAL_WATCHDOG_MS: '600000', CORRAL_FENCE_COMMAND: writeFenceScript(), CORRAL_FENCE_TIMEOUT_MS: '20000',
  });
  await ctl.start();
  follower = new Follower();
  for (const n of ['a1', 'a2', 'a3']) await startAgent(n, JSON.parse((await ctl.cli(['cluster', 'join-token', '--json'])).stdout).token);
  await waitFor(async () => (await ok(['host', 'list'])).filter((h: any) => h.state === 'up' && h.sharedPool === shared).length === 3, 30_000, 'three hosts up with the shared pool');
  poller = setInterval(() => { worstCopies = Math.max(worstCopies, copiesOf('ha1').length); }, 100);
});

after(async () => {
  clearInterval(poller);
  follower?.stop();
  for (const d of hosts.values()) {
    try { d.proc?.kill('SIGCONT'); } catch { /* gone */ }
    await d.destroy();
  }
  if (shared) for (const pid of copiesOf('ha1')) process.kill(pid, 'SIGKILL');
  await ctl?.destroy();
  await pg?.stop();
  if (shared) rmSync(shared, { recursive: true, force: true });
  if (fenceDir) rmSync(fenceDir, { recursive: true, force: true });
});

test('corral events follows the controller: the hosts joined, the HA guest placed, then made and run on its host (the host\'s own events)', { skip, timeout: 120_000 }, async () => {
  for (const n of ['a1', 'a2', 'a3']) {
    const e = await follower.wait('host.joined', (x) => x.data.host === n);
    assert.equal(e.data.address, `https://127.0.0.1:${ports.get(n)}`);
  }
  const made = await ok(['create', 'ha1', '--image', 'tiny', '--memory', '128M', '--pool', 'shared', '--ha', '--host', 'a1', '--start']);
  assert.equal(made.host, 'a1');
  const placed = await follower.wait('instance.placed', (e) => e.instance === 'ha1');
  assert.deepEqual([placed.data.host, placed.data.ha, placed.data.reason], ['a1', true, 'pinned to host a1']);
  await hosts.get('a1')!.waitConsole('ha1', /corral-tiny ready/);
  assert.equal(copiesOf('ha1').length, 1);
  // what happened on the host itself comes with its heartbeats: the guest made there, then running
  const made1 = await follower.wait('instance.created', (e) => e.instance === 'ha1');
  const running = await follower.wait('instance.state', (e) => e.instance === 'ha1' && e.data.to === 'running');
  assert.equal(made1.data.host, 'a1');
  assert.equal(running.data.host, 'a1');
  assert.ok(made1.id < running.id, 'in the order they happened there');
});

test('a fence command that fails: recorded, and the guest is not started elsewhere (the fence deadline is far); the host back is recorded', { skip, timeout: 180_000 }, async () => {
  writeFileSync(join(fenceDir, 'fail'), '');
  const a1 = hosts.get('a1')!;
  a1.proc!.kill('SIGSTOP'); // the host hangs: no heartbeat, its guest runs on
  try {
    const failed = await follower.wait('host.fence-command', (e) => e.data.host === 'a1');
    assert.equal(failed.data.ok, false);
    assert.equal(failed.data.reason, 'exited with status 1');
    assert.equal(failed.data.output, 'BMC of a1: no answer');
    assert.match(failed.data.then, /wait for the fence deadline .*604000 ms/);
    assert.match(ctl.log, /the fence command failed for host a1/);
    // meanwhile: not fenced, the guest still on a1 and nowhere else
    const h = await hostState('a1');
    assert.equal(h.state, 'unreachable');
    assert.equal((await ok(['list'])).instances.find((i: any) => i.name === 'ha1').host, 'a1');
    assert.equal(follower.find('host.fenced'), undefined);
    assert.equal(follower.find('instance.ha-restarting'), undefined);
    assert.equal(copiesOf('ha1').length, 1);
  } finally {
    a1.proc!.kill('SIGCONT');
  }
  const back = await follower.wait('host.recovered', (e) => e.data.host === 'a1');
  assert.equal(back.data.from, 'unreachable');
  assert.ok(back.data.silentMs > LEASE_MS, JSON.stringify(back.data));
  await waitFor(async () => (await hostState('a1'))?.state === 'up', 30_000, 'a1 up again');
  await waitFor(async () => (await a1.ok('GET', '/v1/instances/ha1')).state === 'running', 60_000, 'ha1 running on a1 again');
  assert.deepEqual(lines(join(fenceDir, 'asked')), [`a1 https://127.0.0.1:${ports.get('a1')}`], 'run once for that loss');
  assert.equal(follower.find('instance.ha-restarting'), undefined, 'nothing was restarted');
  assert.equal(worstCopies, 1, 'never two copies');
});

test('a fence command that powers the host off: the host is fenced and the guest restarts elsewhere long before the watchdog\'s timeout', { skip, timeout: 180_000 }, async () => {
  rmSync(join(fenceDir, 'fail'));
  const a1 = hosts.get('a1')!;
  await a1.waitConsole('ha1', /corral-tiny ready/);
  a1.proc!.kill('SIGSTOP');
  let moved: any;
  await waitFor(async () => {
    moved = (await ok(['list'])).instances.find((i: any) => i.name === 'ha1');
    return moved?.host !== 'a1' && moved?.state === 'running';
  }, 90_000, 'ha1 to run on another host', () => `${JSON.stringify(moved)}\n${ctl.log.slice(-3000)}`);
  assert.deepEqual(lines(join(fenceDir, 'off')), ['a1'], 'the fence command powered a1 off');
  const h = await hostState('a1');
  assert.equal(h.state, 'fenced');
  assert.match(h.fenceReason, /the fence command .*power-off confirmed it off \(exit 0\) after its lease expired/);

  const done = await follower.wait('host.fence-command', (e) => e.data.host === 'a1' && e.data.ok === true);
  assert.deepEqual([done.data.reason, done.data.output], ['exited 0', 'a1 is off']);
  const fenced = await follower.wait('host.fenced', (e) => e.data.host === 'a1');
  assert.equal(fenced.data.by, 'fence command');
  const restarting = await follower.wait('instance.ha-restarting', (e) => e.instance === 'ha1');
  const restarted = await follower.wait('instance.ha-restarted', (e) => e.instance === 'ha1');
  for (const e of [restarting, restarted]) {
    assert.deepEqual([e.data.from, e.data.to], ['a1', moved.host]);
    assert.match(e.data.reason, /^host a1 is fenced: the fence command/);
  }
  assert.ok(done.id < fenced.id && fenced.id < restarting.id && restarting.id < restarted.id, 'in that order');
  await hosts.get(moved.host)!.waitConsole('ha1', /corral-tiny ready/);
  assert.equal(worstCopies, 1, 'never two copies');
});

test('corral events --since 0 replays the same events; corral host show lists the host\'s; the host back is recorded', { skip, timeout: 120_000 }, async () => {
  const replay = new Follower(['--since', '0']);
  try {
    await replay.wait('instance.ha-restarted');
    const upTo = replay.find('instance.ha-restarted')!.id;
    const seen = (list: Ev[]): string[] => list.filter((e) => e.id <= upTo).map((e) => `${e.id} ${e.type} ${e.instance ?? '-'} ${JSON.stringify(e.data)}`);
    assert.deepEqual(seen(replay.events), seen(follower.events));
  } finally {
    replay.stop();
  }

  const text = await ctl.cli(['host', 'show', 'a1']);
  assert.equal(text.code, 0, text.stderr);
  assert.match(text.stdout, /^state:\s+fenced$/m);
  assert.match(text.stdout, /^events \(the last \d+\):\nTIME\s+TYPE\s+INSTANCE\s+WHAT$/m);
  // each line: time, type, instance, then its fields (in the database's order), why, what follows, the output
  assert.match(text.stdout, /host\.joined\s+-\s+.*address=https:\/\/127\.0\.0\.1:\d+/);
  assert.match(text.stdout, /host\.fence-command\s+-\s+.*ok=false.*: exited with status 1; its HA instances wait for the fence deadline .* \(output: BMC of a1: no answer\)$/m);
  assert.match(text.stdout, /host\.fenced\s+-\s+by=fence command: the fence command \S+power-off confirmed it off/);
  assert.match(text.stdout, /instance\.ha-restarted\s+ha1\s+.*from=a1.*: host a1 is fenced: the fence command/);
  const json = await ok(['host', 'show', 'a1']);
  assert.equal(json.name, 'a1');
  // the cluster's own, in order, and between them what the host said happened there (its agent started, the guest made and run)
  const types = json.events.map((e: Ev) => e.type) as string[];
  const own = new Set(['daemon.started', 'instance.created', 'instance.state']);
  assert.deepEqual(types.filter((t) => /^host\./.test(t) || /^instance\.(placed|ha-)/.test(t)), [
    'host.joined', 'instance.placed', 'host.fence-command', 'host.recovered', 'host.fence-command', 'host.fenced', 'instance.ha-restarting', 'instance.ha-restarted',
  ], types.join(', '));
  for (const t of own) assert.ok(types.includes(t), `${t} from the host: ${types.join(', ')}`);

  // powered on again: its agent forgets the guest the cluster moved, and the fence is lifted
  await startAgent('a1');
  await waitFor(async () => (await hostState('a1'))?.state === 'up', 30_000, 'a1 up again');
  const lifted = await follower.wait('host.recovered', (e) => e.data.host === 'a1' && e.data.from === 'fenced');
  assert.match(lifted.data.reason, /its HA instances run elsewhere: the fence is lifted/);
  assert.equal(worstCopies, 1, 'never two copies');
});
