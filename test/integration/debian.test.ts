/**
 * A real distribution under Corral: a Debian 12 disk (built by scripts/build-debian-image.sh with debootstrap)
 * boots from its own disk through firmware (SeaBIOS -> GRUB -> kernel -> systemd) to the login prompt on the
 * serial console, takes a root login there, and powers off on `corral stop` (ACPI power button, handled by
 * systemd-logind).
 *
 * The image (debian-image.ts) is shared with debian-cloud-init.test.ts. No cloud-init seed here: the image's
 * cloud-init finds no NoCloud datasource and stays off, so the image boots as it did before it had cloud-init.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, statSync } from 'node:fs';
import { ConsoleSession, Daemon, haveTinyBase, newDataDir } from './harness.js';
import { DEBIAN_IMAGE as IMAGE, debianSkip, ensureDebianImage } from './debian-image.js';

const PASSWORD = process.env.ROOT_PASSWORD ?? 'corral';
const skip = debianSkip();
let d: Daemon;

/** What a terminal would show: no escape sequences (bash's bracketed paste, colours), no carriage returns. */
// eslint-disable-next-line no-control-regex
const plain = (s: string): string => s.replace(/\x1b\[[0-9;?=]*[a-zA-Z]/g, '').replace(/\r/g, '');

before(async () => {
  if (skip) return;
  await ensureDebianImage();
  // With the tiny image present the daemon can probe KVM; without it, it uses TCG (what this test expects anyway).
  d = new Daemon(newDataDir(haveTinyBase()));
  await d.start();
}, { timeout: 20 * 60_000 });

after(async () => {
  if (d) await d.destroy();
});

test('the Debian 12 image imports through the CLI', { skip }, async () => {
  const r = await d.cli(['image', 'import', 'debian12', IMAGE, '--format', 'qcow2']);
  assert.equal(r.code, 0, r.stderr + r.stdout);
  const img = (await d.api('GET', '/v1/images/debian12')).body;
  assert.equal(img.name, 'debian12');
  assert.equal(img.kind, 'disk');
  assert.equal(img.format, 'qcow2');
  assert.ok(statSync(IMAGE).size > 100 * 1024 * 1024, 'a real distribution, not a toy');
});

test('it boots from its own disk through SeaBIOS and GRUB to the login prompt', { skip, timeout: 240_000 }, async (t) => {
  const t0 = Date.now();
  const r = await d.cli(['create', 'deb1', '--image', 'debian12', '--memory', '1G', '--start']);
  assert.equal(r.code, 0, r.stderr + r.stdout);
  const show = (await d.api('GET', '/v1/instances/deb1')).body;
  assert.equal(show.state, 'running');
  assert.equal(show.firmware, 'bios');
  // Firmware boot: no kernel handed over by QEMU; the guest's own GRUB finds its own kernel.
  const argv = readFileSync(`/proc/${show.pid}/cmdline`, 'utf8').split('\0');
  assert.ok(!argv.includes('-kernel') && !argv.includes('-initrd'), argv.join(' '));

  const log = await d.waitConsole('deb1', /debian12 login:/, 180_000);
  t.diagnostic(`login prompt ${((Date.now() - t0) / 1000).toFixed(1)} s after create --start (${show.accel})`);
  assert.match(log, /GNU GRUB +version 2\./, 'GRUB menu on the serial console');
  assert.match(log, /Loading Linux \S+-cloud-amd64/);
  assert.match(log, /Linux version 6\.1\.\S+-cloud-amd64/);
  // the trap: root must be by UUID (not the builder's /dev/loopNp2), and ttyS0 the last console=
  assert.match(log, /Command line: \S+ root=UUID=[0-9a-f-]{36} ro console=tty0 console=ttyS0,115200\r?\n/);
  assert.match(log, /Welcome to .*Debian GNU\/Linux 12 \(bookworm\)/);
  assert.match(log, /systemd\[1\]: Hostname set to <debian12>/);
  assert.match(log, /Power Button/, 'the ACPI button driver is loaded');
  assert.match(log, /Started .*systemd-logind/);
  assert.doesNotMatch(log, /Kernel panic|FAILED|emergency mode/);
  // no seed: the image's cloud-init finds no datasource disk and stays off (debian-cloud-init.test.ts gives it one)
  assert.doesNotMatch(log, /cloud-init\[\d+\]/);
});

test('root logs in on the serial console and the shell answers', { skip, timeout: 120_000 }, async () => {
  const c = await ConsoleSession.open(d, 'deb1');
  try {
    const from = c.buf.length;
    const fresh = (): string => c.buf.slice(from);
    // Enter makes getty print its prompt again; bytes typed before that are not trusted to arrive.
    for (let i = 0; i < 40 && !/login: ?$/.test(fresh()); i++) {
      c.send('\n');
      await new Promise((res) => setTimeout(res, 500));
    }
    c.send('root\n');
    await c.expect(/Password: ?$/, 30_000);
    c.send(`${PASSWORD}\n`);
    await c.expect(/root@debian12:~# ?$/, 60_000);
    assert.match(plain(await c.run('hostname')), /^debian12\n/m);
    const osRelease = plain(await c.run('cat /etc/os-release'));
    assert.match(osRelease, /VERSION_CODENAME=bookworm/);
    assert.match(osRelease, /PRETTY_NAME="Debian GNU\/Linux 12 \(bookworm\)"/);
    // systemd took the machine id from the VM's SMBIOS UUID (Corral's -uuid): each instance its own.
    const uuid = (await d.api('GET', '/v1/instances/deb1')).body.uuid as string;
    assert.match(plain(await c.run('cat /etc/machine-id')), new RegExp(`^${uuid.replace(/-/g, '')}\n`, 'm'));
    assert.match(plain(await c.run('findmnt -no SOURCE /')), /^\/dev\/vda2\n/m);
  } finally {
    await c.close();
  }
});

test('corral stop powers it off cleanly through systemd (ACPI power button)', { skip, timeout: 150_000 }, async (t) => {
  const before = (await d.consoleLog('deb1')).length;
  const t0 = Date.now();
  const r = await d.cli(['stop', 'deb1', '--timeout', '90'], undefined, 120_000);
  const secs = (Date.now() - t0) / 1000;
  assert.equal(r.code, 0, r.stderr + r.stdout);
  const show = await d.waitState('deb1', 'stopped', 10_000);
  assert.equal(show.pid, null);
  t.diagnostic(`stopped ${secs.toFixed(1)} s after corral stop`);
  assert.ok(secs < 80, `the guest powered itself off (${secs} s), it was not killed at the timeout`);
  const tail = (await d.consoleLog('deb1')).slice(before);
  assert.match(tail, /Power key pressed|Powering off|System Power Off/, 'systemd ran its shutdown');
  assert.match(tail, /Reached target .*poweroff\.target|System Power Off/);
  assert.match(tail, /reboot: Power down/);
});

test('the instance is deleted afterwards', { skip }, async () => {
  const r = await d.cli(['delete', 'deb1']);
  assert.equal(r.code, 0, r.stderr + r.stdout);
  assert.equal((await d.api('GET', '/v1/instances/deb1')).status, 404);
});
