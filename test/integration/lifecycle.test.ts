/**
 * The lifecycle of one real tiny guest (TCG), checked the way a user would: from the guest's own console,
 * from /proc of the QEMU process, and from the files on disk.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { ConsoleSession, Daemon, SKIP_NO_TINY, useDaemon, waitFor } from './harness.js';

const skip = SKIP_NO_TINY;
let d: Daemon;
useDaemon((x) => { d = x; });

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return !readFileSync(`/proc/${pid}/stat`, 'utf8').includes(') Z ');
  } catch {
    return false;
  }
}

test('create --start boots the tiny guest to "corral-tiny ready" with its hostname', { skip }, async () => {
  const r = await d.api('POST', '/v1/instances', { name: 'vm1', image: 'tiny', memory: '256M', start: true });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  assert.equal(r.body.state, 'running');
  assert.ok(r.body.pid > 0);
  const log = await d.waitConsole('vm1', /corral-tiny ready/);
  assert.doesNotMatch(log, /Kernel panic/);

  // The QEMU process is the one we expect: our uuid, sandboxed, no defaults, and memory really resident.
  const cmdline = readFileSync(`/proc/${r.body.pid}/cmdline`, 'utf8').split('\0');
  assert.ok(cmdline.includes(r.body.uuid));
  assert.ok(cmdline.includes('-nodefaults'));
  assert.ok(cmdline.some((a) => a.startsWith('on,obsolete=deny')));
  const show = (await d.api('GET', '/v1/instances/vm1')).body;
  assert.equal(show.accel, cmdline.find((a) => a.startsWith('pc,accel='))?.split(',')[1]?.slice('accel='.length));
  assert.ok(show.rss > 10 * 1024 * 1024, `rss ${show.rss}`);
  assert.ok(show.uptime >= 0);
  assert.ok(existsSync(show.disk.path));
});

test('a command typed into the console is answered by the guest', { skip }, async () => {
  const c = await ConsoleSession.open(d, 'vm1');
  try {
      assert.match(await c.run('hostname'), /vm1/);
    assert.match(await c.run('cat /proc/cmdline'), /corral\.hostname=vm1/);
    assert.match(await c.run('echo $((6*7))'), /42/);
  } finally {
    await c.close();
  }
});

test('a second console attach is refused while one is attached', { skip }, async () => {
  const c = await ConsoleSession.open(d, 'vm1');
  try {
    await assert.rejects(ConsoleSession.open(d, 'vm1'), /CONSOLE_BUSY/);
  } finally {
    await c.close();
  }
});

test('pause stops the guest and resume lets it go on', { skip }, async () => {
  const c = await ConsoleSession.open(d, 'vm1');
  try {
    await c.prompt();
    // Positive control: how long the running guest takes to answer. The paused guest gets several times that
    // (and at least 1.5 s) to answer the same, so its silence says it is paused, not slow.
    const t0 = Date.now();
    c.send('echo running-$((1+1))\n');
    await c.expect(/running-2/);
    const answered = Date.now() - t0;
    const window = Math.max(1500, 5 * answered);
    const p = await d.api('POST', '/v1/instances/vm1/pause', {});
    assert.equal(p.status, 200);
    assert.equal(p.body.state, 'paused');
    const again = await d.api('POST', '/v1/instances/vm1/pause', {});
    assert.equal(again.status, 409);
    assert.equal(again.body.error.code, 'INVALID_STATE');
    assert.match(again.body.error.message, /paused/);
    const from = c.buf.length;
    c.send('echo paused-$((1+1))\n');
    await new Promise((r) => setTimeout(r, window));
    assert.doesNotMatch(c.buf.slice(from), /paused-2/, `a paused guest must not answer (running, it answered in ${answered} ms; paused, it had ${window} ms)`);
    const r = await d.api('POST', '/v1/instances/vm1/resume', {});
    assert.equal(r.body.state, 'running');
    await c.expect(/paused-2/);
  } finally {
    await c.close();
  }
});

test('restart boots a new QEMU and the guest comes back', { skip }, async () => {
  const before = (await d.api('GET', '/v1/instances/vm1')).body;
  const r = await d.api('POST', '/v1/instances/vm1/restart', { timeout: 20 });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.equal(r.body.state, 'running');
  assert.notEqual(r.body.pid, before.pid);
  assert.equal(alive(before.pid), false);
  const log = await d.waitConsole('vm1', /corral-tiny poweroff[\s\S]*corral-tiny ready/);
  assert.match(log, /corral-tiny ready/);
});

test('stop asks the guest to power off by ACPI, and it does so cleanly', { skip }, async () => {
  await d.waitConsole('vm1', /corral-tiny ready/);
  const pid = (await d.api('GET', '/v1/instances/vm1')).body.pid as number;
  const before = (await d.consoleLog('vm1')).length;
  const r = await d.api('POST', '/v1/instances/vm1/stop', { timeout: 30 });
  assert.equal(r.status, 200);
  assert.equal(r.body.state, 'stopped');
  assert.equal(r.body.pid, null);
  assert.equal(alive(pid), false);
  const tail = (await d.consoleLog('vm1')).slice(before);
  assert.match(tail, /corral-tiny poweroff/, 'the guest ran its own shutdown');
  const events = (await d.api('GET', '/v1/instances/vm1')).body;
  assert.equal(events.state, 'stopped');
});

test('a guest that powers itself off becomes stopped', { skip }, async () => {
  await d.api('POST', '/v1/instances/vm1/start', {});
  await d.waitConsole('vm1', /corral-tiny ready(?![\s\S]*corral-tiny poweroff)/);
  const c = await ConsoleSession.open(d, 'vm1');
  await c.prompt();
  c.send('poweroff\n');
  await c.expect(/corral-tiny poweroff/);
  await c.close();
  await d.waitState('vm1', 'stopped', 20_000);
});

test('a guest that ignores the power button (and its agent\'s shutdown) is killed when the stop timeout runs out, and the reason says so', { skip }, async () => {
  await d.api('POST', '/v1/instances/vm1/start', {});
  const c = await ConsoleSession.open(d, 'vm1');
  // deaf to ACPI, and the guest agent's guest-shutdown (which runs /sbin/shutdown) does nothing
  await c.run("killall acpid; printf '#!/bin/sh\\n' > /sbin/shutdown");
  await c.close();
  const t0 = Date.now();
  const r = await d.api('POST', '/v1/instances/vm1/stop', { timeout: 2 });
  assert.equal(r.body.state, 'stopped');
  assert.deepEqual([r.body.killed, r.body.stoppedBy], [true, 'kill']);
  assert.ok(Date.now() - t0 >= 2000, 'it waited for the guest first');
  const evs = await d.events();
  assert.ok(evs.some((e) => e.type === 'instance.stop-timeout' && e.instance === 'vm1'));
  const last = evs.filter((e) => e.type === 'instance.state' && e.instance === 'vm1').pop()!;
  assert.equal(last.data.to, 'stopped');
  assert.match(last.data.reason, /did not power off within 2s/);
});

test('a guest kernel panic (pvpanic) makes the instance crashed, and QEMU is gone', { skip }, async () => {
  const r = await d.api('POST', '/v1/instances/vm1/start', {});
  assert.equal(r.body.state, 'running');
  const c = await ConsoleSession.open(d, 'vm1');
  await c.prompt();
  c.send('echo c > /proc/sysrq-trigger\n');
  await d.waitState('vm1', 'crashed', 20_000);
  await c.close().catch(() => undefined);
  assert.equal(alive(r.body.pid), false);
  assert.match((await d.api('GET', '/v1/instances/vm1')).body.lastError, /panic/);
  assert.match(await d.consoleLog('vm1'), /Kernel panic/);
});

test('kill stops at once; QEMU killed from outside becomes crashed within a second', { skip }, async () => {
  let r = await d.api('POST', '/v1/instances/vm1/start', {});
  assert.equal(r.body.state, 'running');
  r = await d.api('POST', '/v1/instances/vm1/kill', {});
  assert.equal(r.body.state, 'stopped');

  r = await d.api('POST', '/v1/instances/vm1/start', {});
  const pid = r.body.pid as number;
  const t0 = Date.now();
  process.kill(pid, 'SIGKILL');
  await d.waitState('vm1', 'crashed', 5000);
  const ms = Date.now() - t0;
  assert.ok(ms < 1500, `crash noticed after ${ms} ms`);
  const after = (await d.api('GET', '/v1/instances/vm1')).body;
  assert.match(after.lastError, new RegExp(`QEMU ${pid} was killed by SIGKILL`));
  assert.equal(after.lastExit.signal, 'SIGKILL');
  assert.equal(after.lastExit.pid, pid);
});

test('why did it die: a QEMU segfault is recorded with its signal in show, the event and exit.json; its stderr is kept in the instance dir', { skip }, async () => {
  const r = await d.api('POST', '/v1/instances/vm1/start', {});
  const { pid, uuid } = r.body as { pid: number; uuid: string };
  process.kill(pid, 'SIGSEGV');
  await d.waitState('vm1', 'crashed', 5000);
  const shown = await d.cli(['show', 'vm1', '--json']);
  const inst = JSON.parse(shown.stdout);
  assert.equal(inst.lastExit.signal, 'SIGSEGV');
  assert.equal(inst.lastExit.state, 'crashed');
  assert.match(inst.lastError, new RegExp(`^QEMU ${pid} was killed by SIGSEGV`));
  const text = await d.cli(['show', 'vm1']);
  assert.match(text.stdout, /SIGSEGV/);
  const onDisk = JSON.parse(readFileSync(`${d.dataDir}/instances/${uuid}/exit.json`, 'utf8'));
  assert.equal(onDisk.signal, 'SIGSEGV');
  assert.ok(existsSync(`${d.dataDir}/instances/${uuid}/qemu.stderr`), 'QEMU stderr is kept in the instance dir');
  const ev = (await d.events()).filter((e: { type: string; instance: string | null }) => e.type === 'instance.state' && e.instance === 'vm1').pop()!;
  assert.equal(ev.data.to, 'crashed');
  assert.equal(ev.data.exit.signal, 'SIGSEGV');
  // a QEMU that ends itself with an error: its own line is the reason (the stderr of the run before is kept as .1)
  writeFileSync(`${d.dataDir}/instances/${uuid}/qemu.stderr`, 'qemu-system-x86_64: an earlier run\n');
  const again = await d.api('POST', '/v1/instances/vm1/start', {});
  assert.equal(again.body.state, 'running');
  assert.match(readFileSync(`${d.dataDir}/instances/${uuid}/qemu.stderr.1`, 'utf8'), /an earlier run/);
  assert.equal((await d.api('POST', '/v1/instances/vm1/kill', {})).status, 200);
  assert.equal((await d.api('GET', '/v1/instances/vm1')).body.lastExit.reason, 'killed by user');
});

test('delete refuses a running instance without force and removes disks and runtime files', { skip }, async () => {
  const r = await d.api('POST', '/v1/instances/vm1/start', {});
  assert.equal(r.body.state, 'running');
  const diskPath = r.body.disk.path as string;
  const refused = await d.api('DELETE', '/v1/instances/vm1');
  assert.equal(refused.status, 409);
  assert.equal(refused.body.error.code, 'INVALID_STATE');
  const del = await d.api('DELETE', '/v1/instances/vm1?force=true');
  assert.equal(del.status, 200);
  assert.equal(alive(r.body.pid), false);
  assert.equal(existsSync(diskPath), false);
  assert.equal(existsSync(`${d.dataDir}/run/${r.body.uuid}`), false);
  assert.equal((await d.api('GET', '/v1/instances/vm1')).status, 404);
  await waitFor(() => true, 1, 'noop');
});
