/**
 * Memory backing: on demand by default, --prealloc touches it all at start, --hugepages is refused with a
 * clear error when the host's pool is short and backed by hugetlb when it is not.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { Daemon, SKIP_NO_TINY, useDaemon } from './harness.js';

const skip = SKIP_NO_TINY;
const NR = '/proc/sys/vm/nr_hugepages';
let d: Daemon;
useDaemon((x) => { d = x; });

const free2M = (): number => Number(readFileSync('/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages', 'utf8'));

test('a hugepage guest is refused when the pool is short, and nothing starts', { skip }, async () => {
  const before = Number(readFileSync(NR, 'utf8'));
  try {
    writeFileSync(NR, '0');
    assert.equal((await d.api('POST', '/v1/instances', { name: 'hp1', image: 'tiny', memory: '128M', hugepages: '2M' })).status, 201);
    const r = await d.api('POST', '/v1/instances/hp1/start', {});
    assert.equal(r.status, 409, JSON.stringify(r.body));
    assert.equal(r.body.error.code, 'INSUFFICIENT_RESOURCES');
    assert.match(r.body.error.message, /not enough 2M hugepages: the guest needs 64, the host has 0 free/);
    const s = (await d.api('GET', '/v1/instances/hp1')).body;
    assert.equal(s.state, 'stopped');
    assert.equal(s.pid, null);
    assert.deepEqual(readdirSync(`${d.dataDir}/run`), []);
  } finally {
    writeFileSync(NR, String(before));
  }
});

test('with the pool filled, the guest runs on hugepages taken from it', { skip, timeout: 90_000 }, async (t) => {
  const before = Number(readFileSync(NR, 'utf8'));
  try {
    writeFileSync(NR, String(before + 64));
    if (free2M() < 64) {
      t.skip('the kernel could not reserve 64 free 2 MiB hugepages on this host');
      return;
    }
    const freeBefore = free2M();
    const r = await d.api('POST', '/v1/instances/hp1/start', {});
    assert.equal(r.status, 200, JSON.stringify(r.body));
    await d.waitConsole('hp1', /corral-tiny ready/);
    // QEMU's guest RAM is a hugetlb memfd: the pool has lent it its pages.
    const maps = readFileSync(`/proc/${r.body.pid}/maps`, 'utf8').split('\n');
    const ram = maps.find((l) => l.includes('/memfd:memory-backend-memfd'));
    assert.ok(ram, 'guest RAM is a memfd');
    const [lo, hi] = ram.split(' ')[0]!.split('-').map((x) => BigInt(`0x${x}`));
    assert.equal(hi! - lo!, 128n * 1024n * 1024n, 'of exactly the guest memory size');
    assert.ok(free2M() <= freeBefore - 8, `free 2M pages ${freeBefore} -> ${free2M()}`);
    await d.api('POST', '/v1/instances/hp1/kill', {});
    assert.equal(free2M(), freeBefore, 'the pages go back to the pool at stop');
  } finally {
    writeFileSync(NR, String(before));
  }
});

test('on demand by default, all of it resident at once with --prealloc', { skip, timeout: 90_000 }, async () => {
  const MiB = 1024 * 1024;
  const rss = (pid: number): number => Number(/^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) * 1024;
  const lazy = await d.api('POST', '/v1/instances', { name: 'lazy', image: 'tiny', memory: '768M', start: true });
  const eager = await d.api('POST', '/v1/instances', { name: 'eager', image: 'tiny', memory: '768M', prealloc: true, start: true });
  assert.equal(lazy.status, 201, JSON.stringify(lazy.body));
  assert.equal(eager.status, 201, JSON.stringify(eager.body));
  // Right after start (the guest has barely run): the preallocated guest holds all 768 MiB, the other far less.
  assert.ok(rss(eager.body.pid) >= 768 * MiB, `prealloc rss ${rss(eager.body.pid) / MiB} MiB`);
  assert.ok(rss(lazy.body.pid) < 512 * MiB, `on-demand rss ${rss(lazy.body.pid) / MiB} MiB`);
  for (const n of ['lazy', 'eager']) await d.api('POST', `/v1/instances/${n}/kill`, {});
});
