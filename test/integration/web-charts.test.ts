/**
 * The instance page's charts, memory map, vCPU threads and devices, and the overview's reclaimed memory, in a real
 * browser (Debian's Chromium, playwright-core: web-browser.ts) against a daemon sampling every second
 * (CORRAL_HISTORY_STEP_MS=1000; the default is 5 s). One tiny guest serves every test: its charts gain points as
 * samples come (uPlot's data and its canvas change; the NIC chart from its guest agent's counters: user-mode
 * networking), its memory map shows a resident range, its devices table its
 * disk with its approach; the history's figures agree with /proc of its QEMU, the reclaimed memory with its memory map. Screenshots go to $CORRAL_ARTIFACTS.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { Daemon, useDaemon, waitFor } from './harness.js';
import { ARTIFACTS, logIn, openBrowser, WEB_SKIP, type WebBrowser, webListener } from './web-browser.js';
import { rssBytes } from '../../src/services/metrics.js';
import { parseTaskStat } from '../../src/services/cpu-plan.js';

const skip = WEB_SKIP;
const { origin: ORIGIN, args: LISTEN } = webListener();
const BOOT_MS = 180_000;
const VM = 'chart1';
const MiB = 2 ** 20;
/** a tiny guest does not touch all of it as it boots: what is left is reclaimed */
const MEMORY = 256 * MiB;

let d: Daemon;
useDaemon((x) => { d = x; }, { args: LISTEN, env: () => ({ CORRAL_HISTORY_STEP_MS: '1000' }) });

let web: WebBrowser;
let page: Page;
let pid: number;

/** The browser and the guest, made once by the first test that needs them (after the daemon's own before). */
let setup: Promise<void> | null = null;
const ready = (): Promise<void> => (setup ??= (async () => {
  web = await openBrowser(ORIGIN);
  page = web.page;
  await d.ok('POST', '/v1/instances', { name: VM, image: 'tiny', memory: '256M', start: true }, 201);
  await d.waitConsole(VM, /corral-tiny ready/, BOOT_MS);
  pid = (await d.ok('GET', `/v1/instances/${VM}`)).pid as number;
  await logIn(page, ORIGIN, readFileSync(join(d.dataDir, 'token'), 'utf8').trim());
})());

after(async () => {
  await web?.browser.close();
});

const points = (chart: string): Promise<number> => page.locator(`figure[data-chart="${chart}"]`).getAttribute('data-points').then(Number);
const canvas = (chart: string): Promise<string> => page.locator(`figure[data-chart="${chart}"] canvas`).evaluate((c) => (c as HTMLCanvasElement).toDataURL());

/** Host CPU seconds of the vCPU threads, from /proc, as a user would add them up. */
async function procVcpuSeconds(): Promise<number> {
  const cpu = await d.ok('GET', `/v1/instances/${VM}/cpu`);
  return (cpu.vcpus as Array<{ threadId: number }>).reduce((a, v) => a + parseTaskStat(readFileSync(`/proc/${pid}/task/${v.threadId}/stat`, 'utf8'))!.ticks / 100, 0);
}
const procRss = (): number => rssBytes(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'))!;

test('the instance page\'s charts gain a point each sample: uPlot\'s data grows and its canvas changes', { skip, timeout: BOOT_MS + 180_000 }, async () => {
  await ready();
  await page.goto(`${ORIGIN}/#/instances/${VM}`);
  for (const c of ['cpu', 'memory', 'disk']) {
    await waitFor(async () => (await points(c)) >= 2, 60_000, `the ${c} chart drawn with 2 points`);
  }
  // user-mode networking: QEMU counts nothing, so the NIC chart draws what the guest agent reports, and says so
  await waitFor(async () => (await page.locator('figure[data-chart="nic"]').getAttribute('data-points').then(Number)) >= 2, 60_000, 'the NIC chart drawn from the guest agent\'s counters');
  assert.match(await page.locator('figure[data-chart="nic"] figcaption').innerText(), /reported by the guest agent/);
  const n0 = await points('cpu');
  const drawn0 = await canvas('memory');
  await waitFor(async () => (await points('cpu')) >= n0 + 2, 60_000, 'two more samples on the CPU chart');
  assert.equal(await points('memory'), await points('cpu'), 'every chart has every sample');
  assert.notEqual(await canvas('memory'), drawn0, 'the memory chart was drawn again with its new points');
  // the legend shows the figures uPlot has: resident, configured and balloon memory
  const legend = await page.locator('figure[data-chart="memory"] .u-legend').innerText();
  assert.match(legend, /resident \(Rss\)/);
  assert.match(legend, /configured/);
  await web.shot('instance-charts-page');
  await page.locator('.charts').screenshot({ path: join(ARTIFACTS, 'instance-charts.png') });
});

test('the memory map shows the guest\'s RAM ranges with a resident share; vCPU threads and devices are listed', { skip, timeout: BOOT_MS + 120_000 }, async () => {
  await ready();
  const mem = await d.ok('GET', `/v1/instances/${VM}/memory`);
  const ranges = page.locator('.memory-map g.range');
  await waitFor(async () => (await ranges.count()) === mem.map.length, 30_000, `${mem.map.length} ranges drawn`);
  const drawn = await ranges.evaluateAll((gs) => gs.map((g) => ({
    region: g.getAttribute('data-region'), resident: Number(g.getAttribute('data-resident')),
    fill: Number(g.querySelector('rect.resident')?.getAttribute('width')), whole: Number(g.querySelector('rect')?.getAttribute('width')),
  })));
  assert.ok(drawn.some((r) => r.resident > 0 && r.fill > 0 && r.fill <= r.whole), `a resident range, filled: ${JSON.stringify(drawn)}`);
  assert.ok(drawn.every((r) => r.region === 'mem0'), 'the boot RAM backs them all');
  await page.locator('.memory-map').getByText('memory-backend-ram').first().waitFor();

  // each vCPU's host thread, as /proc knows it
  const row = page.locator('table.vcpus tr[data-vcpu="0"]');
  await row.waitFor();
  const tid = Number(await row.locator('td').nth(1).innerText());
  assert.ok(readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8').startsWith(`${tid} `), `thread ${tid} is one of QEMU ${pid}'s`);

  // the root disk with its approach, as the API reports it
  const disk = ((await d.ok('GET', `/v1/instances/${VM}/devices`)).devices as Array<{ id: string; approach: string }>).find((x) => x.id === 'disk0');
  assert.ok(disk);
  const cells = page.locator('table.devices tr', { hasText: 'disk0' }).first().locator('td');
  assert.equal(await cells.nth(0).innerText(), 'disk0');
  assert.equal(await cells.nth(2).innerText(), disk.approach);
  await page.locator('.instance-views > .panes').screenshot({ path: join(ARTIFACTS, 'instance-memory-map-vcpus.png') });
});

test('the history agrees with /proc of QEMU: vCPU time, Rss, and the configured and balloon memory', { skip, timeout: BOOT_MS + 120_000 }, async () => {
  await ready();
  const cpuBefore = await procVcpuSeconds();
  const rssBefore = procRss();
  const since = Date.now();
  let h: any;
  await waitFor(async () => {
    h = await d.ok('GET', `/v1/instances/${VM}/history?since=${since}`);
    return h.series.t.length > 0;
  }, 30_000, 'a sample after /proc was read');
  const rssAfter = procRss();
  const cpuAfter = await procVcpuSeconds();
  const s = h.series;
  assert.equal(h.stepMs, 1000);
  assert.equal(h.capacity, 720);
  const vcpu = s.vcpuSeconds[0] as number;
  assert.ok(vcpu >= cpuBefore - 0.011 && vcpu <= cpuAfter + 0.011, `vCPU time ${vcpu} s between /proc's ${cpuBefore} and ${cpuAfter}`);
  const rss = s.residentBytes[0] as number;
  assert.ok(rss >= Math.min(rssBefore, rssAfter) * 0.9 && rss <= Math.max(rssBefore, rssAfter) * 1.1, `Rss ${rss} near /proc's ${rssBefore}..${rssAfter}`);
  assert.equal(s.configuredBytes[0], MEMORY);
  const mem = await d.ok('GET', `/v1/instances/${VM}/memory`);
  assert.equal(s.balloonBytes[0], mem.guest.balloon, 'the balloon as corral stats shows it');

  // the whole history: one sample a step, times rising, CPU % within what one vCPU can do (give or take what a 1 s step
  // cannot resolve: /proc counts in 10 ms ticks, and a loaded machine reads a pass's figures some ms after its time)
  const all = (await d.ok('GET', `/v1/instances/${VM}/history`)).series;
  assert.ok(all.t.length >= 5, `${all.t.length} samples`);
  for (let i = 1; i < all.t.length; i++) assert.ok(all.t[i] > all.t[i - 1], 'times rise');
  const cpu = (all.cpuPercent as Array<number | null>).slice(1);
  assert.ok(cpu.every((p) => p !== null && p >= 0 && p <= 110), `CPU % ${JSON.stringify(cpu)}`);
  assert.ok((all.diskReadBytes.at(-1) as number) > 0, 'the guest read its disk as it booted');
  const sum = await d.ok('GET', '/v1/history');
  assert.equal(sum.instances.length, 1);
  console.log(`history: one pass over ${sum.instances.length} running instance took ${sum.passMs.toFixed(2)} ms`);
});

test('the overview shows the memory reclaimed from running guests: configured less guest RAM resident, as the memory map counts it', { skip, timeout: BOOT_MS + 120_000 }, async () => {
  await ready();
  await page.goto(`${ORIGIN}/#/`);
  const card = page.getByTestId('reclaimed');
  await card.getByRole('link', { name: VM }).waitFor();
  // the memory route's residency of each guest RAM range (pagemap), then a sample taken after it: the idle guest's
  // RAM barely moves between the two (the tolerance), and the VGA window's 128 KiB hole in mem0 is in the sample only
  const mem = await d.ok('GET', `/v1/instances/${VM}/memory`);
  const mapped = (mem.map as Array<{ resident: number }>).reduce((a, r) => a + r.resident, 0);
  const since = Date.now();
  let sum: any;
  await waitFor(async () => {
    sum = await d.ok('GET', '/v1/history');
    return (sum.instances[0]?.t ?? 0) > since;
  }, 30_000, 'a sample after the memory map was read');
  const guest = sum.instances[0].guestResidentBytes as number;
  const rss = procRss();
  console.log(`overview: guest RAM resident ${guest} (memory map's ranges: ${mapped}), QEMU's Rss ${rss}, ${MEMORY} configured`);
  const TOLERANCE = 8 * MiB;
  assert.ok(Math.abs(guest - mapped) <= TOLERANCE, `guest RAM resident ${guest} near the memory map's ${mapped}`);
  assert.ok(guest < rss, 'QEMU\'s own memory (its translation cache under TCG) is left out of it');
  const expected = MEMORY - mapped;
  assert.ok(expected > TOLERANCE, `the booted tiny guest leaves part of its RAM untouched (${mapped} resident)`);
  assert.equal(sum.reclaimed.notResident, Math.max(0, MEMORY - guest));
  // the card (read every 5 s) shows that figure
  let shown = 0;
  await waitFor(async () => {
    shown = Number(await card.locator('[data-bytes]').getAttribute('data-bytes'));
    return shown > 0;
  }, 30_000, 'the card shows memory reclaimed');
  console.log(`overview: ${shown} bytes reclaimed shown`);
  assert.ok(Math.abs(shown - expected) <= TOLERANCE, `reclaimed ${shown} near the configured memory less the memory map's resident ${mapped} (${expected})`);
  assert.match(await card.innerText(), /held by balloons/);
  await web.shot('overview-reclaimed');
});

test('a stopped instance keeps its history with a gap; its charts stay', { skip, timeout: BOOT_MS + 120_000 }, async () => {
  await ready();
  await d.ok('POST', `/v1/instances/${VM}/kill`);
  await d.waitState(VM, 'stopped', 60_000);
  await waitFor(async () => ((await d.ok('GET', `/v1/instances/${VM}/history`)).series.residentBytes as unknown[]).at(-1) === null, 30_000, 'a gap at the end of the history');
  assert.deepEqual((await d.ok('GET', '/v1/history')).instances, [], 'no running instance left');
  await page.goto(`${ORIGIN}/#/instances/${VM}`);
  await waitFor(async () => (await points('cpu')) >= 5, 30_000, 'the stopped instance\'s charts');
  await d.ok('DELETE', `/v1/instances/${VM}`);
});
