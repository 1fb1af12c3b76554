/** The compiled CLI against a fake API server on a unix socket (and on TCP with a token). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { IMAGE, INSTANCE, runCli, startFakeApi, useFakeApi } from './fake-api.js';
import { testPair } from '../tls-pair.js';

const fake = useFakeApi();

function lastRequest(method: string, url: string): { body: string; headers: Record<string, unknown> } {
  const r = [...fake.api.requests].reverse().find((x) => x.method === method && x.url === url);
  assert.ok(r, `expected a ${method} ${url} request`);
  return r;
}

test('list --json prints exactly the API JSON, pretty-printed', async () => {
  const r = await runCli(['list', '--json'], fake.env);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stderr, '');
  const parsed = JSON.parse(r.stdout) as { instances: unknown[] };
  assert.equal(parsed.instances.length, 2);
  assert.deepEqual(parsed.instances[0], INSTANCE);
  assert.equal(r.stdout, `${JSON.stringify(parsed, null, 2)}\n`);
});

test('list prints a table with human sizes and dashes for nulls', async () => {
  const r = await runCli(['list'], fake.env);
  assert.equal(r.code, 0, r.stderr);
  const lines = r.stdout.trimEnd().split('\n');
  assert.match(lines[0] ?? '', /^NAME\s+STATE\s+CPUS\s+MEMORY\s+ACCEL\s+PID\s+UPTIME\s+RSS\s+IMAGE$/);
  assert.match(lines[1] ?? '', /^web1\s+running\s+2\s+512 MiB\s+tcg\s+4242\s+1m15s\s+100 MiB\s+tiny$/);
  assert.match(lines[2] ?? '', /^db1\s+stopped\s+2\s+512 MiB\s+-\s+-\s+-\s+-\s+tiny$/);
});

test('show prints the whole configuration, what runs now and why the last QEMU ended, sizes human readable', async () => {
  const r = await runCli(['show', 'web1'], fake.env);
  assert.equal(r.code, 0, r.stderr);
  const o = r.stdout;
  assert.match(o, /^uuid:\s+7f8e2a4c/m);
  assert.match(o, /^state:\s+running \(pid 4242, tcg, up 1m15s, resident 100 MiB\)$/m);
  assert.match(o, /^cpus:\s+2 of 4 max, 1 socket\(s\) x 4 core\(s\) x 1 thread\(s\), model auto, pinned to 0-1, weight 200, limit 1.5 CPUs$/m);
  assert.match(o, /^memory:\s+512 MiB, up to 2 GiB \(hotplug\), limit 3 GiB, balloon on, the guest sees 1 GiB now$/m);
  assert.match(o, /^firmware:\s+bios$/m);
  assert.match(o, /^root disk:\s+\/var\/lib\/corral\/instances\/x\/root\.qcow2 on virtio-blk, the image's size, 1 MiB allocated$/m);
  assert.match(o, /^disks:\s+volume data1 on sata$/m);
  assert.match(o, /^nics:\s+net0 virtio-net, on default, mac 52:54:00:12:34:56, forward tcp:127\.0\.0\.1:8022->22$/m);
  assert.match(o, /^\s+net1 e1000, on lan, mac 52:54:00:12:34:57, ip 10\.50\.0\.12$/m);
  assert.match(o, /^memory:\s+512 MiB, up to 2 GiB \(hotplug\)/m);
  assert.match(o, /^last exit:\s+2024-12-31T23:00:00\.000Z: QEMU 4100 was killed by SIGSEGV: segfault at 18 error 4 in libc\.so\.6 \(signal SIGSEGV\)$/m);
});

test('show of a guest resized up to its max-memory says so rather than "up to" its own size', async () => {
  const { instanceDetails } = await import('../../../src/cli/show.js');
  const full = { ...INSTANCE, memory: 2147483648, spec: { ...INSTANCE.spec, memory: 2147483648 } };
  assert.match(instanceDetails(full as never), /^memory:\s+2 GiB, all of max-memory, limit 3 GiB/m);
});

test('set sends KEY=VALUE pairs as the API fields (numbers, booleans, none clears) and says what changed', async () => {
  const r = await runCli(['set', 'web1', 'cpus=2', 'memory=1G', 'cpu-limit=1.5', 'balloon=no', 'pin=none', '--json'], fake.env);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(JSON.parse(r.stdout).body, { cpus: 2, memory: '1G', cpuLimit: 1.5, balloon: false, pin: null });
  const text = await runCli(['set', 'web1', 'max-memory=2G'], fake.env);
  assert.equal(text.stdout, 'web1: changed maxMemory (applies at the next start)\n');
  const bad = await runCli(['set', 'web1', 'colour=blue'], fake.env);
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /^error: unknown key "colour" \(keys: cpus, memory, /);
  const notNum = await runCli(['set', 'web1', 'cpus=two'], fake.env);
  assert.match(notNum.stderr, /^error: cpus: expected a whole number, got "two"/);
  const noClear = await runCli(['set', 'web1', 'cpus=none'], fake.env);
  assert.match(noClear.stderr, /^error: cpus cannot be cleared/);
});

test('a 409 error body becomes "error: INVALID_STATE: ..." on stderr with exit 1', async () => {
  const r = await runCli(['start', 'web1'], fake.env);
  assert.equal(r.code, 1);
  assert.equal(r.stdout, '');
  assert.equal(r.stderr, 'error: INVALID_STATE: cannot start "web1": it is running\n');
  assert.equal(lastRequest('POST', '/v1/instances/web1/start').body, '{}');
});

test('an unknown instance: the 404 from the API', async () => {
  const r = await runCli(['show', 'nope'], fake.env);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /^error: NOT_FOUND: /);
});

test('stop sends the timeout (default 30, or --timeout) and prints a one-line result', async () => {
  let r = await runCli(['stop', 'web1'], fake.env);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, 'web1: stopped\n');
  assert.deepEqual(JSON.parse(lastRequest('POST', '/v1/instances/web1/stop').body), { timeout: 30 });
  r = await runCli(['stop', 'web1', '--timeout', '5'], fake.env);
  assert.deepEqual(JSON.parse(lastRequest('POST', '/v1/instances/web1/stop').body), { timeout: 5 });
  assert.equal(r.stdout, 'web1: stopped\n');
  r = await runCli(['kill', 'web1', '--json'], fake.env);
  assert.equal((JSON.parse(r.stdout) as { state: string }).state, 'stopped');
  assert.deepEqual(JSON.parse(lastRequest('POST', '/v1/instances/web1/kill').body), {});
});

test('stop says when the guest did not power off in time and QEMU was killed', async () => {
  const r = await runCli(['stop', 'web1', '--timeout', '0'], fake.env);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, 'web1: stopped (killed: the guest did not power off within 0s)\n');
  const j = await runCli(['stop', 'web1', '--timeout', '0', '--json'], fake.env);
  assert.equal((JSON.parse(j.stdout) as { killed: boolean }).killed, true);
});

test('create sends the right JSON body', async () => {
  const r = await runCli(['create', 'web2', '--image', 'tiny', '--cpus', '2', '--memory', '512M', '--disk', '2G', '--firmware', 'uefi', '--network', 'none', '--accel', 'tcg', '--start'], fake.env);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(JSON.parse(lastRequest('POST', '/v1/instances').body), {
    name: 'web2', image: 'tiny', cpus: 2, memory: '512M', disk: '2G', firmware: 'uefi', network: 'none', accel: 'tcg', start: true,
  });
  assert.match(r.stdout, /^created web2: stopped\n$/);

  const minimal = await runCli(['create', 'web3', '--image', 'tiny', '--json'], fake.env);
  assert.equal(minimal.code, 0, minimal.stderr);
  assert.deepEqual(JSON.parse(lastRequest('POST', '/v1/instances').body), { name: 'web3', image: 'tiny' });
  assert.equal((JSON.parse(minimal.stdout) as { name: string }).name, 'web3');
});

test('create --display vnc|none is sent as display (none of it without the flag); set display=vnc|none; show says which', async () => {
  for (const display of ['vnc', 'none']) {
    const r = await runCli(['create', 'desk1', '--image', 'tiny', '--display', display], fake.env);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(JSON.parse(lastRequest('POST', '/v1/instances').body), { name: 'desk1', image: 'tiny', display });
  }
  const bad = await runCli(['create', 'desk1', '--image', 'tiny', '--display', 'sdl'], fake.env);
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /--display/);
  const on = await runCli(['set', 'web1', 'display=vnc', '--json'], fake.env);
  assert.deepEqual(JSON.parse(on.stdout).body, { display: 'vnc' });
  const off = await runCli(['set', 'web1', 'display=none', '--json'], fake.env);
  assert.deepEqual(JSON.parse(off.stdout).body, { display: null }, 'none takes the display away (null clears it)');
  const { instanceDetails } = await import('../../../src/cli/show.js');
  assert.match(instanceDetails(INSTANCE as never), /^display:\s+none$/m);
  assert.match(instanceDetails({ ...INSTANCE, spec: { ...INSTANCE.spec, display: 'vnc' } } as never), /^display:\s+vnc \(VGA; the web console's graphical console, \/v1\/instances\/web1\/vnc\)$/m);
});

test('create --ssh-key (a file and stdin), --user-data, --network-config, --hostname: the files\' texts in the body', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'corral-cli-ci-'));
  try {
    const ed = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAgLAhB0gRNMGMYhLuaFd6rlhrLGWyvmJyszXiWuwkWt me@host';
    writeFileSync(join(dir, 'keys'), `# my keys\n${ed}\n\nssh-rsa AAAA other\n`);
    writeFileSync(join(dir, 'ud'), '#cloud-config\npackages: [htop]\n');
    writeFileSync(join(dir, 'nc'), 'version: 2\n');
    const r = await runCli(['create', 'web5', '--image', 'tiny', '--ssh-key', join(dir, 'keys'), '--ssh-key', '-', '--user-data', join(dir, 'ud'),
      '--network-config', join(dir, 'nc'), '--hostname', 'box.lan'], fake.env, 'ecdsa-sha2-nistp256 AAAA piped\n');
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(JSON.parse(lastRequest('POST', '/v1/instances').body), {
      name: 'web5', image: 'tiny', sshKeys: [ed, 'ssh-rsa AAAA other', 'ecdsa-sha2-nistp256 AAAA piped'],
      userData: '#cloud-config\npackages: [htop]\n', networkConfig: 'version: 2\n', hostname: 'box.lan',
    });
    writeFileSync(join(dir, 'empty'), '# nothing\n');
    const empty = await runCli(['create', 'web6', '--image', 'tiny', '--ssh-key', join(dir, 'empty')], fake.env);
    assert.equal(empty.code, 1);
    assert.match(empty.stderr, /^error: --ssh-key \S+empty: no key in it/);
    const missing = await runCli(['create', 'web6', '--image', 'tiny', '--user-data', join(dir, 'nope')], fake.env);
    assert.match(missing.stderr, /^error: --user-data \S+nope: ENOENT/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('show says whether the instance has a cloud-init seed, with its hostname, keys and user-data', async () => {
  const { instanceDetails } = await import('../../../src/cli/show.js');
  assert.match(instanceDetails(INSTANCE as never), /^cloud-init:\s+no$/m);
  const ci = { hostname: 'box', sshKeys: ['k1', 'k2'], userData: '#!/bin/sh\necho hi\n', networkConfig: 'version: 2\n' };
  const withSeed = { ...INSTANCE, spec: { ...INSTANCE.spec, cloudInit: ci } };
  assert.match(instanceDetails(withSeed as never), /^cloud-init:\s+yes \(NoCloud seed\), hostname box, 2 SSH keys, user-data #!\/bin\/sh \(given\), network-config given$/m);
});

test('create rejects a non-integer --cpus before calling the API (commander usage error, exit 1)', async () => {
  const before = fake.api.requests.length;
  const r = await runCli(['create', 'web4', '--image', 'tiny', '--cpus', 'two'], fake.env);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /--cpus.*two.*whole number/);
  assert.equal(fake.api.requests.length, before);
});

test('delete --force sends force=true', async () => {
  const r = await runCli(['delete', 'web1', '--force'], fake.env);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, 'web1: deleted\n');
  lastRequest('DELETE', '/v1/instances/web1?force=true');
});

test('delete of a running instance without --force hints at --force', async () => {
  const r = await runCli(['delete', 'web1'], fake.env);
  assert.equal(r.code, 1);
  assert.equal(r.stderr, 'error: INVALID_STATE: cannot delete instance "web1": it is running (allowed from: stopped, crashed, error) (use --force to kill and delete it)\n');
  const j = await runCli(['delete', 'web1', '--json'], fake.env);
  assert.deepEqual(JSON.parse(j.stderr), {
    error: { code: 'INVALID_STATE', message: 'cannot delete instance "web1": it is running (allowed from: stopped, crashed, error) (use --force to kill and delete it)', state: 'running', operation: 'delete' },
  });
});

test('build-tiny: progress lines reach stderr, the result stdout', async () => {
  let r = await runCli(['image', 'build-tiny', '--force'], fake.env);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stderr, '[download] linux-image-amd64 42%\n[initramfs] packing\n');
  assert.match(r.stdout, /^name:\s+tiny$/m);
  assert.match(r.stdout, /^virtualSize:\s+256 MiB$/m);
  assert.deepEqual(JSON.parse(lastRequest('POST', '/v1/images/build-tiny').body), { force: true });

  r = await runCli(['image', 'build-tiny', '--json'], fake.env);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(JSON.parse(r.stdout), IMAGE);
  assert.match(r.stderr, /\[download\] linux-image-amd64 42%/);
  assert.deepEqual(JSON.parse(lastRequest('POST', '/v1/images/build-tiny').body), {});
});

test('image import resolves a relative file against the cwd; an error event exits 1', async () => {
  const cwd = mkdtempSync(join(tmpdir(), 'corral-cwd-'));
  try {
    const r = await runCli(['image', 'import', 'disk1', 'sub/disk.qcow2', '--format', 'qcow2'], fake.env, '', cwd);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^\[inspect\] qemu-img info\n/);
    assert.match(r.stderr, /error: INVALID_IMAGE: the image has a backing file\n$/);
    assert.equal(r.stdout, '');
    assert.deepEqual(JSON.parse(lastRequest('POST', '/v1/images').body), { name: 'disk1', file: join(cwd, 'sub/disk.qcow2'), format: 'qcow2' });
  } finally {
    rmSync(cwd, { recursive: true, force: true });
  }
});

test('image list and host show', async () => {
  let r = await runCli(['image', 'list'], fake.env);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^NAME\s+KIND\s+FORMAT\s+SIZE/);
  assert.match(r.stdout, /^tiny\s+kernel\s+raw\s+256 MiB/m);
  r = await runCli(['host', 'show'], fake.env);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^memory\.total:\s+16 GiB$/m);
  assert.match(r.stdout, /^qemu\.version:\s+8\.2\.2$/m);
  assert.match(r.stdout, /^acceleratorReason:\s+KVM probe timed out$/m);
  assert.match(r.stdout, /^futureField\.nested:\s+1, 2$/m);
  r = await runCli(['host', 'show', '--json'], fake.env);
  assert.equal((JSON.parse(r.stdout) as { hostname: string }).hostname, 'h1');
});

test('events: one line per event; --json the raw event; a closed stream is an error', async () => {
  let r = await runCli(['events', '--since', '5'], fake.env);
  assert.equal(r.code, 1);
  assert.equal(r.stdout, '2025-01-01T00:00:00.000Z instance.state web1 {"from":"starting","to":"running"}\n2025-01-01T00:00:00.000Z daemon.started - {"pid":1}\n');
  assert.match(r.stderr, /closed the event stream.*--since 7/);
  r = await runCli(['events', '--since', '5', '--json'], fake.env);
  const evs = r.stdout.trimEnd().split('\n').map((l) => JSON.parse(l) as { id: number });
  assert.deepEqual(evs.map((e) => e.id), [6, 7]);
});

test('events: the daemon stopping ends the stream cleanly (exit 0), a cut connection is an error', async () => {
  let r = await runCli(['events', '--since', '8'], fake.env);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, '2025-01-01T00:00:00.000Z daemon.stopping - {"pid":1,"signal":"SIGTERM"}\n');
  assert.equal(r.stderr, 'the corral daemon is stopping; the event stream ended (resume with: corral events --since 9)\n');
  r = await runCli(['events', '--since', '10'], fake.env);
  assert.equal(r.code, 1);
  assert.match(r.stdout, /instance\.created web1/);
  assert.match(r.stderr, /^error: lost the connection to the daemon \(resume with: corral events --since 11\): /);
  assert.equal(r.stderr.split('\n').length, 2, r.stderr);
});

test('console --log prints the raw bytes, less terminal queries when stdout is not a terminal', async () => {
  const r = await runCli(['console', 'web1', '--log'], fake.env);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(r.stdoutBytes, Buffer.concat([Buffer.from('Linux version 6.1\r\n\x1b[1;32m~ #\x1b[0m '), Buffer.from([0x00, 0xff])]));
});

test('console with piped stdin forwards it and lingers for the output', async () => {
  const r = await runCli(['console', 'web1', '--linger', '300'], fake.env, 'uname -a\n');
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, 'Welcome to tiny\r\necho: uname -a\n');
  assert.equal(Buffer.concat(fake.api.consoleInput).toString(), 'uname -a\n');
});

test('console exits 0 when the guest closes the console', async () => {
  const started = Date.now();
  const r = await runCli(['console', 'web1', '--linger', '10000'], fake.env, 'poweroff\n');
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /echo: poweroff/);
  assert.ok(Date.now() - started < 8000);
});

test('a refused console upgrade shows the JSON error', async () => {
  const r = await runCli(['console', 'db1'], fake.env, '');
  assert.equal(r.code, 1);
  assert.equal(r.stderr, 'error: INVALID_STATE: the console of "db1" is not available: it is stopped\n');
});

test('no daemon: the "cannot reach" message', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'corral-none-'));
  try {
    const r = await runCli(['list'], { CORRAL_DATA_DIR: dir });
    assert.equal(r.code, 1);
    assert.equal(r.stderr, `error: cannot reach the corral daemon at ${join(dir, 'corral.sock')}: is it running? (start it with: corral daemon)\n`);
    const c = await runCli(['console', 'web1'], { CORRAL_DATA_DIR: dir }, '');
    assert.equal(c.code, 1);
    assert.match(c.stderr, /^error: cannot reach the corral daemon at /);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('CORRAL_URL: TCP with the bearer token from CORRAL_TOKEN or the token file', async () => {
  const pair = await testPair();
  const tcp = await startFakeApi({ tcpToken: 's3cret', tls: pair });
  try {
    const url = `https://127.0.0.1:${tcp.port}`;
    const pin = { CORRAL_TLS_FINGERPRINT: pair.fingerprint };
    let r = await runCli(['list', '--json'], { CORRAL_DATA_DIR: tcp.dir, CORRAL_URL: url, CORRAL_TOKEN: 's3cret', ...pin });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(tcp.requests.at(-1)?.headers.authorization, 'Bearer s3cret');

    writeFileSync(join(tcp.dir, 'token'), 's3cret\n');
    r = await runCli(['host', 'show', '--json'], { CORRAL_DATA_DIR: tcp.dir, CORRAL_URL: url, ...pin });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(tcp.requests.at(-1)?.headers.authorization, 'Bearer s3cret');

    r = await runCli(['console', 'web1', '--linger', '200'], { CORRAL_DATA_DIR: tcp.dir, CORRAL_URL: url, ...pin }, 'hi\n');
    assert.equal(r.code, 0, r.stderr);
    const up = tcp.requests.filter((x) => x.method === 'UPGRADE').at(-1);
    assert.equal(up?.headers.authorization, 'Bearer s3cret');

    r = await runCli(['list'], { CORRAL_DATA_DIR: tcp.dir, CORRAL_URL: url, CORRAL_TOKEN: 'wrong', ...pin });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^error: UNAUTHORIZED: /);
  } finally {
    await tcp.close();
  }
});

test('--version prints the package version; usage errors exit 1', async () => {
  let r = await runCli(['--version'], fake.env);
  assert.equal(r.code, 0);
  assert.match(r.stdout, /^\d+\.\d+\.\d+/);
  r = await runCli(['frobnicate'], fake.env);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /unknown command/);
  r = await runCli(['image', 'import', 'x', 'f'], fake.env);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /--format/);
});

test('resize --memory sends the size as typed: a bare number is the daemon\'s to refuse, never turned into bytes', async () => {
  await runCli(['resize', 'web1', '--memory', '1000'], fake.env);
  assert.deepEqual(JSON.parse(lastRequest('POST', '/v1/instances/web1/memory').body), { size: '1000' });
});
