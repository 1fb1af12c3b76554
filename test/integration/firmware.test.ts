/**
 * An imported disk boots as a real disk does: firmware (SeaBIOS by default, OVMF with --firmware uefi) loads
 * the bootloader from the disk; no -kernel on QEMU's command line.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ConsoleSession, Daemon, REPO, haveTinyBase, newDataDir } from './harness.js';

const run = promisify(execFile);
const skip = haveTinyBase() ? false : 'the tiny image is not built (run make test-base)';
let d: Daemon;
let disk: string;

before(async () => {
  if (skip) return;
  d = new Daemon(newDataDir());
  await d.start();
  const tiny = join(d.dataDir, 'images', 'tiny');
  disk = join(d.dataDir, 'boot-disk.raw');
  await run('bash', [join(REPO, 'test/fixtures/build-boot-disk.sh'), disk, join(tiny, 'vmlinuz'), join(tiny, 'initrd.img'), join(tiny, 'disk.qcow2')]);
});
after(async () => {
  if (d) await d.destroy();
});

test('import a raw boot disk (format given, inspected) and list it', { skip, timeout: 60_000 }, async () => {
  const r = await d.cli(['image', 'import', 'diskboot', disk, '--format', 'raw', '--json']);
  assert.equal(r.code, 0, r.stderr);
  const img = JSON.parse(r.stdout);
  assert.equal(img.name, 'diskboot');
  assert.equal(img.kind, 'disk');
  assert.equal(img.format, 'raw');
  assert.ok(existsSync(img.disk));
  const list = JSON.parse((await d.cli(['image', 'list', '--json'])).stdout);
  assert.deepEqual(list.images.map((i: { name: string }) => i.name).sort(), ['diskboot', 'tiny']);
});

for (const firmware of ['bios', 'uefi'] as const) {
  test(`the disk boots through ${firmware === 'bios' ? 'SeaBIOS' : 'OVMF (UEFI)'} to "corral-tiny ready"`, { skip, timeout: 120_000 }, async () => {
    const name = `fw-${firmware}`;
    const c = await d.api('POST', '/v1/instances', { name, image: 'diskboot', firmware, memory: '256M', start: true });
    assert.equal(c.status, 201, JSON.stringify(c.body));
    const argv = readFileSync(`/proc/${c.body.pid}/cmdline`, 'utf8').split('\0');
    assert.equal(argv.includes('-kernel'), false, 'firmware boot, not direct kernel boot');
    if (firmware === 'uefi') {
      assert.ok(argv.some((a) => a.includes('OVMF_CODE')), 'OVMF code is mapped');
      assert.ok(existsSync(join(d.dataDir, 'instances', c.body.uuid, 'efivars.fd')), 'the instance has its own UEFI variable store');
    }
    await d.waitConsole(name, /corral-tiny ready/, 90_000);
    const s = await ConsoleSession.open(d, name);
    assert.match(await s.run('cat /proc/cmdline'), /corral\.hostname=diskboot/);
    await s.close();
    const stop = await d.api('POST', `/v1/instances/${name}/stop`, { timeout: 30 });
    assert.equal(stop.body.state, 'stopped');
    assert.match(await d.consoleLog(name), /corral-tiny poweroff/);
  });
}

test('an image in use cannot be deleted', { skip }, async () => {
  const r = await d.api('DELETE', '/v1/images/diskboot');
  assert.equal(r.status, 409);
  assert.equal(r.body.error.code, 'IMAGE_IN_USE');
});
