/**
 * What the web console's browser tests share: Debian's Chromium driven by playwright-core (its path in
 * $CORRAL_CHROMIUM), why a test is skipped (no tiny image, no Chromium, the console not built), a page that may
 * fetch nothing outside the daemon (what it tried is listed), the login through the form, and screenshots in
 * $CORRAL_ARTIFACTS (default /tmp/corral-web-artifacts).
 */
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { REPO, SKIP_NO_TINY } from './harness.js';

export const CHROMIUM = process.env.CORRAL_CHROMIUM ?? '/usr/bin/chromium';
export const ARTIFACTS = process.env.CORRAL_ARTIFACTS ?? '/tmp/corral-web-artifacts';
const BUILT = existsSync(join(REPO, 'dist/web/index.html'));
export const WEB_SKIP: string | false = SKIP_NO_TINY || (!existsSync(CHROMIUM) && `no ${CHROMIUM} (Debian's chromium package: scripts/host-deps.sh)`) || (!BUILT && 'the web console is not built (make build)');

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
