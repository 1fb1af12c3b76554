/**
 * Memory virtualization with real tiny guests (TCG): on-demand residency, free page reporting, the balloon,
 * virtio-mem hotplug, the pressure controller, and release at stop. Checked from the guest's /proc/meminfo,
 * from /proc of the QEMU process, and through the API.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { ConsoleSession, Daemon, SKIP_NO_TINY, newDataDir, useDaemon, waitFor } from './harness.js';

const skip = SKIP_NO_TINY;
const MiB = 1024 * 1024;
let d: Daemon;
useDaemon((x) => { d = x; }, { env: () => ({ CORRAL_PRESSURE_INTERVAL: '0' }) });

const hostAvailable = (): number => Number(/^MemAvailable:\s+(\d+)/m.exec(readFileSync('/proc/meminfo', 'utf8'))![1]) * 1024;
const mem = async (name: string): Promise<any> => {
  const r = await d.api('GET', `/v1/instances/${name}/memory`);
  assert.equal(r.status, 200, JSON.stringify(r.body));
  return r.body;
};
async function meminfo(c: ConsoleSession): Promise<{ total: number; available: number }> {
  const out = await c.run('grep -E "^(MemTotal|MemAvailable):" /proc/meminfo');
  const get = (k: string): number => Number(new RegExp(`${k}:\\s+(\\d+) kB`).exec(out)![1]) * 1024;
  return { total: get('MemTotal'), available: get('MemAvailable') };
}
async function boot(daemon: Daemon, body: Record<string, unknown>): Promise<any> {
  const r = await daemon.api('POST', '/v1/instances', { image: 'tiny', start: true, ...body });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  await daemon.waitConsole(body.name as string, /corral-tiny ready/);
  return r.body;
}

let pid = 0;
let console1: ConsoleSession;

test('an idle 1 GiB guest is resident on the host well under 1 GiB; the map covers its RAM', { skip }, async () => {
  pid = (await boot(d, { name: 'm1', memory: '1G' })).pid;
  await waitFor(async () => (await mem('m1')).guest.total !== null, 30_000, 'the first balloon statistics');
  const s = await mem('m1');
  assert.ok(s.host.rss < 512 * MiB, `rss ${s.host.rss / MiB} MiB`);
  assert.equal(s.configured.memory, 1024 * MiB);
  assert.equal(s.guest.visible, 1024 * MiB);
  const ram = s.map.filter((r: any) => r.region === 'mem0');
  assert.equal(ram.reduce((a: number, r: any) => a + r.size, 0), 1024 * MiB);
  for (const r of ram) {
    assert.ok(r.hvaStart > 0 && r.hvaEnd - r.hvaStart === r.size);
    assert.ok(r.resident > 0 && r.resident <= s.host.rss, `resident ${r.resident} rss ${s.host.rss}`);
  }
  const cli = await d.cli(['memory', 'm1']);
  assert.equal(cli.code, 0, cli.stderr);
  assert.match(cli.stdout, /GPA-RANGE\s+HVA-RANGE\s+SIZE\s+RESIDENT/);
  assert.match(cli.stdout, /0x000000000000-0x000040000000/);
  console1 = await ConsoleSession.open(d, 'm1');
});

test('memory the guest fills and frees goes back to the host (free page reporting); a resize below its use is refused', { skip }, async () => {
  const rss = (): number => Number(/^VmRSS:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) * 1024;
  const idle = rss();
  await console1.run('mount -o remount,size=700M /dev/shm');
  await console1.run('dd if=/dev/zero of=/dev/shm/fill bs=1M count=400 2>/dev/null', 120_000);
  assert.ok(rss() > idle + 300 * MiB, `rss ${rss() / MiB} MiB after the fill, ${idle / MiB} MiB before`);

  // While 400 MiB are in use, shrinking the guest to 256 MiB is refused and changes nothing.
  await waitFor(async () => (await mem('m1')).guest.used > 400 * MiB, 20_000, 'the guest to report its use');
  const r = await d.api('POST', '/v1/instances/m1/memory', { size: '256M' });
  assert.equal(r.status, 400, JSON.stringify(r.body));
  assert.equal(r.body.error.code, 'INVALID_SPEC');
  assert.equal(r.body.error.field, 'memory');
  assert.match(r.body.error.message, /256 MiB is below what the guest uses now \(\d+(\.\d)? MiB\)/);
  assert.equal((await mem('m1')).guest.balloon, 1024 * MiB);

  await console1.run('rm /dev/shm/fill');
  await waitFor(() => rss() <= idle + 64 * MiB, 15_000, 'host RSS back within 64 MiB', () => `rss ${rss() / MiB} MiB, idle ${idle / MiB} MiB`);
});

test('the balloon: 1G -> 512M takes about 512 MiB from the guest, and back', { skip }, async () => {
  const g0 = await meminfo(console1);
  const r = await d.api('POST', '/v1/instances/m1/memory', { size: '512M' });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.equal(r.body.requested, 512 * MiB);
  assert.equal((await d.api('GET', '/v1/instances/m1')).body.memory, 512 * MiB, 'the resize is kept, as a vCPU hotplug is');
  await waitFor(async () => (await mem('m1')).guest.balloon === 512 * MiB, 30_000, 'the balloon to inflate');
  const g1 = await meminfo(console1);
  // With deflate-on-oom the guest keeps ballooned pages in MemTotal; either way they are no longer usable.
  const shrunk = Math.max(g0.total - g1.total, g0.available - g1.available);
  assert.ok(shrunk > 448 * MiB && shrunk < 576 * MiB, `guest lost ${shrunk / MiB} MiB (MemTotal ${g0.total / MiB} -> ${g1.total / MiB}, MemAvailable ${g0.available / MiB} -> ${g1.available / MiB})`);
  assert.equal((await mem('m1')).guest.visible, 512 * MiB);

  assert.equal((await d.api('POST', '/v1/instances/m1/memory', { size: '1G' })).status, 200);
  await waitFor(async () => (await mem('m1')).guest.balloon === 1024 * MiB, 30_000, 'the balloon to deflate');
  const g2 = await meminfo(console1);
  assert.ok(g2.available > g0.available - 64 * MiB, `MemAvailable ${g2.available / MiB} MiB`);

  const over = await d.api('POST', '/v1/instances/m1/memory', { size: '2G' });
  assert.equal(over.status, 400);
  assert.match(over.body.error.message, /more than the boot memory/);
  assert.equal((await d.api('POST', '/v1/instances/m1/memory', { size: '32M' })).status, 400);
});

test('memory is fully released at stop: the QEMU is gone and the host gets its memory back', { skip }, async () => {
  await console1.close();
  const running = hostAvailable();
  const rss = (await mem('m1')).host.rss as number;
  assert.equal((await d.api('POST', '/v1/instances/m1/stop', { timeout: 20 })).status, 200);
  await waitFor(() => { try { process.kill(pid, 0); return false; } catch { return true; } }, 10_000, 'QEMU to exit');
  await waitFor(() => hostAvailable() > running + rss / 2, 10_000, 'host MemAvailable to rise', () => `${running / MiB} -> ${hostAvailable() / MiB} MiB, rss was ${rss / MiB}`);
  // (the host's MemAvailable is not held against its figure before the start: that figure is the whole machine's, and
  // the unit tests, which run beside this file, move it by more than a guest's worth in the minutes between)
});

test('memory hotplug: 256M growing to 512M with virtio-mem', { skip }, async () => {
  await boot(d, { name: 'm2', memory: '256M', maxMemory: '512M' });
  const c = await ConsoleSession.open(d, 'm2');
  try {
    const g0 = await meminfo(c);
    const r = await d.api('POST', '/v1/instances/m2/memory', { size: '512M' });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    await waitFor(async () => (await mem('m2')).guest.plugged === 256 * MiB, 30_000, 'virtio-mem to plug 256 MiB');
    let g1 = g0;
    await waitFor(async () => { g1 = await meminfo(c); return g1.total > g0.total + 200 * MiB; }, 30_000, 'the guest MemTotal to grow', () => `${g0.total / MiB} -> ${g1.total / MiB} MiB`);
    const s = await mem('m2');
    assert.equal(s.guest.visible, 512 * MiB);
    assert.ok(s.map.some((m: any) => m.region === 'vmem0' && m.size === 256 * MiB));
    const over = await d.api('POST', '/v1/instances/m2/memory', { size: '1G' });
    assert.equal(over.status, 400);
    assert.match(over.body.error.message, /more than maxMemory/);
    assert.equal((await mem('m2')).guest.plugged, 256 * MiB, 'nothing changed');
  } finally {
    await c.close();
    await d.api('POST', '/v1/instances/m2/kill');
  }
});

test('the pressure controller inflates balloons when the host is short of memory', { skip }, async () => {
  const d2 = new Daemon(newDataDir(), [], { CORRAL_PRESSURE_THRESHOLD: '1T', CORRAL_PRESSURE_INTERVAL: '1', CORRAL_PRESSURE_STEP: '64M' });
  try {
    await d2.start();
    await boot(d2, { name: 'p1', memory: '512M' });
    let actual = 0;
    await waitFor(async () => {
      actual = (await d2.api('GET', '/v1/instances/p1/memory')).body.guest.balloon;
      return actual < 512 * MiB;
    }, 60_000, 'the balloon of p1 to inflate', () => `actual ${actual}`);
    const evs = (await d2.events(0)).filter((e) => e.type === 'memory.pressure');
    assert.ok(evs.length > 0);
    assert.equal(evs[0]!.instance, 'p1');
    assert.equal(evs[0]!.data.from - evs[0]!.data.to, evs[0]!.data.bytes);
    assert.ok(evs[0]!.data.bytes > 0 && evs[0]!.data.bytes <= 64 * MiB);
  } finally {
    await d2.destroy();
  }
});
