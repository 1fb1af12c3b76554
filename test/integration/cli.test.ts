/** The `corral` command against a real daemon and a real guest: what a user types and sees. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { CLI, Daemon, SKIP_NO_TINY, useDaemon } from './harness.js';

const skip = SKIP_NO_TINY;
let d: Daemon;
useDaemon((x) => { d = x; });

test('create --start, list and show, in words and in JSON', { skip, timeout: 90_000 }, async () => {
  const c = await d.cli(['create', 'c1', '--image', 'tiny', '--cpus', '1', '--memory', '192M', '--start']);
  assert.equal(c.code, 0, c.stderr);
  assert.match(c.stdout, /c1/);
  const list = await d.cli(['list', '--json']);
  const inst = JSON.parse(list.stdout).instances.find((i: { name: string }) => i.name === 'c1');
  assert.equal(inst.state, 'running');
  assert.equal(inst.memory, 192 * 1024 * 1024);
  const table = await d.cli(['list']);
  assert.match(table.stdout, /NAME\s+STATE/);
  assert.match(table.stdout, /c1\s+running/);
  const show = await d.cli(['show', 'c1']);
  assert.match(show.stdout, new RegExp(`pid:?\\s+${inst.pid}`));
  await d.waitConsole('c1', /corral-tiny ready/);
});

test('console with piped stdin runs the commands and prints the guest\'s answers', { skip, timeout: 60_000 }, async () => {
  const r = await d.cli(['console', 'c1'], 'echo piped-$((40+2))\nuname -m\n');
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /piped-42/);
  assert.match(r.stdout, /x86_64/);
  // busybox asks the terminal where the cursor is at each prompt: a pipe does not get the question
  assert.ok(!r.stdout.includes('\x1b[6n'), JSON.stringify(r.stdout));
});

test('console --log prints the boot so far, opened by the daemon\'s separator line, without terminal queries', { skip }, async () => {
  const r = await d.cli(['console', 'c1', '--log']);
  assert.equal(r.code, 0);
  assert.match(r.stdout, /^----- corral: QEMU starting \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ \(tcg\) -----\r\n/);
  assert.match(r.stdout, /corral-tiny ready/);
  assert.match(r.stdout, /piped-42/);
  assert.ok((await d.consoleLog('c1')).includes('\x1b[6n'), 'the raw log (the API) keeps the guest\'s bytes as they were');
  assert.ok(!r.stdout.includes('\x1b[6n'));
});

test('errors are coded on stderr with exit 1', { skip }, async () => {
  const r = await d.cli(['resume', 'c1']);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /^error: INVALID_STATE: .*running/m);
  const bad = await d.cli(['create', 'Bad,Name', '--image', 'tiny']);
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /INVALID_SPEC/);
  const del = await d.cli(['delete', 'c1']);
  assert.equal(del.code, 1);
  assert.match(del.stderr, /^error: INVALID_STATE: cannot delete instance "c1": it is running .*\(use --force to kill and delete it\)\n$/);
  const typo = await d.cli(['show', 'c']);
  assert.equal(typo.code, 1);
  assert.equal(typo.stderr, 'error: INSTANCE_NOT_FOUND: instance "c" not found (did you mean "c1"?)\n');
  const json = await d.cli(['show', 'c', '--json']);
  assert.equal(json.code, 1);
  assert.equal(json.stdout, '');
  assert.deepEqual(JSON.parse(json.stderr).error, { code: 'INSTANCE_NOT_FOUND', message: 'instance "c" not found (did you mean "c1"?)', name: 'c', didYouMean: 'c1' });
});

test('corral events | head -1 prints one line and ends quietly, without a stack trace', { skip, timeout: 30_000 }, async () => {
  const sh = spawn('bash', ['-c', 'set -o pipefail; "$0" "$1" events --since 0 | head -1', process.execPath, CLI], { env: d.env(), stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  sh.stderr.on('data', (c: Buffer) => { err += c.toString(); });
  const exited = new Promise<number | null>((r) => sh.on('close', (code) => r(code)));
  await new Promise<void>((r) => sh.stdout.on('data', (c: Buffer) => { out += c.toString(); r(); }));
  // `corral events` notices the reader has gone at its next write: give it events to write
  assert.equal((await d.cli(['pause', 'c1'])).code, 0);
  assert.equal((await d.cli(['resume', 'c1'])).code, 0);
  assert.equal(await exited, 0, err);
  assert.equal(err, '');
  assert.match(out, /^\S+ daemon\.started - \{"pid":\d+\}\n$/);
});

test('--disk grows the root disk overlay, and the guest sees the size', { skip, timeout: 90_000 }, async () => {
  const c = await d.cli(['create', 'big', '--image', 'tiny', '--disk', '1G', '--memory', '128M', '--start', '--json']);
  assert.equal(c.code, 0, c.stderr);
  const inst = JSON.parse(c.stdout);
  await d.waitConsole('big', /corral-tiny ready/);
  const r = await d.cli(['console', 'big'], 'cat /sys/block/vda/size\n');
  assert.match(r.stdout, /^2097152\s*$/m, r.stdout);
  assert.ok(inst.disk.path.endsWith('root.qcow2'));
  await d.cli(['kill', 'big']);
  await d.cli(['delete', 'big']);
});

test('devices names each device\'s approach and data path, matching the QEMU that runs', { skip }, async () => {
  const r = await d.cli(['devices', 'c1', '--json']);
  assert.equal(r.code, 0, r.stderr);
  const devs = JSON.parse(r.stdout).devices as Array<{ kind: string; approach: string; qemuDevice: string; dataPath: string }>;
  const show = JSON.parse((await d.cli(['show', 'c1', '--json'])).stdout);
  const disk = devs.find((x) => x.kind === 'disk')!;
  assert.equal(disk.approach, 'paravirtual');
  assert.ok(disk.dataPath.endsWith(show.disk.path));
  const argv = readFileSync(`/proc/${show.pid}/cmdline`, 'utf8');
  for (const x of devs.filter((y) => y.kind !== 'other')) assert.ok(argv.includes(`"driver":"${x.qemuDevice}"`), x.qemuDevice);
  const table = await d.cli(['devices', 'c1']);
  assert.match(table.stdout, /disk\s+disk0\s+paravirtual\s+virtio-blk-pci\s+guest virtio-blk ->/);
});

test('stop says when it had to kill: the guest did not power off within the timeout', { skip, timeout: 60_000 }, async () => {
  const c = await d.cli(['create', 'k1', '--image', 'tiny', '--memory', '128M', '--start']);
  assert.equal(c.code, 0, c.stderr);
  const s = await d.cli(['stop', 'k1', '--timeout', '0']);
  assert.equal(s.code, 0, s.stderr);
  assert.equal(s.stdout, 'k1: stopped (killed: the guest did not power off within 0s)\n');
  await d.cli(['start', 'k1']);
  // a restart's stop that had to kill says so too, though the instance runs again afterwards
  const r = await d.cli(['restart', 'k1', '--timeout', '0']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^k1: running \(pid \d+\) \(killed: the guest did not power off within 0s\)\n$/);
  const j = await d.cli(['stop', 'k1', '--timeout', '0', '--json']);
  assert.equal(JSON.parse(j.stdout).killed, true);
  // each start opened the console log with a separator line
  assert.equal((await d.consoleLog('k1')).match(/^----- corral: QEMU starting .* -----\r$/gm)?.length, 3);
  await d.cli(['delete', 'k1']);
});

test('stop, then delete', { skip, timeout: 60_000 }, async () => {
  const s = await d.cli(['stop', 'c1', '--timeout', '30']);
  assert.equal(s.code, 0, s.stderr);
  assert.equal(s.stdout, 'c1: stopped\n'); // the guest powered off: nothing was killed
  const del = await d.cli(['delete', 'c1']);
  assert.equal(del.code, 0, del.stderr);
  assert.equal((await d.cli(['list', '--json'])).stdout.includes('"c1"'), false);
});
