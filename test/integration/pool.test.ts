/**
 * Admission control: a start that would exceed the pool fails with INSUFFICIENT_RESOURCES saying what is short
 * by how much, and nothing is started; many starts at once cannot oversubscribe the pool.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { Daemon, SKIP_NO_TINY, useDaemon } from './harness.js';

const skip = SKIP_NO_TINY;
const MiB = 1024 * 1024;
let d: Daemon;
// Reserve all host memory but 512 MiB for the host, so the pool holds exactly four 128 MiB guests.
useDaemon((x) => { d = x; }, {
  env: () => {
    const total = Number(/^MemTotal:\s+(\d+) kB/m.exec(readFileSync('/proc/meminfo', 'utf8'))![1]) * 1024;
    return { CORRAL_RESERVED_MEMORY: `${(total - 512 * MiB) / 1024}K` };
  },
});

test('the pool shows capacity from the host, the ratios and the reserve', { skip }, async () => {
  const p = (await d.api('GET', '/v1/pool')).body;
  assert.equal(p.capacity.memory, 512 * MiB);
  assert.equal(p.ratios.cpu, 4);
  assert.equal(p.capacity.cpus, 4 * Number((await d.api('GET', '/v1/host')).body.cpus));
  assert.deepEqual(p.allocated, { cpus: 0, memory: 0, instances: 0 });
  const cli = await d.cli(['pool', 'show']);
  assert.equal(cli.code, 0, cli.stderr);
  assert.match(cli.stdout, /memory\s+512 MiB\s+0 B\s+512 MiB/);
});

test('six starts at once into room for four: four run, two are refused with what is short', { skip, timeout: 120_000 }, async () => {
  const names = ['q1', 'q2', 'q3', 'q4', 'q5', 'q6'];
  for (const name of names) assert.equal((await d.api('POST', '/v1/instances', { name, image: 'tiny', memory: '128M' })).status, 201);
  const rs = await Promise.all(names.map((n) => d.api('POST', `/v1/instances/${n}/start`, {})));
  const ok = rs.filter((r) => r.status === 200);
  const refused = rs.filter((r) => r.status === 409);
  assert.equal(ok.length, 4, JSON.stringify(rs.map((r) => r.body)));
  assert.equal(refused.length, 2);
  for (const r of refused) {
    assert.equal(r.body.error.code, 'INSUFFICIENT_RESOURCES');
    assert.match(r.body.error.message, /not enough memory in the pool: requested 128 MiB, free 0 B \(short by 128 MiB\)/);
    assert.deepEqual(r.body.error.short, [{ resource: 'memory', requested: 128 * MiB, free: 0, shortBy: 128 * MiB }]);
  }
  // Nothing was started for the refused ones.
  const list = (await d.api('GET', '/v1/instances')).body.instances as Array<{ name: string; state: string; pid: number | null }>;
  assert.equal(list.filter((i) => i.state === 'running').length, 4);
  for (const i of list.filter((x) => x.state !== 'running')) {
    assert.equal(i.state, 'stopped');
    assert.equal(i.pid, null);
  }
  const p = (await d.api('GET', '/v1/pool')).body;
  assert.deepEqual(p.allocated, { cpus: 4, memory: 512 * MiB, instances: 4 });
  assert.equal(p.free.memory, 0);

  // Once one stops, a refused one fits.
  const running = list.filter((i) => i.state === 'running').map((i) => i.name);
  const waiting = list.filter((i) => i.state === 'stopped').map((i) => i.name);
  await d.api('POST', `/v1/instances/${running[0]}/kill`, {});
  const again = await d.api('POST', `/v1/instances/${waiting[0]}/start`, {});
  assert.equal(again.status, 200, JSON.stringify(again.body));
  for (const n of names) await d.api('POST', `/v1/instances/${n}/kill`, {});
});
