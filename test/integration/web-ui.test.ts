/**
 * The web console in a real browser: Debian's Chromium driven by playwright-core, against a real daemon on TCP (its
 * self-signed certificate accepted). A wrong token is refused and the right one logs in; a tiny VM made through the
 * form boots and its serial console in the page shows `corral-tiny ready` and answers a command; the list follows
 * the VM live while it is stopped and deleted from it; the API without the cookie is 401 and forged requests from
 * another origin are refused; bad input gets the API's own error next to its field and makes nothing; the form
 * works from the keyboard alone; a thousand instances render with only the rows in view in the page. A screenshot
 * of each page goes to $CORRAL_ARTIFACTS (default /tmp/corral-web-artifacts).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createServer, request as httpsRequest, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import type { BrowserContext, Page } from 'playwright-core';
import { Daemon, useDaemon, waitFor } from './harness.js';
import { openBrowser, sessionCookie, WEB_SKIP, websocketAttempt, type WebBrowser, webListener } from './web-browser.js';

const skip = WEB_SKIP;
const { port: PORT, origin: ORIGIN, args: LISTEN } = webListener();
const BOOT_MS = 180_000;

let d: Daemon;
useDaemon((x) => { d = x; }, { args: LISTEN });

let web: WebBrowser;
let context: BrowserContext;
let page: Page;

before(async () => {
  if (skip) return;
  web = await openBrowser(ORIGIN);
  ({ context, page } = web);
});

after(async () => {
  await web?.browser.close();
});

const shot = (name: string): Promise<Buffer> => web.shot(name);
const tokenFile = (): string => readFileSync(join(d.dataDir, 'token'), 'utf8').trim();

interface Answer { status: number; body: any; headers: Record<string, string | string[] | undefined> }

/** A request to the TCP API as any program (not the browser) would make it. */
function call(method: string, path: string, headers: Record<string, string> = {}, body?: unknown): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const ca = readFileSync(join(d.dataDir, 'tls', 'server.crt'));
    const h = { ...headers, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) };
    const req = httpsRequest({ host: '127.0.0.1', port: PORT, path, method, ca, headers: h }, (res) => {
      let text = '';
      res.on('data', (c: Buffer) => { text += c.toString(); });
      res.on('end', () => {
        let parsed: unknown = text;
        try { parsed = JSON.parse(text); } catch { /* not JSON */ }
        resolve({ status: res.statusCode ?? 0, body: parsed, headers: res.headers });
      });
    });
    req.on('error', reject);
    req.end(body === undefined ? undefined : JSON.stringify(body));
  });
}

/** What the serial console shows now (the rows xterm.js has drawn). */
const terminalText = (): Promise<string> => page.locator('.xterm-rows').innerText();

test('the page is served at / with its own files only, and asks for a token', { skip, timeout: 120_000 }, async () => {
  const r = await call('GET', '/');
  assert.equal(r.status, 200);
  assert.match(String(r.headers['content-type']), /^text\/html/);
  assert.match(String(r.headers['content-security-policy']), /default-src 'self'.*frame-ancestors 'none'/);
  await page.goto(`${ORIGIN}/`);
  await page.getByLabel('API token').waitFor();
  await shot('login');
  assert.deepEqual(web.outside, [], 'nothing is fetched from outside the daemon');
});

test('a wrong token is refused; the right one logs in with an HttpOnly, Secure, SameSite=Strict cookie', { skip, timeout: 120_000 }, async () => {
  await page.getByLabel('API token').fill(`corral_${'x'.repeat(43)}`);
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.getByRole('alert').filter({ hasText: 'UNAUTHORIZED' }).waitFor();
  assert.equal((await context.cookies(ORIGIN)).length, 0, 'no cookie for a wrong token');
  await page.getByLabel('API token').fill(tokenFile());
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.getByRole('heading', { name: 'Overview' }).waitFor();
  const [c] = await context.cookies(ORIGIN);
  assert.ok(c);
  assert.equal(c.name, `__Host-corral-session-${PORT}`);
  assert.equal(c.httpOnly, true);
  assert.equal(c.secure, true);
  assert.equal(c.sameSite, 'Strict');
  assert.equal(c.path, '/');
  assert.ok(!(await page.content()).includes(tokenFile()), 'the token is not kept in the page');
  await page.getByText('allocated of capacity').first().waitFor();
  await shot('overview');
});

test('the API without the cookie is 401; with it, reads work and forged changes are refused', { skip, timeout: 120_000 }, async () => {
  const none = await call('GET', '/v1/instances');
  assert.equal(none.status, 401);
  assert.equal(none.body.error.code, 'UNAUTHORIZED');
  const cookie = await sessionCookie(context, ORIGIN);
  assert.equal((await call('GET', '/v1/instances', { cookie })).status, 200);
  const who = await call('GET', '/v1/session', { cookie });
  assert.equal(who.body.who, 'token-file');
  assert.match(who.body.csrf, /^[A-Za-z0-9_-]{43}$/);
  // a change without the session's CSRF header, or from another origin, is refused before anything is made
  const noCsrf = await call('POST', '/v1/instances', { cookie }, { name: 'forged1', image: 'tiny' });
  assert.equal(noCsrf.status, 403);
  assert.equal(noCsrf.body.error.code, 'CSRF_REFUSED');
  const foreign = await call('POST', '/v1/instances', { cookie, 'x-corral-csrf': who.body.csrf, origin: 'https://evil.example' }, { name: 'forged2', image: 'tiny' });
  assert.equal(foreign.body.error.code, 'CSRF_REFUSED');
  // a console websocket opened by another origin's page with the cookie
  const ws = await websocketAttempt({ port: PORT, dataDir: d.dataDir }, '/v1/instances/nosuch/console', { cookie, origin: 'https://evil.example' });
  assert.equal(ws.open ? 101 : ws.status, 403);

  // a page of another origin (another port of the same host: the same site, so the SameSite cookie goes along)
  // posts to the API with fetch and with a form: both are refused, and nothing is made
  const tls = { cert: readFileSync(join(d.dataDir, 'tls', 'server.crt')), key: readFileSync(join(d.dataDir, 'tls', 'server.key')) };
  const evil: Server = createServer(tls, (_q, res) => {
    res.setHeader('content-type', 'text/html');
    res.end(`<!doctype html><body><form id=f method=post action="${ORIGIN}/v1/instances" enctype="text/plain"><input name='{"name":"forged3","image":"tiny","x":"' value='"}'></form>
      <script>fetch("${ORIGIN}/v1/instances", { method: "POST", credentials: "include", mode: "no-cors", headers: { "content-type": "text/plain" }, body: JSON.stringify({ name: "forged4", image: "tiny" }) })
        .finally(() => document.getElementById("f").submit());</script></body>`);
  });
  await new Promise<void>((r) => evil.listen(0, '127.0.0.1', r));
  const evilPort = (evil.address() as AddressInfo).port;
  try {
    const other = await context.newPage();
    await other.goto(`https://127.0.0.1:${evilPort}/`);
    await waitFor(async () => {
      const audit = (await d.ok('GET', '/v1/audit?limit=50')).entries as Array<{ path: string; status: number; code: string | null; method: string }>;
      return audit.filter((e) => e.method === 'POST' && e.path === '/v1/instances' && e.status === 403 && e.code === 'CSRF_REFUSED').length >= 4;
    }, 30_000, 'the forged page\'s fetch and form refused');
    await other.close();
  } finally {
    evil.close();
  }
  const names = ((await d.ok('GET', '/v1/instances')).instances as Array<{ name: string }>).map((i) => i.name);
  assert.deepEqual(names.filter((n) => n.startsWith('forged')), [], 'nothing was created');
  // the audit log names the caller and never holds the session id or the token
  const log = readFileSync(join(d.dataDir, 'audit.log'), 'utf8');
  assert.ok(!log.includes(cookie.split('=')[1]!), 'no session id in the audit log');
  assert.ok(!log.includes(tokenFile()), 'no token in the audit log');
  assert.match(log, /"who":"token-file","role":"admin","via":"tcp","peer":"127\.0\.0\.1","method":"POST","path":"\/v1\/session"/);
});

test('bad input in the form gets the API\'s error next to its field, and nothing is created', { skip, timeout: 120_000 }, async () => {
  await page.goto(`${ORIGIN}/#/instances/new`);
  await page.getByLabel('name', { exact: true }).fill('bad1');
  await page.getByLabel('memory', { exact: true }).fill('lots');
  await page.getByRole('button', { name: 'Create' }).click();
  const err = page.locator('#f-memory-error');
  await err.waitFor();
  assert.match(await err.innerText(), /^INVALID_SPEC: memory: /);
  assert.equal(await page.evaluate(() => document.activeElement?.id), 'f-memory', 'the focus is on the field at fault');
  assert.equal(await page.getByLabel('memory', { exact: true }).getAttribute('aria-invalid'), 'true');
  await shot('create-error');
  assert.equal((await d.api('GET', '/v1/instances/bad1')).status, 404);
});

test('a tiny VM created through the form boots; its serial console shows corral-tiny ready and answers', { skip, timeout: BOOT_MS + 120_000 }, async () => {
  await page.goto(`${ORIGIN}/#/instances/new`);
  await page.getByLabel('name', { exact: true }).fill('web1');
  await page.getByLabel('memory', { exact: true }).fill('128M');
  await shot('create');
  await page.getByRole('button', { name: 'Create' }).click();
  await page.waitForURL(`${ORIGIN}/#/instances/web1`);
  await page.getByText('attached: what you type goes to the guest').waitFor({ timeout: BOOT_MS });
  await waitFor(async () => (await terminalText()).includes('corral-tiny ready'), BOOT_MS, 'corral-tiny ready in the page\'s console', () => '');
  // the shell reads the serial port only once it runs: press Enter until its prompt shows
  await page.getByRole('application', { name: 'serial console of web1' }).click();
  await waitFor(async () => {
    await page.keyboard.press('Enter');
    await new Promise((r) => setTimeout(r, 500));
    return /#\s*$/.test((await terminalText()).trimEnd());
  }, 60_000, 'the guest shell\'s prompt');
  await page.keyboard.type('echo hello-$((6*7))');
  await page.keyboard.press('Enter');
  await waitFor(async () => /^hello-42$/m.test(await terminalText()), 60_000, 'the guest\'s answer in the page');
  // the guest itself said it: its console log (written by the daemon, not the page) has the answer too
  assert.match(await d.consoleLog('web1'), /\nhello-42\r?\n/);
  await shot('instance');
});

test('the instance list follows the VM live while it is stopped and deleted from it, each after a confirmation', { skip, timeout: 180_000 }, async () => {
  await page.goto(`${ORIGIN}/#/instances`);
  const row = page.locator('[data-instance="web1"]');
  await row.locator('.state', { hasText: 'running' }).waitFor();
  await shot('instances');
  await page.getByRole('button', { name: 'stop web1' }).click();
  const dialog = page.getByRole('dialog');
  await dialog.getByText('Power off "web1"?').waitFor();
  await dialog.getByRole('button', { name: 'Stop' }).click();
  await row.locator('.state', { hasText: 'stopped' }).waitFor({ timeout: 120_000 });
  assert.equal((await d.ok('GET', '/v1/instances/web1')).state, 'stopped');
  await page.getByRole('button', { name: 'delete web1' }).click();
  await dialog.getByRole('button', { name: 'Cancel' }).click();
  assert.equal((await d.api('GET', '/v1/instances/web1')).status, 200, 'Cancel deletes nothing');
  await page.getByRole('button', { name: 'delete web1' }).click();
  await dialog.getByRole('button', { name: 'Delete' }).click();
  await row.waitFor({ state: 'detached' });
  assert.equal((await d.api('GET', '/v1/instances/web1')).status, 404);
});

test('the create form works from the keyboard alone: Tab, typing, Space and Enter make an instance', { skip, timeout: 120_000 }, async () => {
  await page.goto(`${ORIGIN}/#/instances/new`);
  await page.getByLabel('name', { exact: true }).waitFor();
  // the name field has the focus as the page opens (given by an effect, which runs once the form is drawn)
  let active: string | undefined;
  await waitFor(async () => (active = await page.evaluate(() => document.activeElement?.id)) === 'f-name', 5000, 'the focus on the name field', () => `the focus is on "${active}"`);
  await page.keyboard.type('kb1');
  const focused = (): Promise<string> => page.evaluate(() => {
    const a = document.activeElement as HTMLInputElement | null;
    return a ? `${a.tagName.toLowerCase()}#${a.id}${a.type ? `[${a.type}]` : ''}:${a.name ?? ''}:${a.textContent?.trim() ?? ''}` : '';
  });
  const tabTo = async (what: RegExp): Promise<void> => {
    for (let i = 0; i < 60; i++) {
      if (what.test(await focused())) return;
      await page.keyboard.press('Tab');
    }
    assert.fail(`Tab never reached ${what}; last ${await focused()}`);
  };
  await tabTo(/#f-memory/);
  await page.keyboard.press('Control+A');
  await page.keyboard.type('96M');
  await tabTo(/\[checkbox\]:start/);
  await page.keyboard.press('Space'); // do not start it
  await tabTo(/^button.*:Create$/);
  await page.keyboard.press('Enter');
  await page.waitForURL(`${ORIGIN}/#/instances/kb1`);
  const made = await d.ok('GET', '/v1/instances/kb1');
  assert.equal(made.state, 'stopped');
  assert.equal(made.memory, 96 * 1024 * 1024);
  await d.ok('DELETE', '/v1/instances/kb1');
});

test('volumes, networks, images and events pages show what the API has', { skip, timeout: 120_000 }, async () => {
  await d.ok('POST', '/v1/volumes', { name: 'data1', size: '64M' }, 201);
  await page.goto(`${ORIGIN}/#/volumes`);
  await page.getByRole('cell', { name: 'data1', exact: true }).waitFor();
  await shot('volumes');
  await page.goto(`${ORIGIN}/#/networks`);
  await page.getByRole('cell', { name: /default/ }).first().waitFor();
  await shot('networks');
  await page.goto(`${ORIGIN}/#/images`);
  await page.getByRole('cell', { name: 'tiny', exact: true }).first().waitFor();
  await shot('images');
  await page.goto(`${ORIGIN}/#/events`);
  await page.getByRole('cell', { name: 'volume.created' }).first().waitFor();
  await shot('events');
});

test('a thousand instances: the list renders only the rows in view and scrolls to the last', { skip, timeout: 120_000 }, async () => {
  const real = await d.ok('POST', '/v1/instances', { name: 'shape1', image: 'tiny', memory: '64M' }, 201);
  const many = Array.from({ length: 1000 }, (_, i) => ({ ...real, name: `vm-${String(i).padStart(4, '0')}`, uuid: `00000000-0000-4000-8000-${String(i).padStart(12, '0')}` }));
  await page.route(`${ORIGIN}/v1/instances`, (route) => route.fulfill({ status: 200, contentType: 'application/json', body: JSON.stringify({ instances: many }) }));
  const t0 = Date.now();
  // a new load of the page (a query string: not only the hash), so that its list is read through the route above
  await page.goto(`${ORIGIN}/?many#/instances`);
  await page.locator('[data-instance="vm-0000"]').waitFor();
  const ms = Date.now() - t0;
  console.log(`1,000 instances: first rows shown ${ms} ms after the page was asked for`);
  const rows = await page.locator('.vrow').count();
  assert.ok(rows > 5 && rows < 100, `${rows} rows in the page`);
  await page.locator('.vlist').evaluate((el) => { el.scrollTop = el.scrollHeight; });
  await page.locator('[data-instance="vm-0999"]').waitFor();
  await shot('instances-1000');
  await page.unroute(`${ORIGIN}/v1/instances`);
  await d.ok('DELETE', '/v1/instances/shape1');
});

test('logging out ends the session: the page asks for a token and the old cookie is refused', { skip, timeout: 120_000 }, async () => {
  await page.goto(`${ORIGIN}/#/`);
  const cookie = await sessionCookie(context, ORIGIN);
  await page.getByRole('button', { name: 'Log out' }).click();
  await page.getByLabel('API token').waitFor();
  const r = await call('GET', '/v1/instances', { cookie });
  assert.equal(r.status, 401);
  assert.match(r.body.error.message, /browser session has ended/);
});

test('a revoked token\'s session ends at once', { skip, timeout: 120_000 }, async () => {
  const t = await d.ok('POST', '/v1/tokens', { name: 'ops1', role: 'operator' }, 201);
  await page.getByLabel('API token').fill(t.token);
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.getByText('ops1 (operator)').waitFor();
  const cookie = await sessionCookie(context, ORIGIN);
  assert.equal((await call('GET', '/v1/instances', { cookie })).status, 200);
  await d.ok('DELETE', '/v1/tokens/ops1');
  const r = await call('GET', '/v1/instances', { cookie });
  assert.equal(r.status, 401);
  assert.match(r.body.error.message, /browser session has ended \(the bearer token was revoked/);
  // the page finds out at its next call, and asks for a token again
  await page.goto(`${ORIGIN}/#/volumes`);
  await page.getByLabel('API token').waitFor();
});
