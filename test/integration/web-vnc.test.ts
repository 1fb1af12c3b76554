/**
 * The graphical console in a real browser: a tiny VM created with display vnc shows its screen in the web console's
 * noVNC canvas (pixels read back from the canvas), and what is typed there reaches the guest's shell on tty1; its
 * QEMU serves VNC on a unix socket in its runtime dir and listens on no TCP port; the VNC websocket without
 * credentials is 401, and for a VM without a display NO_DISPLAY, which the page says in words. Screenshots go to
 * $CORRAL_ARTIFACTS (default /tmp/corral-web-artifacts).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, readlinkSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { Daemon, useDaemon, waitFor } from './harness.js';
import { logIn, openBrowser, sessionCookie, WEB_SKIP, websocketAttempt, type WebBrowser, webListener } from './web-browser.js';

const skip = WEB_SKIP;
const { port: PORT, origin: ORIGIN, args: LISTEN } = webListener();
const BOOT_MS = 180_000;

let d: Daemon;
useDaemon((x) => { d = x; }, { args: LISTEN });

let b: WebBrowser;
let page: Page;

before(async () => {
  if (skip) return;
  b = await openBrowser(ORIGIN);
  page = b.page;
  // useDaemon's own `before` runs alongside this one (node 20 starts a file's hooks together): wait for its daemon
  await waitFor(async () => d !== undefined && (await d.api('GET', '/v1/instances').then((r) => r.status === 200, () => false)), 60_000, 'the daemon');
  // one guest for the file, booting while the page logs in; one without a display, never started
  await d.ok('POST', '/v1/instances', { name: 'vnc1', image: 'tiny', memory: '128M', display: 'vnc', start: true }, 201);
  await d.ok('POST', '/v1/instances', { name: 'plain1', image: 'tiny', memory: '64M' }, 201);
  await logIn(page, ORIGIN, readFileSync(join(d.dataDir, 'token'), 'utf8').trim());
});

after(async () => {
  await b?.browser.close();
});

/** Pixels of the graphical console's canvas brighter than the VGA text background (black), and its size. */
function litPixels(name: string): Promise<{ lit: number; width: number; height: number }> {
  return page.evaluate((label) => {
    const canvas = document.querySelector(`[aria-label="${label}"] canvas`) as HTMLCanvasElement | null;
    if (!canvas || canvas.width === 0 || canvas.height === 0) return { lit: 0, width: 0, height: 0 };
    const px = canvas.getContext('2d')!.getImageData(0, 0, canvas.width, canvas.height).data;
    let lit = 0;
    for (let i = 0; i < px.length; i += 4) if (px[i]! + px[i + 1]! + px[i + 2]! > 150) lit++;
    return { lit, width: canvas.width, height: canvas.height };
  }, `graphical console of ${name}`);
}

test('the create form gives a new instance a display unless told otherwise', { skip, timeout: 60_000 }, async () => {
  await page.goto(`${ORIGIN}/#/instances/new`);
  assert.equal(await page.getByLabel('display', { exact: true }).inputValue(), 'vnc');
});

test('QEMU serves VNC on a unix socket in the instance\'s runtime dir, owned as its other sockets, and listens on no TCP port', { skip, timeout: BOOT_MS }, async () => {
  const vm = await d.ok('GET', '/v1/instances/vnc1');
  assert.equal(vm.state, 'running');
  assert.equal(vm.spec.display, 'vnc');
  const argv = readFileSync(`/proc/${vm.pid}/cmdline`, 'utf8').split('\0');
  const socket = join(d.dataDir, 'run', vm.uuid, 'vnc.sock');
  assert.deepEqual(argv.flatMap((a, i) => (a === '-vnc' ? [argv[i + 1]] : [])), [`unix:${socket}`]);
  assert.ok(argv.includes('{"driver":"VGA","id":"video0"}'));
  const st = statSync(socket);
  assert.ok(st.isSocket());
  assert.equal(st.uid, statSync(join(d.dataDir, 'run', vm.uuid, 'qmp.sock')).uid, 'QEMU made it, as its QMP socket');
  // no TCP socket of QEMU's listens (state 0A in /proc/net/tcp*), on 59xx or anywhere else
  const inodes = new Set(readdirSync(`/proc/${vm.pid}/fd`).map((fd) => { try { return readlinkSync(`/proc/${vm.pid}/fd/${fd}`); } catch { return ''; } })
    .map((l) => /^socket:\[(\d+)\]$/.exec(l)?.[1]).filter((x): x is string => x !== undefined));
  assert.ok(inodes.size > 0, 'QEMU\'s sockets are seen');
  const listening = ['/proc/net/tcp', '/proc/net/tcp6'].flatMap((f) => readFileSync(f, 'utf8').split('\n').slice(1))
    .map((l) => l.trim().split(/\s+/)).filter((c) => c[3] === '0A');
  assert.deepEqual(listening.filter((c) => inodes.has(c[9]!)).map((c) => c[1]), [], 'QEMU listens on no TCP port');
  assert.deepEqual(listening.map((c) => parseInt(c[1]!.split(':')[1]!, 16)).filter((p) => p >= 5900 && p < 6000), [], 'nothing listens on the VNC ports');
});

test('the graphical console shows the guest\'s screen, and what is typed there reaches the guest\'s shell', { skip, timeout: BOOT_MS + 180_000 }, async () => {
  await page.goto(`${ORIGIN}/#/instances/vnc1`);
  await page.getByText('connected: click the screen to type into the guest').waitFor({ timeout: 60_000 });
  await waitFor(async () => (await litPixels('vnc1')).lit > 500, BOOT_MS, 'a screen that is not blank');
  await d.waitConsole('vnc1', /corral-tiny ready/, BOOT_MS);
  const booted = await litPixels('vnc1');
  console.log(`graphical console: ${booted.width}x${booted.height}, ${booted.lit} pixels lit after boot`);
  await b.shot('vnc-booted');
  // `clear` typed into the canvas empties the screen but for the prompt (tty1's shell may still be starting: again until it does)
  await page.getByRole('application', { name: 'graphical console of vnc1' }).click();
  let cleared = booted;
  await waitFor(async () => {
    await page.keyboard.type('clear');
    await page.keyboard.press('Enter');
    await new Promise((r) => setTimeout(r, 1500));
    cleared = await litPixels('vnc1');
    return cleared.lit < booted.lit / 2;
  }, 90_000, 'the screen cleared by a command typed in the page', () => `${cleared.lit} pixels lit`);
  // then the guest prints 31 lines of digits on it
  await page.keyboard.type('seq 100000 100030');
  await page.keyboard.press('Enter');
  let full = cleared;
  await waitFor(async () => {
    full = await litPixels('vnc1');
    return full.lit > cleared.lit + 3000;
  }, 60_000, 'the lines the guest printed on its screen', () => `${full.lit} pixels lit (${cleared.lit} when cleared)`);
  console.log(`graphical console: ${cleared.lit} pixels lit when cleared, ${full.lit} after seq`);
  await b.shot('vnc-typed');
  // the serial console saw none of it: the screen is its own terminal
  assert.doesNotMatch(await d.consoleLog('vnc1'), /100030/);
});

test('the VNC websocket: 401 without credentials, NO_DISPLAY for a VM without a display, RFB with the session', { skip, timeout: 60_000 }, async () => {
  const api = { port: PORT, dataDir: d.dataDir };
  const anon = await websocketAttempt(api, '/v1/instances/vnc1/vnc');
  assert.ok(!anon.open);
  assert.equal(anon.status, 401);
  assert.equal(anon.body.error.code, 'UNAUTHORIZED');
  const cookie = await sessionCookie(b.context, ORIGIN);
  const plain = await websocketAttempt(api, '/v1/instances/plain1/vnc', { cookie, origin: ORIGIN });
  assert.ok(!plain.open);
  assert.equal(plain.status, 409);
  assert.equal(plain.body.error.code, 'NO_DISPLAY');
  assert.match(plain.body.error.message, /display=vnc/);
  const foreign = await websocketAttempt(api, '/v1/instances/vnc1/vnc', { cookie, origin: 'https://evil.example' });
  assert.ok(!foreign.open);
  assert.equal(foreign.status, 403, 'another origin\'s page may not open it with the cookie');
  const ok = await websocketAttempt(api, '/v1/instances/vnc1/vnc', { cookie, origin: ORIGIN });
  assert.ok(ok.open);
  assert.equal(ok.first.toString(), 'RFB 003.008\n', 'QEMU\'s VNC server greets through the proxy');
  // the page says in words that there is no screen, and opens no websocket for it
  await page.goto(`${ORIGIN}/#/instances/plain1`);
  await page.getByTestId('no-display').waitFor();
  assert.match(await page.getByTestId('no-display').innerText(), /has no display/);
  await b.shot('vnc-no-display');
  assert.deepEqual(b.outside, [], 'nothing is fetched from outside the daemon');
});
