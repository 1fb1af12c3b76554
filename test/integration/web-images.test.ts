/**
 * The Images page's upload and the instance page's resize, in a real browser (Debian's Chromium, playwright-core:
 * web-browser.ts): a small qcow2 made with qemu-img is uploaded through the form (its progress bars reach the end,
 * the image is listed and the API shows it), a file that is not what its format says is refused with the API's
 * code under the format field; a stopped tiny VM's vCPUs and memory are changed through its page (a refusal shown
 * under its field first), then, started with them (one vCPU thread in /proc of its QEMU), it gains a vCPU live:
 * a second vCPU thread.
 * Screenshots go to $CORRAL_ARTIFACTS.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { Daemon, useDaemon, waitFor } from './harness.js';
import { logIn, openBrowser, uploadFinished, WEB_SKIP, type WebBrowser, webListener } from './web-browser.js';

const skip = WEB_SKIP;
const { origin: ORIGIN, args: LISTEN } = webListener();
const BOOT_MS = 180_000;
const MiB = 2 ** 20;
const VM = 'rs1';

let d: Daemon;
useDaemon((x) => { d = x; }, { args: LISTEN });

let web: WebBrowser;
let page: Page;
const work = mkdtempSync(join(tmpdir(), 'corral-web-images-'));

let setup: Promise<void> | null = null;
const ready = (): Promise<void> => (setup ??= (async () => {
  web = await openBrowser(ORIGIN);
  page = web.page;
  await logIn(page, ORIGIN, readFileSync(join(d.dataDir, 'token'), 'utf8').trim());
})());

after(async () => {
  await web?.browser.close();
});

/** Fill the upload form and send it. */
async function uploadThroughPage(name: string, format: string, file: string): Promise<void> {
  await page.goto(`${ORIGIN}/#/images`);
  const form = page.getByRole('form', { name: 'upload an image' });
  await form.getByLabel('name').fill(name);
  await form.getByLabel('format').selectOption(format);
  await form.getByLabel('file').setInputFiles(file);
  await form.getByRole('button', { name: 'Upload image' }).click();
}

test('a qcow2 uploaded through the Images page: the upload and import bars reach the end and the image is listed', { skip, timeout: 120_000 }, async () => {
  await ready();
  const file = join(work, 'small.qcow2');
  execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', file, '24M']);
  await uploadThroughPage('uploaded1', 'qcow2', file);
  await uploadFinished(page, 'uploaded1');
  await page.getByRole('cell', { name: 'uploaded1', exact: true }).waitFor({ timeout: 20_000 });
  const img = await d.ok('GET', '/v1/images/uploaded1');
  assert.equal(img.format, 'qcow2');
  assert.equal(img.virtualSize, 24 * MiB);
  assert.equal(img.source, 'import');
  // nothing of the upload stays beside the image: no staging folder
  assert.deepEqual(readdirSync(join(d.dataDir, 'images')).filter((n) => n.startsWith('.')), []);
  await web.shot('images-upload-done');
});

test('a file that is not what its format says: the API\'s INVALID_IMAGE is shown under the format field, no image made', { skip, timeout: 120_000 }, async () => {
  await ready();
  const file = join(work, 'not-a-qcow2.img');
  writeFileSync(file, Buffer.alloc(1024 * 1024, 0x5a));
  await uploadThroughPage('fake1', 'qcow2', file);
  const err = page.locator('#f-img-format-error');
  await err.waitFor({ timeout: 60_000 });
  assert.match(await err.innerText(), /^INVALID_IMAGE: image refused: format: not a valid qcow2 image/);
  assert.equal(await page.locator('#f-img-format').getAttribute('aria-invalid'), 'true');
  assert.equal((await d.api('GET', '/v1/images/fake1')).status, 404);
  assert.deepEqual(readdirSync(join(d.dataDir, 'images')).filter((n) => n.startsWith('.')), []);
  await web.shot('images-upload-refused');
});

/** Open the resize form on the instance page, fill it and send it. */
async function resizeThroughPage(cpus: string, memory: string): Promise<void> {
  await page.goto(`${ORIGIN}/#/instances/${VM}`);
  await page.getByRole('button', { name: `resize ${VM}` }).click();
  const form = page.getByRole('form', { name: `resize ${VM}` });
  await form.getByLabel('vCPUs').fill(cpus);
  await form.getByLabel('memory').fill(memory);
  await form.getByRole('button', { name: 'Resize' }).click();
}

test('resize through the instance page: stopped, its next start\'s vCPUs and memory (a refusal under its field); started with them, a vCPU hotplugged live', { skip, timeout: BOOT_MS + 120_000 }, async () => {
  await ready();
  await d.ok('POST', '/v1/instances', { name: VM, image: 'tiny', cpus: 2, maxCpus: 2, memory: '128M', start: false }, 201);

  await resizeThroughPage('5', '128M');
  const err = page.locator('#f-resize-cpus-error');
  await err.waitFor({ timeout: 30_000 });
  assert.match(await err.innerText(), /^INVALID_SPEC: cpus: 5 vCPUs is more than maxCpus \(2\)/);
  await web.shot('instance-resize-refused');

  await page.getByRole('form', { name: `resize ${VM}` }).getByLabel('vCPUs').fill('1');
  await page.getByRole('form', { name: `resize ${VM}` }).getByLabel('memory').fill('192M');
  await page.getByRole('form', { name: `resize ${VM}` }).getByRole('button', { name: 'Resize' }).click();
  await page.getByRole('form', { name: `resize ${VM}` }).waitFor({ state: 'detached', timeout: 30_000 });
  let v = await d.ok('GET', `/v1/instances/${VM}`);
  assert.equal(v.cpus, 1);
  assert.equal(v.memory, 192 * MiB);
  await page.locator('dd', { hasText: '192 MiB' }).first().waitFor({ timeout: 20_000 });

  // started, it boots with them; a second vCPU is then hotplugged from the page
  await d.ok('POST', `/v1/instances/${VM}/start`, {});
  await d.waitConsole(VM, /corral-tiny ready/, BOOT_MS);
  v = await d.ok('GET', `/v1/instances/${VM}`);
  const pid = v.pid as number;
  const vcpuThreads = (): string[] => readdirSync(`/proc/${pid}/task`).map((t) => readFileSync(`/proc/${pid}/task/${t}/comm`, 'utf8').trim()).filter((c) => /^CPU \d+\//.test(c));
  assert.equal(vcpuThreads().length, 1, vcpuThreads().join(', '));
  await page.getByTestId('state').getByText('running').waitFor({ timeout: 30_000 });
  await resizeThroughPage('2', '192M');
  await page.getByRole('form', { name: `resize ${VM}` }).waitFor({ state: 'detached', timeout: 60_000 });
  await waitFor(async () => vcpuThreads().length === 2, 30_000, 'a second vCPU thread in QEMU', () => vcpuThreads().join(', '));
  assert.equal((await d.ok('GET', `/v1/instances/${VM}/cpu`)).cpus, 2);
  await page.locator('dt:text-is("vCPUs") + dd').getByText('2', { exact: true }).waitFor({ timeout: 30_000 });
  await web.shot('instance-resized-live');
});
