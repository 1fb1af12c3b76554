/**
 * cloud-init on a real distribution: the Debian 12 test image (debian-image.ts; it ships cloud-init, openssh-server
 * and qemu-guest-agent) created with `--ssh-key` and a forward to guest port 22 boots with Corral's NoCloud seed: ssh
 * with the generated key as Debian's default user `debian` runs `hostname` and gets the instance's name. The guest's
 * agent answers `corral exec` and gives `corral show` the guest's address. Bad cloud-init input is refused by the API
 * with INVALID_SPEC naming the field, and nothing is made.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Daemon, haveTinyBase, newDataDir, waitFor } from './harness.js';
import { DEBIAN_IMAGE, debianSkip, ensureDebianImage } from './debian-image.js';
import { freePort } from './cluster-harness.js';

const sh = promisify(execFile);
const skip = debianSkip();
let d: Daemon;
let keyDir = '';
let port = 0;

before(async () => {
  if (skip) return;
  await ensureDebianImage();
  d = new Daemon(newDataDir(haveTinyBase()));
  await d.start();
  const r = await d.cli(['image', 'import', 'debian12', DEBIAN_IMAGE, '--format', 'qcow2']);
  assert.equal(r.code, 0, r.stderr + r.stdout);
  keyDir = mkdtempSync(join(tmpdir(), 'corral-ci-key-'));
  await sh('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'corral-test', '-f', join(keyDir, 'id')]);
  port = await freePort();
}, { timeout: 20 * 60_000 });

after(async () => {
  if (d) await d.destroy();
  if (keyDir) rmSync(keyDir, { recursive: true, force: true });
});

test('create --ssh-key: the seed is a read-only disk QEMU may only read; show says cloud-init and the hostname', { skip, timeout: 120_000 }, async () => {
  const r = await d.cli(['create', 'deb-ci', '--image', 'debian12', '--memory', '1G', '--ssh-key', join(keyDir, 'id.pub'), '--forward', `tcp:${port}:22`, '--start', '--json']);
  assert.equal(r.code, 0, r.stderr + r.stdout);
  const inst = JSON.parse(r.stdout);
  assert.equal(inst.spec.cloudInit.hostname, 'deb-ci');
  assert.deepEqual(inst.spec.cloudInit.sshKeys, [readFileSync(join(keyDir, 'id.pub'), 'utf8').trim()]);
  const argv = readFileSync(`/proc/${inst.pid}/cmdline`, 'utf8').split('\0');
  const seed = join(d.dataDir, 'instances', inst.uuid, 'seed.iso');
  const blockdev = argv.find((a) => a.includes('"node-name":"seed0-fmt"'));
  assert.ok(blockdev, argv.join(' '));
  const node = JSON.parse(blockdev) as { driver: string; 'read-only': boolean; file: { filename: string; 'read-only': boolean } };
  assert.deepEqual([node.driver, node['read-only'], node.file.filename, node.file['read-only']], ['raw', true, seed, true]);
  assert.ok(argv.some((a) => a.includes('"driver":"virtio-blk-pci","drive":"seed0-fmt"') && a.includes('"serial":"cidata"')));
  const st = statSync(seed);
  assert.equal(st.uid, 0, 'root owns the seed');
  assert.equal(st.mode & 0o777, 0o640, 'QEMU\'s group may read it, not write it');
  const { stdout: label } = await sh('blkid', ['-o', 'value', '-s', 'LABEL', seed]);
  assert.equal(label.trim(), 'cidata');
  const show = await d.cli(['show', 'deb-ci']);
  assert.match(show.stdout, /^cloud-init:\s+yes \(NoCloud seed\), hostname deb-ci, 1 SSH key, user-data #cloud-config \(Corral's\)$/m);
});

test('ssh with the generated key as debian through the forward runs hostname: the instance\'s name', { skip, timeout: 600_000 }, async (t) => {
  const t0 = Date.now();
  let last = '';
  await waitFor(async () => {
    try {
      const { stdout } = await sh('ssh', ['-i', join(keyDir, 'id'), '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'BatchMode=yes',
        '-o', 'ConnectTimeout=10', '-p', String(port), 'debian@127.0.0.1', 'hostname'], { timeout: 30_000 });
      last = stdout;
      return stdout === 'deb-ci\n';
    } catch (e) {
      last = String((e as { stderr?: string }).stderr ?? e).slice(-300);
      return false;
    }
  }, 540_000, 'ssh debian@127.0.0.1 hostname', () => last);
  t.diagnostic(`ssh answered ${((Date.now() - t0) / 1000).toFixed(0)} s after the create`);
  const log = await d.consoleLog('deb-ci');
  assert.match(log, /cloud-init\[\d+\]: .*Cloud-init v\. 22\.4/);
  assert.doesNotMatch(log, /Kernel panic|emergency mode/);
});

test('the Debian guest\'s agent: exec returns output and exit status, show has its address', { skip, timeout: 240_000 }, async () => {
  let r = await d.cli(['exec', 'deb-ci', '--', 'sh', '-c', 'hostname; cat /var/lib/cloud/data/instance-id; exit 3']);
  const uuid = (await d.ok('GET', '/v1/instances/deb-ci')).uuid as string;
  assert.equal(r.code, 3, r.stderr);
  assert.equal(r.stdout, `deb-ci\n${uuid}\n`, 'cloud-init took the instance\'s uuid as its instance-id');
  r = await d.cli(['exec', 'deb-ci', '--', 'id', '-un', 'debian']);
  assert.equal(r.code, 0, r.stderr);
  let shown: any;
  await waitFor(async () => {
    shown = await d.ok('GET', '/v1/instances/deb-ci');
    return shown.guest?.interfaces?.some((i: any) => i.addresses.some((a: any) => a.address === '10.0.2.15'));
  }, 120_000, 'the guest\'s address in show', () => JSON.stringify(shown?.guest));
  const text = await d.cli(['show', 'deb-ci']);
  assert.match(text.stdout, /^guest os:\s+Debian GNU\/Linux 12 \(bookworm\)/m);
  assert.match(text.stdout, /^guest ips:\s+.*10\.0\.2\.15\/24/m);
});

test('bad cloud-init input through the API: INVALID_SPEC naming the field, nothing made', { skip, timeout: 60_000 }, async () => {
  const dirs = (): string[] => readdirSync(join(d.dataDir, 'instances')).sort();
  const before = dirs();
  const pub = readFileSync(join(keyDir, 'id.pub'), 'utf8').trim();
  const cases: Array<[Record<string, unknown>, string]> = [
    [{ sshKeys: [pub.replace('ssh-ed25519', 'ssh-rsa')] }, 'sshKeys[0]'],
    [{ sshKeys: [readFileSync(join(keyDir, 'id'), 'utf8')] }, 'sshKeys[0]'],
    [{ userData: 'packages: [htop]\n' }, 'userData'],
    [{ userData: `#cloud-config\nruncmd:\n  - ${'x'.repeat(300 * 1024)}\n` }, 'userData'],
    [{ hostname: 'bad_host' }, 'hostname'],
    [{ networkConfig: 'ethernets: {}\n' }, 'networkConfig'],
  ];
  for (const [fields, field] of cases) {
    const r = await d.api('POST', '/v1/instances', { name: 'deb-bad', image: 'debian12', ...fields });
    assert.equal(r.status, 400, JSON.stringify(r.body));
    assert.equal(r.body.error.code, 'INVALID_SPEC');
    assert.equal(r.body.error.field, field, r.body.error.message);
    assert.equal((await d.api('GET', '/v1/instances/deb-bad')).status, 404);
  }
  assert.deepEqual(dirs(), before, 'no instance dir was made');
  // the CLI reads the file and the daemon refuses it the same way
  const c = await d.cli(['create', 'deb-bad', '--image', 'debian12', '--ssh-key', join(keyDir, 'id')]);
  assert.equal(c.code, 1);
  assert.match(c.stderr, /INVALID_SPEC: sshKeys\[0\]: this is a private key/);
});

test('delete removes the instance with its seed', { skip, timeout: 120_000 }, async () => {
  const uuid = (await d.ok('GET', '/v1/instances/deb-ci')).uuid as string;
  const r = await d.cli(['delete', 'deb-ci', '--force']);
  assert.equal(r.code, 0, r.stderr + r.stdout);
  assert.ok(!readdirSync(join(d.dataDir, 'instances')).includes(uuid));
});
