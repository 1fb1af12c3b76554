/**
 * bench/web-console: the web console's figures on a real daemon. Makes N stopped tiny instances (default 1,000),
 * then opens the console in Debian's Chromium (playwright-core) and prints: the bundle's size gzipped (what the login
 * loads, and the serial console's chunk), the time from asking for the instance list page to its first rows drawn
 * (a fresh load each time: the page, its login check, the list read, the event stream opened; median of 5), how long
 * GET /v1/instances takes the daemon with N instances, and the daemon's memory before the page, with it open, and
 * with 5 more pages open on their event streams.
 *
 *   make build test-base && CORRAL_TEST_BASE=.data/test-base node dist/bench/web-console.js [N=1000]
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { chromium, type Page } from 'playwright-core';
import { Daemon, haveTinyBase, newDataDir, REPO } from '../test/integration/harness.js';

const N = Number(process.argv[2] ?? 1000);
const PORT = 20000 + Math.floor(Math.random() * 20000);
const ORIGIN = `https://127.0.0.1:${PORT}`;
const KiB = 1024;
const MiB = 1024 * 1024;

const rssOf = (pid: number): number => Number(/^VmRSS:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) * 1024;
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

function bundle(): { login: number; console: number } {
  const dir = join(REPO, 'dist/web/assets');
  let login = 0;
  let cons = 0;
  for (const f of readdirSync(dir)) {
    const gz = gzipSync(readFileSync(join(dir, f))).length;
    if (f.startsWith('term-')) cons += gz;
    else login += gz;
  }
  return { login: login + gzipSync(readFileSync(join(REPO, 'dist/web/index.html'))).length, console: cons };
}

async function main(): Promise<void> {
  if (!haveTinyBase()) throw new Error('the tiny image is not built: make test-base');
  const d = new Daemon(newDataDir(), ['--listen', `127.0.0.1:${PORT}`], { CORRAL_PRESSURE_INTERVAL: '0' });
  const browser = await chromium.launch({ executablePath: process.env.CORRAL_CHROMIUM ?? '/usr/bin/chromium', headless: true, args: ['--no-sandbox'] });
  try {
    await d.start();
    const t0 = Date.now();
    let next = 0;
    await Promise.all(Array.from({ length: 4 }, async () => {
      while (next < N) {
        const i = next++;
        const r = await d.api('POST', '/v1/instances', { name: `vm-${String(i).padStart(4, '0')}`, image: 'tiny', memory: '64M', network: 'none' });
        if (r.status !== 201) throw new Error(`create ${i}: ${JSON.stringify(r.body)}`);
      }
    }));
    console.log(`made ${N} stopped instances in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    const lists: number[] = [];
    for (let i = 0; i < 5; i++) {
      const s = performance.now();
      await d.ok('GET', '/v1/instances');
      lists.push(performance.now() - s);
    }
    const pid = d.proc!.pid!;
    const before = rssOf(pid);
    // each console in a browser context of its own: one person each (a browser opens at most six HTTP/1.1
    // connections to one host, shared by all the tabs of one profile)
    const loggedIn = async (): Promise<Page> => {
      const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1360, height: 860 } });
      const p = await context.newPage();
      await p.goto(`${ORIGIN}/`);
      await p.getByLabel('API token').fill(readFileSync(join(d.dataDir, 'token'), 'utf8').trim());
      await p.getByRole('button', { name: 'Log in' }).click();
      await p.getByRole('heading', { name: 'Overview' }).waitFor();
      return p;
    };
    const page = await loggedIn();
    const paints: number[] = [];
    for (let i = 0; i < 5; i++) {
      const s = performance.now();
      await page.goto(`${ORIGIN}/?run=${i}#/instances`);
      await page.locator('[data-instance="vm-0000"]').waitFor({ timeout: 120_000 });
      paints.push(performance.now() - s);
    }
    const rows = await page.locator('.vrow').count();
    const open = rssOf(pid);
    const more: Page[] = [];
    for (let i = 0; i < 5; i++) {
      const p = await loggedIn();
      await p.goto(`${ORIGIN}/#/instances`);
      await p.locator('[data-instance="vm-0000"]').waitFor({ timeout: 120_000 });
      more.push(p);
    }
    const six = rssOf(pid);
    await Promise.all(more.map((p) => p.context().close()));
    const b = bundle();
    const fig = {
      instances: N, bundleLoginGzipBytes: b.login, bundleConsoleGzipBytes: b.console,
      firstRowsMs: Math.round(median(paints)), rowsInPage: rows, listMs: Math.round(median(lists)),
      daemonRssBytes: { before, oneUiOpen: open, sixUisOpen: six },
    };
    console.log(`bundle (gzip): ${(b.login / KiB).toFixed(1)} KiB to the login, ${(b.console / KiB).toFixed(1)} KiB more for the serial console`);
    console.log(`instance list page, first rows drawn: median ${fig.firstRowsMs} ms of 5 fresh loads (${paints.map((x) => Math.round(x)).join(', ')}); ${rows} rows of ${N} in the page`);
    console.log(`GET /v1/instances with ${N}: median ${fig.listMs} ms`);
    console.log(`daemon RSS: ${(before / MiB).toFixed(0)} MiB before, ${(open / MiB).toFixed(0)} MiB with the console open, ${(six / MiB).toFixed(0)} MiB with six open`);
    console.log(JSON.stringify(fig));
  } finally {
    await browser.close();
    await d.destroy();
  }
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
