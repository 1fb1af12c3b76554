/**
 * What the web console's browser tests share: Debian's Chromium driven by playwright-core (its path in
 * $CORRAL_CHROMIUM), why a test is skipped (no tiny image, no Chromium, the console not built), a page that may
 * fetch nothing outside the daemon (what it tried is listed), the login through the form, and screenshots in
 * $CORRAL_ARTIFACTS (default /tmp/corral-web-artifacts); requests and websocket upgrades made as any program (not the
 * browser) would make them.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import WebSocket from 'ws';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { REPO, SKIP_NO_TINY } from './harness.js';

export const CHROMIUM = process.env.CORRAL_CHROMIUM ?? '/usr/bin/chromium';
export const ARTIFACTS = process.env.CORRAL_ARTIFACTS ?? '/tmp/corral-web-artifacts';
const BUILT = existsSync(join(REPO, 'dist/web/index.html'));
export const WEB_SKIP: string | false = SKIP_NO_TINY || (!existsSync(CHROMIUM) && `no ${CHROMIUM} (Debian's chromium package: scripts/host-deps.sh)`) || (!BUILT && 'the web console is not built (make build)');

/** A daemon's TCP listener for a browser test: a random port of 127.0.0.1, its origin, and the daemon's --listen. */
export function webListener(): { port: number; origin: string; args: string[] } {
  const port = 20000 + Math.floor(Math.random() * 20000);
  return { port, origin: `https://127.0.0.1:${port}`, args: ['--listen', `127.0.0.1:${port}`] };
}

export interface WebBrowser {
  browser: Browser;
  context: BrowserContext;
  page: Page;
  /** every request the page made outside `origin` (refused): there must be none */
  outside: string[];
  /** a full-page screenshot of the page, to ARTIFACTS/NAME.png */
  shot(name: string): Promise<Buffer>;
}

export async function openBrowser(origin: string): Promise<WebBrowser> {
  mkdirSync(ARTIFACTS, { recursive: true });
  console.log(`web console screenshots: ${ARTIFACTS}`);
  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox'] });
  const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1360, height: 860 } });
  const page = await context.newPage();
  const outside: string[] = [];
  await page.route('**/*', (route) => {
    if (!route.request().url().startsWith(origin)) {
      outside.push(route.request().url());
      return route.abort();
    }
    return route.continue();
  });
  return { browser, context, page, outside, shot: (name) => page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: true }) };
}

/** Log in through the page's form with a token; back at the overview. */
export async function logIn(page: Page, origin: string, token: string): Promise<void> {
  await page.goto(`${origin}/`);
  await page.getByLabel('API token').fill(token);
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.getByRole('heading', { name: 'Overview' }).waitFor();
}

/** The Images page's upload of image `name` has ended well: its import's bar says so, both bars at 100%. */
export async function uploadFinished(page: Page, name: string): Promise<void> {
  await page.getByTestId('upload-job').getByText(`image ${name} imported 100%`).waitFor({ timeout: 60_000 });
  assert.equal(await page.getByTestId('upload-sent').innerText(), '100%');
  assert.equal(await page.locator('#img-sent').evaluate((p) => (p as HTMLProgressElement).value), 100);
  assert.equal(await page.locator('#img-job').evaluate((p) => (p as HTMLProgressElement).value), 100);
}

/** The web session's cookie, as a Cookie header's value. */
export async function sessionCookie(context: BrowserContext, origin: string): Promise<string> {
  const c = (await context.cookies(origin)).find((x) => x.name.startsWith('__Host-corral-session'));
  assert.ok(c, 'the session cookie is set');
  return `${c.name}=${c.value}`;
}

/** A daemon's TCP API as a program reaches it: port, and its data dir (for the certificate it trusts). */
export interface TcpApi { port: number; dataDir: string }

/**
 * Open a websocket on the TCP API: `open` with the first message it is sent, or the HTTP status and JSON body of a
 * refused upgrade.
 */
export function websocketAttempt(api: TcpApi, path: string, headers: Record<string, string> = {}): Promise<{ open: true; first: Buffer } | { open: false; status: number; body: any }> {
  const ca = readFileSync(join(api.dataDir, 'tls', 'server.crt'));
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`wss://127.0.0.1:${api.port}${path}`, { headers, ca });
    ws.once('message', (d: Buffer) => {
      ws.close();
      resolve({ open: true, first: d });
    });
    ws.once('unexpected-response', (_req, res) => {
      let text = '';
      res.on('data', (c: Buffer) => { text += c.toString(); });
      res.on('end', () => {
        let body: unknown = text;
        try { body = JSON.parse(text); } catch { /* not JSON */ }
        resolve({ open: false, status: res.statusCode ?? 0, body });
      });
    });
    ws.once('error', reject);
  });
}
