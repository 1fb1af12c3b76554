/**
 * Changing an instance's configuration: `corral set` on a stopped instance (checked as create checks, used
 * at the next start as the guest shows), refused while it runs; `corral resize` answers the same way for CPUs
 * and memory, stopped (stored) or running (live), with an event for each; list and the pool show what is
 * plugged now.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Daemon, SKIP_NO_TINY, useDaemon } from './harness.js';

const skip = SKIP_NO_TINY;
let d: Daemon;
useDaemon((x) => { d = x; });
const MiB = 1024 * 1024;

const guest = (name: string, cmd: string): Promise<string> => d.guest(name, cmd);

test('set changes a stopped instance (the guest sees it at the next start); bad values and a running instance are refused, nothing changed', { skip, timeout: 240_000 }, async () => {
  assert.equal((await d.cli(['create', 'cf1', '--image', 'tiny', '--accel', 'tcg'])).code, 0);
  const set = await d.cli(['set', 'cf1', 'cpus=2', 'memory=384M', 'cpu-weight=300']);
  assert.equal(set.code, 0, set.stderr);
  assert.equal(set.stdout, 'cf1: changed cpus, memory, topology, maxCpus, cpuWeight (applies at the next start)\n');
  const shown = (await d.api('GET', '/v1/instances/cf1')).body;
  assert.deepEqual([shown.cpus, shown.memory, shown.spec.cpuWeight], [2, 384 * MiB, 300]);
  const ev = (await d.events()).filter((e) => e.type === 'instance.updated' && e.instance === 'cf1');
  assert.deepEqual(ev.map((e) => e.data.changed), [['cpus', 'memory', 'topology', 'maxCpus', 'cpuWeight']]);

  // none (null in the API) clears an optional field; a number is not coerced to null nor null to 0
  const clear = await d.cli(['set', 'cf1', 'cpu-weight=none', 'cpu-limit=1.5']);
  assert.equal(clear.code, 0, clear.stderr);
  const cleared = (await d.api('GET', '/v1/instances/cf1')).body.spec;
  assert.deepEqual([cleared.cpuWeight, cleared.cpuLimit], [null, 1.5]);
  assert.equal((await d.api('PATCH', '/v1/instances/cf1', { cpuLimit: null, memoryLimit: null, pin: null, hugepages: null })).status, 200);
  assert.equal((await d.api('GET', '/v1/instances/cf1')).body.spec.cpuLimit, null);

  const before = JSON.stringify((await d.api('GET', '/v1/instances/cf1')).body.spec);
  const low = await d.cli(['set', 'cf1', 'memory-limit=400M']);
  assert.equal(low.code, 1);
  assert.match(low.stderr, /^error: INVALID_SPEC: memoryLimit: 400 MiB is too small/);
  const model = await d.cli(['set', 'cf1', 'cpu-model=NoSuchCpu']);
  assert.match(model.stderr, /^error: INVALID_SPEC: cpuModel: QEMU does not know the CPU model "NoSuchCpu"/);
  const api = await d.api('PATCH', '/v1/instances/cf1', { image: 'other' });
  assert.equal(api.status, 400);
  assert.equal(JSON.stringify((await d.api('GET', '/v1/instances/cf1')).body.spec), before, 'refusals change nothing');

  assert.equal((await d.cli(['start', 'cf1'])).code, 0);
  await d.waitConsole('cf1', /corral-tiny ready/, 90_000);
  const out = await guest('cf1', "echo n=$(grep -c ^processor /proc/cpuinfo) kb=$(sed -n 's/^MemTotal: *\\([0-9]*\\) kB/\\1/p' /proc/meminfo)");
  assert.match(out, /n=2 /);
  const kb = Number(/kb=(\d+)/.exec(out)?.[1]);
  assert.ok(kb > 300 * 1024 && kb <= 384 * 1024, `MemTotal ${kb} kB for 384 MiB`);
  const running = await d.cli(['set', 'cf1', 'cpus=1']);
  assert.equal(running.code, 1);
  assert.match(running.stderr, /^error: INVALID_STATE: instance "cf1" is running: stop it to change its configuration/);
  assert.equal((await d.api('POST', '/v1/instances/cf1/kill', {})).status, 200);
});

test('resize answers alike for CPUs and memory: stored when stopped, live when running, an event each; list and the pool show the memory plugged now', { skip, timeout: 240_000 }, async () => {
  assert.equal((await d.cli(['create', 'cf2', '--image', 'tiny', '--accel', 'tcg', '--cpus', '1', '--max-cpus', '2', '--memory', '256M', '--max-memory', '512M'])).code, 0);
  const cold = await d.cli(['resize', 'cf2', '--cpus', '2', '--memory', '320M']);
  assert.equal(cold.code, 0, cold.stderr);
  assert.equal(cold.stdout, 'cf2: 2 vCPUs (stopped: applies at the next start)\ncf2: memory 320 MiB (stopped: applies at the next start)\n');
  const cold2 = await d.cli(['resize', 'cf2', '--cpus', '1', '--memory', '256M']);
  assert.equal(cold2.code, 0, cold2.stderr);

  assert.equal((await d.cli(['start', 'cf2'])).code, 0);
  await d.waitConsole('cf2', /corral-tiny ready/, 90_000);
  const poolBefore = (await d.api('GET', '/v1/pool')).body.allocated.memory as number;
  const live = await d.cli(['resize', 'cf2', '--cpus', '2', '--memory', '512M']);
  assert.equal(live.code, 0, live.stderr);
  assert.match(live.stdout, /^cf2: 2 vCPUs \(live\)\ncf2: memory 512 MiB \(live; the guest sees \d+/);
  const types = (await d.events()).filter((e) => e.instance === 'cf2').map((e) => e.type);
  assert.ok(types.includes('cpus.resized') && types.includes('memory.resized'), types.join(' '));
  const list = await d.cli(['list']);
  assert.match(list.stdout, /^cf2\s+running\s+2\s+512 MiB\s/m);
  const poolAfter = (await d.api('GET', '/v1/pool')).body.allocated.memory as number;
  assert.equal(poolAfter - poolBefore, 256 * MiB, 'the pool counts the plugged memory');

  // kept, as the vCPUs are: the next start boots with 2 vCPUs and 512 MiB (all of maxMemory: no virtio-mem room)
  assert.equal((await d.api('POST', '/v1/instances/cf2/kill', {})).status, 200);
  assert.equal((await d.cli(['start', 'cf2'])).code, 0);
  await d.waitConsole('cf2', /corral-tiny ready[\s\S]*corral-tiny ready/, 90_000);
  const out = await guest('cf2', "echo n=$(grep -c ^processor /proc/cpuinfo) kb=$(sed -n 's/^MemTotal: *\\([0-9]*\\) kB/\\1/p' /proc/meminfo)");
  assert.match(out, /n=2 /);
  const kb = Number(/kb=(\d+)/.exec(out)?.[1]);
  assert.ok(kb > 400 * 1024 && kb <= 512 * 1024, `MemTotal ${kb} kB for 512 MiB`);
  const down = await d.cli(['resize', 'cf2', '--memory', '384M']);
  assert.equal(down.code, 0, down.stderr);
  assert.equal((await d.api('GET', '/v1/instances/cf2/memory')).body.guest.plugged, null, 'no virtio-mem device at the maximum');
  assert.equal((await d.api('POST', '/v1/instances/cf2/kill', {})).status, 200);
});
