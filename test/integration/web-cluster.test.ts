/**
 * The web console served by a cluster controller, in a real browser (Debian's Chromium, playwright-core): a
 * controller on PostgreSQL with two real agents. A cluster token made through the controller logs in (the cookie
 * HttpOnly, Secure, SameSite=Strict); the overview shows each host's capacity and allocation from the controller's
 * pool; a tiny VM made through the form is placed by the controller, boots on its host, and the page's serial
 * console (through the controller's relay) shows `corral-tiny ready`; the list shows its HOST; it is stopped and
 * deleted from the page. The console's relay takes the cookie from the controller's own origin only. The Volumes
 * page makes a volume on the host its picker names (that host's own `volume list` has it) and deletes it there; the
 * Images page uploads a qcow2 to the chosen host through the controller's relay (both bars to 100%, the image on
 * that host only), and a fake image gets that host's INVALID_IMAGE under the format field; `corral image import
 * --upload --target HOST` works through the controller, and an upload cut mid-way leaves nothing on the host. The
 * page asks nothing a controller lacks (/v1/host, /v1/history) and logs no error.
 * Screenshots go to $CORRAL_ARTIFACTS (default /tmp/corral-web-artifacts), named cluster-*.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { BrowserContext, Page } from 'playwright-core';
import { Daemon, newDataDir, waitFor } from './harness.js';
import { Controller, freePort, initCluster } from './cluster-harness.js';
import WebSocket from 'ws';
import { logIn, openBrowser, sessionCookie, uploadFinished, WEB_SKIP, type WebBrowser } from './web-browser.js';
import type { TestPostgres } from '../unit/postgres.js';

const skip = WEB_SKIP;
const BOOT_MS = 180_000;
let pg: TestPostgres;
let shared: string | undefined;
let ctl: Controller;
const agents: Record<string, Daemon> = {};
let web: WebBrowser;
let context: BrowserContext;
let page: Page;
let origin: string;
/** every path the page asked the controller for, and every error the page logged */
const asked: string[] = [];
const problems: string[] = [];
/** every request the controller refused: "METHOD PATH STATUS" */
const refusals: string[] = [];
const work = mkdtempSync(join(tmpdir(), 'corral-web-cluster-'));

before(async () => {
  if (skip) return;
  ({ pg, shared } = await initCluster());
  ctl = new Controller(pg.url, await freePort());
  await ctl.start();
  origin = ctl.url;
  await Promise.all(['a1', 'a2'].map(async (name) => {
    const token = (await ctl.json(['cluster', 'join-token'])).token as string;
    const a = new Daemon(newDataDir(), ['--join', ctl.url, '--token', token, '--name', name, '--listen', `127.0.0.1:${await freePort()}`], { CORRAL_HEARTBEAT_MS: '500' }, { command: 'agent' });
    agents[name] = a;
    await a.start();
  }));
  await waitFor(async () => {
    const hosts = await ctl.json(['host', 'list']);
    return hosts.length === 2 && hosts.every((h: any) => h.state === 'up' && h.capacity?.cpus > 0);
  }, 60_000, 'both hosts up with their capacity');
  web = await openBrowser(origin);
  ({ context, page } = web);
  page.on('request', (r) => { if (r.url().startsWith(origin)) asked.push(new URL(r.url()).pathname); });
  page.on('response', (r) => { if (r.status() >= 400 && r.url().startsWith(origin)) refusals.push(`${r.request().method()} ${new URL(r.url()).pathname} ${r.status()}`); });
  // a refused request is logged too ("Failed to load resource"): the refusals say which
  page.on('console', (m) => { if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) problems.push(m.text()); });
  page.on('pageerror', (e) => problems.push(String(e)));
});

after(async () => {
  await web?.browser.close();
  for (const a of Object.values(agents)) await a.destroy();
  await ctl?.destroy();
  await pg?.stop();
  if (shared) rmSync(shared, { recursive: true, force: true });
  rmSync(work, { recursive: true, force: true });
});

const shot = (name: string): Promise<Buffer> => web.shot(`cluster-${name}`);
/** What the controller answers a console websocket for webc1 with these headers: 101 when it opens. */
function consoleAttempt(headers: Record<string, string>): Promise<number> {
  return new Promise((resolve) => {
    const s = new WebSocket(`${origin.replace('https:', 'wss:')}/v1/instances/webc1/console`, { headers, rejectUnauthorized: false });
    s.on('unexpected-response', (_q, res) => resolve(res.statusCode ?? 0));
    s.on('open', () => { s.close(); resolve(101); });
    s.on('error', () => resolve(-1));
  });
}
const terminalText = (): Promise<string> => page.locator('.xterm-rows').innerText();

test('a cluster token logs in to the controller\'s console; the overview shows each host\'s capacity and allocation', { skip, timeout: 120_000 }, async () => {
  const made = await ctl.json(['token', 'create', 'web-operator', '--role', 'operator']);
  await page.goto(`${origin}/`);
  await page.getByLabel('API token').fill(`corral_${'x'.repeat(43)}`);
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.getByRole('alert').filter({ hasText: 'UNAUTHORIZED' }).waitFor();
  assert.equal((await context.cookies(origin)).length, 0, 'no cookie for a wrong token');
  await logIn(page, origin, made.token);
  const [c] = await context.cookies(origin);
  assert.ok(c);
  assert.deepEqual([c.name, c.httpOnly, c.secure, c.sameSite], [`__Host-corral-session-${ctl.port}`, true, true, 'Strict']);
  await page.getByText('web-operator (operator)').waitFor();
  await page.getByText('cluster · 2 hosts').waitFor();

  const hosts = await ctl.json(['host', 'list']);
  const table = page.getByRole('table', { name: 'hosts' });
  for (const h of hosts) {
    const row = table.locator(`tr[data-host="${h.name}"]`);
    await row.waitFor();
    assert.match(await row.innerText(), /\bup\b/);
    // what the host reported in its heartbeat, as the controller's pool has it: nothing allocated yet
    const cpus = row.getByRole('meter', { name: `vCPUs of ${h.name}` });
    assert.equal(await cpus.getAttribute('aria-valuemax'), String(h.capacity.cpus));
    assert.equal(await cpus.getAttribute('aria-valuenow'), '0');
    assert.equal(await row.getByRole('meter', { name: `memory of ${h.name}` }).getAttribute('aria-valuemax'), String(h.capacity.memory));
  }
  await shot('overview');
});

test('a tiny VM made through the form is placed by the controller; its serial console through the relay shows corral-tiny ready', { skip, timeout: BOOT_MS + 120_000 }, async () => {
  await page.goto(`${origin}/#/instances/new`);
  await page.getByLabel('name', { exact: true }).fill('webc1');
  await page.getByLabel('memory', { exact: true }).fill('128M');
  // the image list is the union over the hosts: tiny once
  const tiny = page.getByLabel('image', { exact: true }).locator('option', { hasText: /^tiny / });
  await tiny.first().waitFor({ state: 'attached' });
  assert.equal(await tiny.count(), 1);
  await page.getByRole('button', { name: 'Create' }).click();
  await page.waitForURL(`${origin}/#/instances/webc1`);
  const placed = await ctl.json(['show', 'webc1']);
  assert.ok(placed.host === 'a1' || placed.host === 'a2', JSON.stringify(placed));
  await page.getByText('attached: what you type goes to the guest').waitFor({ timeout: BOOT_MS });
  await waitFor(async () => (await terminalText()).includes('corral-tiny ready'), BOOT_MS, 'corral-tiny ready in the page\'s console', () => '');
  // the guest really runs on the host the controller chose: that agent's own console log says so
  await agents[placed.host]!.waitConsole('webc1', /corral-tiny ready/, 30_000);
  assert.equal(await page.getByTestId('host').innerText(), placed.host);
  // the relay takes the cookie only from the controller's own origin (the page's own console is attached through
  // it): another site's page with the cookie is refused, and so is a websocket without credentials
  const cookie = await sessionCookie(context, origin);
  assert.equal(await consoleAttempt({ cookie, origin: 'https://evil.example' }), 403);
  assert.equal(await consoleAttempt({}), 401);
  // the charts, the memory map and the vCPU threads read through the controller's forwarding (every refusal fails
  // the last test), and draw what the agent answered
  await waitFor(() => ['history', 'memory', 'cpu'].every((x) => asked.includes(`/v1/instances/webc1/${x}`)), 60_000, 'the instance\'s history, memory and vCPUs read', () => asked.join(' '));
  await page.locator('table.vcpus tr[data-vcpu="0"]').waitFor({ timeout: 60_000 });
  await page.locator('figure[data-chart]').first().waitFor({ timeout: 60_000 });
  await shot('instance');

  // the overview counts it on its host
  await page.goto(`${origin}/#/`);
  const meter = page.getByRole('table', { name: 'hosts' }).locator(`tr[data-host="${placed.host}"]`).getByRole('meter', { name: `vCPUs of ${placed.host}` });
  await waitFor(async () => (await meter.getAttribute('aria-valuenow')) === String(placed.cpus), 30_000, 'the host\'s vCPUs to count the instance');
  await shot('overview-allocated');
});

test('the list shows the instance\'s host; it is stopped and deleted from the page', { skip, timeout: 180_000 }, async () => {
  const { host } = await ctl.json(['show', 'webc1']);
  await page.goto(`${origin}/#/instances`);
  const row = page.locator('[data-instance="webc1"]');
  await row.locator('.state', { hasText: 'running' }).waitFor();
  await page.getByRole('columnheader', { name: 'host' }).waitFor();
  assert.equal(await row.locator('.host-cell').innerText(), host);
  await shot('instances');
  await page.getByRole('button', { name: 'stop webc1' }).click();
  const dialog = page.getByRole('dialog');
  await dialog.getByRole('button', { name: 'Stop' }).click();
  await row.locator('.state', { hasText: 'stopped' }).waitFor({ timeout: 120_000 });
  assert.equal((await ctl.json(['show', 'webc1'])).state, 'stopped');
  await page.getByRole('button', { name: 'delete webc1' }).click();
  await dialog.getByRole('button', { name: 'Delete' }).click();
  await row.waitFor({ state: 'detached' });
  const gone = await ctl.cli(['show', 'webc1', '--json']);
  assert.equal(gone.code, 1);
  assert.match(gone.stderr, /INSTANCE_NOT_FOUND/);
  assert.equal((await agents[host]!.api('GET', '/v1/instances/webc1')).status, 404, 'gone from its host too');
});

/** The names of the items a host lists for itself (`corral volume list` / `image list` on the host's own socket). */
async function ownList(host: string, what: 'volume' | 'image'): Promise<string[]> {
  const r = await agents[host]!.cli([what, 'list', '--json']);
  assert.equal(r.code, 0, r.stderr);
  const out = JSON.parse(r.stdout) as Array<{ name: string }> | Record<string, Array<{ name: string }>>;
  return (Array.isArray(out) ? out : out[`${what}s`] ?? []).map((x) => x.name);
}

/** Dot-named folders left in a host's image store (an upload's staging folder). */
const staged = (host: string): string[] => readdirSync(join(agents[host]!.dataDir, 'images')).filter((n) => n.startsWith('.'));

test('the Volumes page makes a volume on the host its picker names, lists it with its host and deletes it there', { skip, timeout: 120_000 }, async () => {
  await page.goto(`${origin}/#/volumes`);
  const picker = page.getByLabel('host', { exact: true });
  await picker.locator('option', { hasText: 'a2' }).waitFor({ state: 'attached' });
  assert.deepEqual(await picker.locator('option').allInnerTexts(), ['a1', 'a2']);
  await picker.selectOption('a2');
  await page.getByLabel('name', { exact: true }).fill('webvol1');
  await page.getByLabel('size', { exact: true }).fill('64M');
  await page.getByRole('button', { name: 'Create volume' }).click();
  const row = page.locator('tr[data-volume="webvol1"]');
  await row.waitFor({ timeout: 30_000 });
  assert.equal(await row.count(), 1);
  assert.equal(await row.locator('.host-cell').innerText(), 'a2');
  assert.ok((await ownList('a2', 'volume')).includes('webvol1'));
  assert.ok(!(await ownList('a1', 'volume')).includes('webvol1'));
  await shot('volumes');
  await page.getByRole('button', { name: 'delete volume webvol1 on a2' }).click();
  await page.getByRole('dialog').getByRole('button', { name: 'Delete' }).click();
  await row.waitFor({ state: 'detached', timeout: 30_000 });
  assert.ok(!(await ownList('a2', 'volume')).includes('webvol1'));
});

/** Fill the Images page's upload form for `host` and send it. */
async function uploadThroughPage(host: string, name: string, file: string): Promise<void> {
  await page.goto(`${origin}/#/images`);
  const form = page.getByRole('form', { name: 'upload an image' });
  const picker = form.getByLabel('host');
  await picker.locator('option', { hasText: host }).waitFor({ state: 'attached' });
  await picker.selectOption(host);
  await form.getByLabel('name').fill(name);
  await form.getByLabel('format').selectOption('qcow2');
  await form.getByLabel('file').setInputFiles(file);
  await form.getByRole('button', { name: 'Upload image' }).click();
}

test('a qcow2 uploaded through the Images page goes to the host its picker names: both bars reach the end, the image is on that host only', { skip, timeout: 120_000 }, async () => {
  // an upload is an admin's (as an import is): the page is left (its event stream closed) and opened again with a
  // login by the controller's token file
  await page.goto('about:blank');
  await context.clearCookies();
  await logIn(page, origin, readFileSync(join(ctl.dataDir, 'token'), 'utf8').trim());
  const file = join(work, 'small.qcow2');
  execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', file, '24M']);
  await uploadThroughPage('a1', 'webimg1', file);
  await uploadFinished(page, 'webimg1');
  const row = page.locator('tr[data-image="webimg1"]');
  await row.waitFor({ timeout: 20_000 });
  assert.equal(await row.count(), 1);
  assert.equal(await row.locator('.host-cell').innerText(), 'a1');
  const img = await agents.a1!.ok('GET', '/v1/images/webimg1');
  assert.deepEqual([img.format, img.virtualSize, img.source], ['qcow2', 24 * 1024 * 1024, 'import']);
  assert.ok(!(await ownList('a2', 'image')).includes('webimg1'));
  assert.deepEqual(staged('a1'), []);
  await shot('images-upload');
});

test('a fake image uploaded to a host: the host\'s INVALID_IMAGE under the format field, nothing made there', { skip, timeout: 120_000 }, async () => {
  const file = join(work, 'not-a-qcow2.img');
  writeFileSync(file, Buffer.alloc(1024 * 1024, 0x5a));
  await uploadThroughPage('a2', 'webfake1', file);
  const err = page.locator('#f-img-format-error');
  await err.waitFor({ timeout: 60_000 });
  assert.match(await err.innerText(), /^INVALID_IMAGE: image refused: format: not a valid qcow2 image/);
  assert.equal((await agents.a2!.api('GET', '/v1/images/webfake1')).status, 404);
  assert.deepEqual(staged('a2'), []);
  await shot('images-upload-refused');
});

test('corral image import --upload --target HOST through the controller; without a target, TARGET_REQUIRED', { skip, timeout: 120_000 }, async () => {
  const file = join(work, 'cli.qcow2');
  execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', file, '16M']);
  const none = await ctl.cli(['image', 'import', 'cliimg1', file, '--upload', '--format', 'qcow2']);
  assert.equal(none.code, 1);
  assert.match(none.stderr, /TARGET_REQUIRED/);
  const made = await ctl.json(['--target', 'a2', 'image', 'import', 'cliimg1', file, '--upload', '--format', 'qcow2']);
  assert.deepEqual([made.name, made.format, made.virtualSize], ['cliimg1', 'qcow2', 16 * 1024 * 1024]);
  assert.ok((await ownList('a2', 'image')).includes('cliimg1'));
  assert.ok(!(await ownList('a1', 'image')).includes('cliimg1'));
  // the host's own refusal comes back as it is: the name is taken there
  const again = await ctl.cli(['--target', 'a2', 'image', 'import', 'cliimg1', file, '--upload', '--format', 'qcow2']);
  assert.equal(again.code, 1);
  assert.match(again.stderr, /ALREADY_EXISTS/);
  assert.deepEqual(staged('a2'), []);
});

test('an upload whose client goes away mid-way through the controller leaves nothing on the host', { skip, timeout: 60_000 }, async () => {
  const req = httpsRequest(`${origin}/v1/images/cutimg1/upload?format=raw`, {
    method: 'POST', ca: readFileSync(join(ctl.dataDir, 'cluster-ca.crt')),
    headers: { authorization: `Bearer ${readFileSync(join(ctl.dataDir, 'token'), 'utf8').trim()}`, 'content-type': 'application/octet-stream', 'content-length': String(64 * 1024 * 1024), 'x-corral-target': 'a1' },
  });
  req.on('error', () => undefined);
  req.on('response', (res) => res.resume());
  req.write(Buffer.alloc(4 * 1024 * 1024, 1));
  // the host is receiving it (its staging folder is there) when the client goes away
  await waitFor(async () => staged('a1').length > 0, 30_000, 'the upload\'s staging folder on a1');
  req.destroy();
  await waitFor(async () => staged('a1').length === 0, 30_000, 'the staging folder removed', () => staged('a1').join(' '));
  assert.equal((await agents.a1!.api('GET', '/v1/images/cutimg1')).status, 404);
});

test('the page asked nothing the controller lacks, and logged no error', { skip }, () => {
  assert.deepEqual(asked.filter((p) => p === '/v1/host' || p === '/v1/history'), []);
  assert.ok(asked.includes('/v1/pool') && asked.includes('/v1/events'), asked.join(' '));
  // only the session's check before each login, and the wrong token's login (and a late event's read of the deleted
  // webc1, which the live list may make)
  assert.deepEqual(refusals.filter((r) => r !== 'GET /v1/instances/webc1 404'), ['GET /v1/session 401', 'POST /v1/session 401', 'GET /v1/session 401', 'GET /v1/session 401']);
  assert.deepEqual(problems, []);
  assert.deepEqual(web.outside, []);
});
