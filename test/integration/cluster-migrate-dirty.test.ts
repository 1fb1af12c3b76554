/**
 * Live migration of a guest that dirties its memory continuously (a busybox loop rewriting 16 MiB of random bytes in
 * its /dev/shm over and over), between two agents in network namespaces (netns-cluster.ts), over a link capped at
 * 8 MiB/s: faster than the cap, so plain precopy can never send the last of it.
 * - With a 1 ms downtime limit, no auto-converge and a 15 s timeout it cannot converge whatever the machine's load
 *   (8 MiB/s for 1 ms is two pages, and the loop dirties thousands between two passes): MIGRATION_FAILED with outcome
 *   timeout, the guest running on a1 and nothing left on a2.
 * - With auto-converge (the default) QEMU slows the guest's vCPUs down pass after pass until what is left fits the
 *   300 ms default: it completes after several passes and the loop goes on running on a2.
 * First, what the hosts report of their CPUs: the agents' CPU models are their QEMU's (query-cpu-definitions), the
 * pool shows the cluster's baseline, and a guest with a named model the destination cannot run is refused before
 * anything moves.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { request } from 'node:https';
import { SKIP_NO_TINY, waitFor } from './harness.js';
import { runCli } from './cluster-harness.js';
import { NetnsCluster } from './netns-cluster.js';
import { bestModel } from '../../src/core/cpu-models.js';
import { queryCpuDefinitions, runnableModels } from '../../src/qemu/probe-cpu.js';

const skip = SKIP_NO_TINY;
const c = new NetnsCluster();
const ok = (args: string[]): Promise<any> => c.ok(args);

/** POST /v1/instances/NAME/migrate on the controller: the JSON lines it streams. */
function migrateLines(name: string, body: Record<string, unknown>): Promise<any[]> {
  const env = c.ctl.cliEnv();
  const data = Buffer.from(JSON.stringify(body));
  return new Promise((resolve, reject) => {
    const req = request(`${c.ctl.url}/v1/instances/${name}/migrate`, {
      method: 'POST', ca: readFileSync(env.CORRAL_TLS_CA!), headers: { authorization: `Bearer ${env.CORRAL_TOKEN}`, 'content-type': 'application/json', 'content-length': data.length },
    }, (res) => {
      let text = '';
      res.on('data', (d: Buffer) => { text += d.toString('utf8'); });
      res.on('end', () => resolve(text.split('\n').filter((l) => l.trim() !== '').map((l) => JSON.parse(l))));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(data);
  });
}

/** How many times the guest's loop has rewritten its 16 MiB. */
const rounds = async (host: string): Promise<number> => Number(/^(\d+)\s*$/m.exec(await c.host(host).guest('d1', 'cat /dev/shm/n', 90_000))?.[1] ?? NaN);

before(async () => {
  if (skip) return;
  await c.start(['a1', 'a2']);
  await ok(['create', 'd1', '--image', 'tiny', '--memory', '256M', '--pool', 'shared', '--host', 'a1', '--start']);
  await c.host('a1').waitConsole('d1', /corral-tiny ready/);
  // Auto-converge slows the vCPU down to 1% of its time for tens of seconds, so the guest's kernel sees its own CPU
  // stalled and, past 21 s, writes an RCU stall report with backtraces. In one CI run its console went silent for good
  // on a2 right after "Stack dump where RCU GP kthread last ran:" (that the report caused it is not proven: a loaded
  // machine here once gave the same silence with the report off). The stall is what throttling is; the report is
  // noise here, so the guest is told not to make it, and a silence after the move fails with what QEMU and the agent say.
  assert.match(await c.host('a1').guest('d1', 'echo 1 > /sys/module/rcupdate/parameters/rcu_cpu_stall_suppress && echo suppressed', 60_000), /suppressed/);
  // 16 MiB of random bytes (zero pages would cost QEMU nothing to send), copied over another 16 MiB without end
  const out = await c.host('a1').guest('d1', 'dd if=/dev/urandom of=/dev/shm/src bs=1M count=16 2>/dev/null; echo 0 > /dev/shm/n; ' +
    // (reniced: the console's shell, which the test reads the count through, stays quick on a loaded host; busybox
    // has renice, not nice)
    'sh -c \'i=0; while :; do cat /dev/shm/src > /dev/shm/dst; i=$((i+1)); echo $i > /dev/shm/n; done\' >/dev/null 2>&1 & renice -n 19 -p $! >/dev/null; echo dirtying', 60_000);
  assert.match(out, /dirtying/);
  await waitFor(async () => (await rounds('a1')) >= 2, 60_000, 'the loop to run');
});

after(async () => {
  await c.stop();
});

test('the agents report the CPU models their QEMU runs; the pool shows the baseline; a model the destination cannot run is refused', { skip, timeout: 180_000 }, async () => {
  const accel = (await c.host('a1').ok('GET', '/v1/host')).accelerator as 'kvm' | 'tcg';
  const mine = runnableModels(await queryCpuDefinitions(accel));
  for (const n of ['a1', 'a2']) {
    const h = await ok(['host', 'show', n]);
    assert.equal(h.cpuReport.accel, accel);
    assert.deepEqual(h.cpuReport.models, mine, `${n} reports what this machine's QEMU runs under ${accel}`);
    assert.ok(h.cpuReport.models.includes('qemu64-v1'));
    assert.ok(!h.cpuReport.models.includes('host') && !h.cpuReport.models.includes('max'));
    assert.equal(h.cpuReport.hostCpu.model, /^model name\s*:\s*(.*)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))![1]);
    assert.ok(h.memoryReport.available > 0);
  }
  const pool = await ok(['pool', 'show']);
  assert.deepEqual(pool.cpuBaselines, [{ accel, model: bestModel(mine), hosts: ['a1', 'a2'], unreported: [] }]);
  const text = await c.ctl.cli(['pool', 'show']);
  assert.match(text.stdout, new RegExp(`CPU baseline under ${accel.toUpperCase()}: ${bestModel(mine)}`));

  // a model QEMU knows but cannot give a guest under this accelerator (it starts, its missing features dropped)
  const missing = accel === 'tcg' ? 'Skylake-Server-v4' : 'EPYC-Genoa-v1';
  assert.ok(!mine.includes(missing));
  await ok(['create', 'cpu1', '--image', 'tiny', '--memory', '64M', '--pool', 'shared', '--host', 'a1', '--cpu-model', missing, '--start']);
  const r = await c.ctl.cli(['migrate', 'cpu1', '--to', 'a2']);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, new RegExp(`NOT_MIGRATABLE: instance "cpu1" cannot be live-migrated to host a2: host a2 cannot run the CPU model ${missing}`));
  const auto = await c.ctl.cli(['migrate', 'cpu1']);
  assert.match(auto.stderr, /NOT_MIGRATABLE: .*no other up host can run its CPU/);
  assert.deepEqual(c.copiesOf('cpu1').map((q) => q.host), ['a1'], 'nothing moved');
  assert.ok(!(await c.eventsOf('cpu1')).some((e) => e.type === 'instance.migrating'), 'nothing was reserved');
  await ok(['delete', 'cpu1', '--force']);
});

test('no auto-converge, a 1 ms downtime limit and a timeout: it times out cleanly and the guest runs on a1, nothing on a2', { skip, timeout: 240_000 }, async () => {
  const lines = await migrateLines('d1', { to: 'a2', bandwidth: 8 * 1024 * 1024, maxDowntimeMs: 1, autoConverge: false, timeoutS: 15 });
  const end = lines.at(-1);
  assert.equal(end?.type, 'error', JSON.stringify(end));
  assert.equal(end.error.code, 'MIGRATION_FAILED');
  assert.equal(end.error.outcome, 'timeout', end.error.message);
  assert.match(end.error.message, /ran past its timeout \(15 s\) and was cancelled: it runs on host a1/);
  const progress = lines.filter((l) => l.type === 'progress');
  assert.ok(progress.some((p) => p.status === 'active'), 'it was under way');
  assert.ok(progress.at(-1).status === 'cancelled', 'QEMU cancelled it');

  await waitFor(async () => c.copiesOf('d1').length === 1, 15_000, 'the incoming QEMU gone');
  assert.deepEqual(c.copiesOf('d1').map((q) => q.host), ['a1']);
  assert.equal(await c.hostOf('d1'), 'a1');
  assert.equal((await c.host('a2').api('GET', '/v1/instances/d1')).status, 404, 'nothing on a2');
  assert.equal((await c.host('a1').ok('GET', '/v1/instances/d1')).state, 'running');
  const before = await rounds('a1');
  await waitFor(async () => (await rounds('a1')) > before, 30_000, 'the loop to go on on a1');
  const failed = (await c.eventsOf('d1')).find((e) => e.type === 'instance.migration-failed');
  assert.equal(failed?.data.code, 'MIGRATION_FAILED');
  const pool = await ok(['pool', 'show']);
  assert.equal(pool.hosts.find((h: any) => h.name === 'a2').allocated.instances, 0, 'no reservation left on a2');
});

test('with auto-converge (the default) the same guest converges after several passes and goes on dirtying on a2', { skip, timeout: 660_000 }, async (t) => {
  const r0 = await rounds('a1');
  await new Promise((r) => setTimeout(r, 5000));
  t.diagnostic(`the loop rewrites its 16 MiB ${((await rounds('a1')) - r0) / 5} times a second here (the link: 8 MiB/s)`);
  const r = await runCli(['migrate', 'd1', '--to', 'a2', '--bandwidth', '8M/s', '--timeout', '600', '--json'], c.ctl.cliEnv(), 620_000);
  assert.equal(r.code, 0, r.stderr);
  const res = JSON.parse(r.stdout);
  t.diagnostic(`figures: ${r.stdout.trim().replace(/\s+/g, ' ')}`);
  assert.equal(res.to, 'a2');
  // the bulk pass, then passes over what the loop dirtied, the guest slowed down more at each until the rest fits
  assert.ok(res.passes >= 4, `several passes: ${JSON.stringify(res)}`);
  assert.ok(res.transferredBytes > 2 * 16 * 1024 * 1024, `the dirtied 16 MiB went more than twice: ${JSON.stringify(res)}`);
  assert.ok(res.downtimeMs <= res.totalMs);

  assert.equal(await c.hostOf('d1'), 'a2');
  const mine = (log: string): string => log.split('\n').filter((l) => /d1|migrat/.test(l)).slice(-15).join('\n');
  await waitFor(async () => c.copiesOf('d1').length === 1, 15_000, 'the source QEMU gone',
    () => `${JSON.stringify(c.copiesOf('d1'))}\ncontroller: ${mine(c.ctl.log)}\na1: ${mine(c.host('a1').log)}`);
  assert.deepEqual(c.copiesOf('d1').map((q) => q.host), ['a2']);
  const q = c.copiesOf('d1')[0]!;
  const ticks = (): string => readFileSync(`/proc/${q.pid}/stat`, 'utf8').split(') ')[1]!.split(' ').slice(11, 13).join('+');
  const t0 = ticks();
  let before: number;
  try {
    before = await rounds('a2');
  } catch (e) {
    const show = await c.host('a2').api('GET', '/v1/instances/d1');
    const log = await c.host('a2').consoleLog('d1');
    const ex = await c.ctl.cli(['exec', 'd1', '--', 'cat', '/dev/shm/n']);
    throw new Error(`${(e as Error).message}\nQEMU ${q.pid} user+system ticks ${t0} -> ${ticks()}; a2 says ${JSON.stringify(show.body?.state)}; exec through the agent: ${ex.code} ${ex.stdout.trim()} ${ex.stderr.trim()}\nconsole tail: ${log.slice(-1500)}`);
  }
  await waitFor(async () => (await rounds('a2')) > before!, 30_000, 'the loop to go on on a2');
  const migrated = (await c.eventsOf('d1')).find((e) => e.type === 'instance.migrated');
  assert.equal(migrated?.data.passes, res.passes);
});
