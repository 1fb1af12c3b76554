/**
 * The history sampler with fake readings (as MetricsService.samples gives them): each pass adds a sample per running
 * or paused instance (vCPU threads, disks and NICs summed), a gap for a stopped one, and drops the ring of an
 * instance that is gone; a new instance of the same name starts afresh (rings are by uuid). The step comes from
 * CORRAL_HISTORY_STEP_MS, checked. The routes: GET /v1/instances/NAME/history and GET /v1/history.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildApi } from '../../../src/api/server.js';
import type { Services } from '../../../src/api/services.js';
import { CorralError } from '../../../src/core/errors.js';
import { HistoryService, historySample, historyStepFrom, reclaimed } from '../../../src/services/history.js';
import type { InstanceSample } from '../../../src/services/metrics.js';
import { recordingServices } from '../api/recording-services.js';

const MiB = 2 ** 20;
const U1 = '11111111-1111-4111-8111-111111111111';
const U2 = '22222222-2222-4222-8222-222222222222';

function reading(name: string, uuid: string, state: string, k: number): InstanceSample {
  const live = state === 'running' || state === 'paused';
  return {
    name, uuid, state, vcpus: 2, memoryConfigured: 256 * MiB,
    cpuSeconds: live ? 10 * k : null,
    vcpuSeconds: live ? [{ vcpu: 0, seconds: 2 * k }, { vcpu: 1, seconds: 3 * k }] : [],
    residentBytes: live ? 64 * MiB + k * MiB : null,
    guestResidentBytes: live ? 40 * MiB + k * MiB : null,
    balloonBytes: live ? 192 * MiB : null,
    blocks: live ? [{ device: 'disk0', readBytes: 1000 * k, writeBytes: 10 * k, readOps: k, writeOps: k }, { device: 'disk1', readBytes: 500 * k, writeBytes: 0, readOps: 0, writeOps: 0 }] : [],
    nics: live ? [{ nic: 'net0', source: 'guest-agent', rxBytes: 7 * k, txBytes: 3 * k, rxPackets: k, txPackets: k }] : [],
  };
}

/** A sampler over a script of readings, one list per pass, on a clock that moves 5 s a pass. */
function scripted(passes: InstanceSample[][]): { h: HistoryService; run: () => Promise<void> } {
  let clock = 1_000_000;
  let i = 0;
  const h = new HistoryService({ samples: async () => passes[i++] ?? [], now: () => clock, capacity: 4 });
  return { h, run: async () => { for (let n = 0; n < passes.length; n++) { await h.tick(); clock += 5000; } } };
}

test('a reading becomes one sample: vCPU threads, disks and NICs summed; nothing read is null', () => {
  const s = historySample(reading('a', U1, 'running', 2), 42);
  assert.deepEqual(s, {
    t: 42, vcpuSeconds: 10, vcpus: 2, residentBytes: 66 * MiB, guestResidentBytes: 42 * MiB, configuredBytes: 256 * MiB, balloonBytes: 192 * MiB,
    diskReadBytes: 3000, diskWriteBytes: 20, nicRxBytes: 14, nicTxBytes: 6, nics: 1,
  });
  const bare = historySample({ ...reading('a', U1, 'running', 1), vcpuSeconds: [], blocks: [], nics: [], balloonBytes: null }, 1);
  assert.equal(bare.vcpuSeconds, null);
  assert.equal(bare.vcpus, null);
  assert.equal(bare.diskReadBytes, null);
  assert.equal(bare.nicRxBytes, null);
  assert.equal(bare.nics, null);
});

test('each pass samples the running, leaves a gap for the stopped, and drops the ring of a deleted instance', async () => {
  const { h, run } = scripted([
    [reading('a', U1, 'running', 1), reading('b', U2, 'stopped', 0)],
    [reading('a', U1, 'running', 2), reading('b', U2, 'running', 1)],
    [reading('a', U1, 'paused', 3), reading('b', U2, 'running', 2)],
    [reading('a', U1, 'stopped', 0), reading('b', U2, 'running', 3)],
    [reading('b', U2, 'running', 4)],
  ]);
  await run();
  assert.equal(h.size, 1, 'a is gone: its ring is dropped');
  assert.deepEqual(h.series(U1).t, []);
  const b = h.series(U2);
  assert.deepEqual(b.t, [1_005_000, 1_010_000, 1_015_000, 1_020_000], 'b never had a gap: it was stopped before its first sample');
  // 5 s of vCPU time (2 + 3 per k) per 5 s over 2 vCPUs: 50 %; 1500 bytes per k read over 5 s: 300 B/s
  assert.deepEqual(b.cpuPercent, [null, 50, 50, 50]);
  assert.deepEqual(b.diskReadRate, [null, 300, 300, 300]);
  assert.deepEqual(b.nicRxRate, [null, 1.4, 1.4, 1.4]);
  assert.deepEqual(b.residentBytes, [65 * MiB, 66 * MiB, 67 * MiB, 68 * MiB]);
  assert.ok(h.lastPassMs !== null && h.lastPassMs >= 0);
});

test('a stopped instance keeps its history with one gap; a new instance of the same name starts afresh', async () => {
  const U3 = '33333333-3333-4333-8333-333333333333';
  const { h, run } = scripted([
    [reading('a', U1, 'running', 1)],
    [reading('a', U1, 'running', 2)],
    [reading('a', U1, 'stopped', 0)],
    [reading('a', U1, 'stopped', 0)],
    [reading('a', U3, 'running', 1)],
  ]);
  await run();
  assert.deepEqual(h.series(U3).t, [1_020_000]);
  assert.equal(h.series(U1).t.length, 0, 'the old uuid is gone with its instance');
  const { h: h2, run: run2 } = scripted([[reading('a', U1, 'running', 1)], [reading('a', U1, 'running', 2)], [reading('a', U1, 'stopped', 0)], [reading('a', U1, 'stopped', 0)]]);
  await run2();
  assert.deepEqual(h2.series(U1).t, [1_000_000, 1_005_000, 1_010_000]);
  assert.equal(h2.series(U1).residentBytes[2], null);
  assert.deepEqual(h2.latestMemory(), [], 'a stopped instance is not in the overview');
});

test('reclaimed memory: configured less guest RAM resident per running instance (QEMU\'s Rss is not it); the balloons\' share of it', () => {
  const r = reclaimed([
    // a balloon holds 64 MiB: they are not resident, so they are within the 156 MiB reclaimed, not added to them
    { name: 'a', t: 1, configuredBytes: 256 * MiB, residentBytes: 230 * MiB, guestResidentBytes: 100 * MiB, balloonBytes: 192 * MiB },
    // QEMU's Rss above the guest's size (TCG's translation cache): the guest's RAM still has 28 MiB not resident
    { name: 'b', t: 1, configuredBytes: 128 * MiB, residentBytes: 240 * MiB, guestResidentBytes: 100 * MiB, balloonBytes: null },
    // guest RAM fully resident (and a little more, after a resize down): nothing reclaimed, never below 0
    { name: 'c', t: 1, configuredBytes: 96 * MiB, residentBytes: 250 * MiB, guestResidentBytes: 128 * MiB, balloonBytes: 96 * MiB },
    // not measured (its QEMU just ended): configured only
    { name: 'd', t: 1, configuredBytes: 64 * MiB, residentBytes: null, guestResidentBytes: null, balloonBytes: 64 * MiB },
  ]);
  assert.deepEqual(r, { configured: 544 * MiB, guestResident: 328 * MiB, notResident: 184 * MiB, balloon: 64 * MiB });
});

test('the step: 5 s by default, CORRAL_HISTORY_STEP_MS in ms from 100 to an hour, anything else refused', () => {
  assert.equal(historyStepFrom({}), 5000);
  assert.equal(historyStepFrom({ CORRAL_HISTORY_STEP_MS: '1000' }), 1000);
  for (const bad of ['50', '1.5', 'x', '3600001']) {
    assert.throws(() => historyStepFrom({ CORRAL_HISTORY_STEP_MS: bad }), (e: unknown) => e instanceof CorralError && e.code === 'INVALID_SPEC' && /CORRAL_HISTORY_STEP_MS/.test(e.message));
  }
});

test('start() samples at once and then each step; stop() ends it', async () => {
  let n = 0;
  const h = new HistoryService({ samples: async () => { n++; return [reading('a', U1, 'running', n)]; }, stepMs: 100 });
  h.start();
  await new Promise((r) => setTimeout(r, 350));
  h.stop();
  const seen = n;
  assert.ok(seen >= 2, `${seen} passes`);
  await new Promise((r) => setTimeout(r, 250));
  assert.equal(n, seen, 'no pass after stop()');
});

test('the routes: an instance\'s history (since a time), 404 for no such instance; the summary of the running', async () => {
  const { h, run } = scripted([[reading('a', U1, 'running', 1)], [reading('a', U1, 'running', 2)], [reading('a', U1, 'running', 3)]]);
  await run();
  const rows: Record<string, { name: string; uuid: string }> = { a: { name: 'a', uuid: U1 } };
  const instances = {
    rowOf: (name: string) => {
      const r = rows[name];
      if (!r) throw new CorralError('INSTANCE_NOT_FOUND', `instance "${name}" not found`, { name });
      return r;
    },
  } as unknown as Services['instances'];
  const app = await buildApi(recordingServices([], { history: h, instances }), {});
  try {
    const all = await app.inject({ method: 'GET', url: '/v1/instances/a/history' });
    assert.equal(all.statusCode, 200);
    const body = all.json();
    assert.equal(body.name, 'a');
    assert.equal(body.stepMs, 5000);
    assert.equal(body.capacity, 4);
    assert.deepEqual(body.series.t, [1_000_000, 1_005_000, 1_010_000]);
    assert.deepEqual(body.series.cpuPercent, [null, 50, 50]);
    assert.deepEqual(body.series.balloonBytes, [192 * MiB, 192 * MiB, 192 * MiB]);
    assert.deepEqual(body.series.nicRxRate, [null, 1.4, 1.4]);
    assert.deepEqual(body.nicSources, ['guest-agent'], 'where the NIC figures came from');
    const since = (await app.inject({ method: 'GET', url: '/v1/instances/a/history?since=1005000' })).json();
    assert.deepEqual(since.series.t, [1_010_000]);
    assert.deepEqual(since.series.diskReadRate, [300]);
    const none = await app.inject({ method: 'GET', url: '/v1/instances/nosuch/history' });
    assert.equal(none.statusCode, 404);
    assert.equal(none.json().error.code, 'INSTANCE_NOT_FOUND');
    assert.equal((await app.inject({ method: 'GET', url: '/v1/instances/a/history?since=-1' })).statusCode, 400);
    const sum = (await app.inject({ method: 'GET', url: '/v1/history' })).json();
    assert.deepEqual(sum.instances, [{ name: 'a', t: 1_010_000, configuredBytes: 256 * MiB, residentBytes: 67 * MiB, guestResidentBytes: 43 * MiB, balloonBytes: 192 * MiB }]);
    assert.deepEqual(sum.reclaimed, { configured: 256 * MiB, guestResident: 43 * MiB, notResident: 213 * MiB, balloon: 64 * MiB });
    assert.equal(typeof sum.passMs, 'number');
  } finally {
    await app.close();
  }
});
