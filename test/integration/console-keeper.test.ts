/**
 * The console log stays bounded while the daemon is down: a guest prints without end over its serial console, the
 * daemon is killed (SIGKILL), and console.log and console.log.1 stay within CORRAL_CONSOLE_LOG_LIMIT each while the
 * newest output keeps arriving; the daemon started again adopts the VM and its log API serves that newest output;
 * when the VM is killed its keeper ends. The keeper runs as corral-qemu, small, and the daemon holds no end of its
 * pipe (only QEMU writes into it).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync, readlinkSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { readConsoleLog } from '../../src/services/console-log.js';
import { ConsoleSession, Daemon, SKIP_NO_TINY, useDaemon, waitFor } from './harness.js';

const skip = SKIP_NO_TINY;
const LIMIT = 32 * 1024;
let d: Daemon;
useDaemon((x) => { d = x; }, { env: () => ({ CORRAL_CONSOLE_LOG_LIMIT: '32K' }) });

interface Proc { pid: number; argv: string[] }

/** Console keepers of this daemon's VMs, by their command line (`corral-console-keeper LOG`). */
function keepers(): Proc[] {
  const out: Proc[] = [];
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      if (readFileSync(`/proc/${e}/stat`, 'utf8').split(') ')[1]?.[0] === 'Z') continue;
      const argv = readFileSync(`/proc/${e}/cmdline`, 'utf8').replace(/\0+$/, '').split('\0');
      if (argv[0]!.startsWith('corral-console-keeper ') && argv[0]!.includes(d.dataDir)) out.push({ pid: Number(e), argv });
    } catch {
      /* raced */
    }
  }
  return out;
}

function status(pid: number, field: string): string {
  return new RegExp(`^${field}:\\s*(.*)$`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]!.trim();
}

/** The files a process's descriptors are open on, as `dev:inode`. */
function openFiles(pid: number): string[] {
  return readdirSync(`/proc/${pid}/fd`).map((fd) => {
    try {
      const st = statSync(`/proc/${pid}/fd/${fd}`);
      return `${st.dev}:${st.ino}`;
    } catch {
      return '';
    }
  });
}

/** The highest line number the guest's loop has printed in `text`. */
function newest(text: string): number {
  let n = 0;
  for (const m of text.matchAll(/chatty (\d+) x/g)) n = Math.max(n, Number(m[1]));
  return n;
}

test('a chatty guest\'s console log stays within the limit while the daemon is down, and is served again after', { skip, timeout: 600_000 }, async () => {
  const vm = await d.ok('POST', '/v1/instances', { name: 'chatty', image: 'tiny' }, 201);
  const started = await d.ok('POST', '/v1/instances/chatty/start', {});
  await d.waitConsole('chatty', /corral-tiny ready/, 120_000);
  const log = join(d.dataDir, 'instances', vm.uuid, 'console.log');

  // one keeper: corral-qemu's, a few MB; it reads the pipe that QEMU alone writes into
  const [keeper, ...more] = keepers();
  assert.ok(keeper, 'the VM has a console keeper');
  assert.deepEqual(more, []);
  assert.equal(keeper.argv[0], `corral-console-keeper ${log}`);
  const qemuUid = execFileSync('id', ['-u', 'corral-qemu'], { encoding: 'utf8' }).trim();
  assert.deepEqual(status(keeper.pid, 'Uid').split(/\s+/), Array(4).fill(qemuUid), 'the keeper runs as corral-qemu');
  assert.equal(BigInt(`0x${status(keeper.pid, 'CapEff')}`), 0n);
  assert.equal(status(keeper.pid, 'NoNewPrivs'), '1');
  assert.ok(Number(status(keeper.pid, 'VmRSS').split(/\s+/)[0]) < 16 * 1024, `the keeper is small: ${status(keeper.pid, 'VmRSS')}`);
  const stdin = statSync(`/proc/${keeper.pid}/fd/0`);
  assert.ok(stdin.isFIFO(), 'the keeper reads a pipe');
  assert.match(readlinkSync(`/proc/${keeper.pid}/fd/0`), /console\.log\.pipe \(deleted\)$/, 'made as a FIFO, unlinked once open');
  const pipe = `${stdin.dev}:${stdin.ino}`;
  assert.ok(openFiles(started.pid).includes(pipe), 'QEMU holds the write end');
  assert.ok(!openFiles(d.proc!.pid!).includes(pipe), 'the daemon holds no end of the pipe');

  // the guest prints without end
  const c = await ConsoleSession.open(d, 'chatty');
  await c.prompt();
  c.send(`i=0; while :; do i=$((i+1)); echo "chatty $i ${'x'.repeat(60)}"; done\n`);
  await c.expect(/chatty 200 x/, 60_000);
  await c.close();

  await d.kill9();
  const atKill = newest(readConsoleLog(log).toString());
  // the guest goes on writing: 8 times the limit, through several rotations, with no daemon
  const target = atKill + Math.ceil((8 * LIMIT) / 75);
  let biggest = 0;
  let last = 0;
  await waitFor(() => {
    biggest = Math.max(biggest, statSync(log).size, statSync(`${log}.1`).size);
    assert.ok(biggest <= LIMIT, `console.log or console.log.1 grew to ${biggest} bytes, past the limit ${LIMIT}, with the daemon down`);
    last = newest(readConsoleLog(log).toString());
    return last > target;
  }, 300_000, `the guest's line ${target} to reach the log with the daemon down`, () => `newest line ${last}, at the kill ${atKill}`);
  assert.equal(statSync(`${log}.1`).size, LIMIT, 'the log was rotated while the daemon was down');

  // the daemon is back: it adopts the VM, and its log API serves the newest output, bounded
  await d.start();
  const again = await d.ok('GET', '/v1/instances/chatty');
  assert.equal(again.state, 'running');
  assert.equal(again.pid, started.pid, 'the same QEMU, adopted');
  const served = await d.consoleLog('chatty');
  assert.ok(newest(served) >= last, `the API serves the newest lines (${newest(served)} >= ${last})`);
  assert.ok(Buffer.byteLength(served) <= 2 * LIMIT, `the API serves at most console.log.1 and console.log: ${Buffer.byteLength(served)} bytes`);
  assert.deepEqual(keepers().map((k) => k.pid), [keeper.pid], 'the same keeper, still the only one');

  // the VM ends: so does its keeper, and the log files are root's again
  await d.ok('POST', '/v1/instances/chatty/kill', {});
  await d.waitState('chatty', 'stopped');
  await waitFor(() => keepers().length === 0, 20_000, 'the keeper to end with its VM', () => JSON.stringify(keepers()));
  for (const f of [log, `${log}.1`]) assert.equal(`${statSync(f).uid}:${(statSync(f).mode & 0o777).toString(8)}`, '0:600', `${f} is taken back`);
});

test('a keeper that dies holds nothing up: QEMU ignores the broken pipe and the guest\'s console goes on', { skip, timeout: 300_000 }, async () => {
  const started = await d.ok('POST', '/v1/instances/chatty/start', {});
  await d.waitConsole('chatty', /corral-tiny ready(?![\s\S]*----- corral: QEMU starting)/, 120_000);
  const [keeper] = keepers();
  assert.ok(keeper);
  process.kill(keeper.pid, 'SIGKILL');
  await waitFor(() => keepers().length === 0, 20_000, 'the keeper to die');
  assert.match(await d.guest('chatty', 'echo "still $((6 * 7))"; sleep 1; echo "still $((7 * 7))"'), /still 42\r?\nstill 49/);
  const now = await d.ok('GET', '/v1/instances/chatty');
  assert.equal(now.state, 'running');
  assert.equal(now.pid, started.pid, 'the same QEMU runs on');
  await d.ok('POST', '/v1/instances/chatty/kill', {});
});
