/**
 * The console keeper as it runs (perl, reading a real pipe made by openConsolePipe): the log stays bounded and
 * holds the newest bytes, it exits when the last writer is gone (and the daemon's copies are not writers).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KEEPER_NAME, keeperArgv, openConsolePipe, startConsoleKeeper } from '../../../src/qemu/console-keeper.js';
import { readConsoleLog } from '../../../src/services/console-log.js';

const LIMIT = 4096;

async function waitUntil(ok: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const t0 = Date.now();
  while (!ok()) {
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function exited(child: ChildProcess): Promise<{ code: number | null; signal: string | null }> {
  child.ref(); // the keeper is unref'd (it outlives the daemon): keep this test alive until it ends
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve({ code: child.exitCode, signal: child.signalCode });
  return new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
}

/** A dir with console.log and console.log.1 (empty, as the daemon gives them), and a keeper with its pipe. */
async function keeperIn(opts: { rotated?: boolean; log?: string } = {}): Promise<{ dir: string; log: string; keeper: ChildProcess; write: number }> {
  const dir = mkdtempSync(join(tmpdir(), 'corral-keeper-'));
  const log = join(dir, 'console.log');
  writeFileSync(log, opts.log ?? '');
  if (opts.rotated !== false) writeFileSync(`${log}.1`, '');
  const pipe = await openConsolePipe(`${log}.pipe`);
  const keeper = startConsoleKeeper(pipe.read, log, LIMIT, undefined);
  closeSync(pipe.read);
  return { dir, log, keeper, write: pipe.write };
}

test('the keeper keeps console.log and console.log.1 within the limit each, holding the newest bytes, and ends on EOF', async () => {
  const { dir, log, keeper, write } = await keeperIn();
  try {
    assert.equal(existsSync(`${log}.pipe`), false, 'the FIFO is unlinked once both ends are open');
    let all = '';
    for (let i = 0; i < 400; i++) {
      const line = `line ${i} ${'x'.repeat(i % 97)}\r\n`;
      all += line;
      writeSync(write, line);
    }
    closeSync(write);
    assert.deepEqual(await exited(keeper), { code: 0, signal: null }, 'EOF: the writer is gone');
    assert.ok(statSync(log).size <= LIMIT, `console.log: ${statSync(log).size}`);
    assert.equal(statSync(`${log}.1`).size, LIMIT, 'console.log.1 holds a whole rotated log');
    const kept = readConsoleLog(log).toString();
    assert.ok(kept.length > LIMIT);
    assert.ok(all.endsWith(kept), 'the two files, oldest first, are the newest bytes written, with nothing lost between them');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a log already past the limit (a stopped VM\'s, plus the boot separator) is rotated before the first new byte', async () => {
  const old = `${'o'.repeat(LIMIT)}\r\n----- corral: QEMU starting 2026-11-30T13:00:00Z (tcg) -----\r\n`;
  const { dir, log, keeper, write } = await keeperIn({ log: old });
  try {
    writeSync(write, 'Linux version 6.1\r\n');
    closeSync(write);
    await exited(keeper);
    assert.equal(readFileSync(`${log}.1`, 'utf8'), old);
    assert.equal(readFileSync(log, 'utf8'), 'Linux version 6.1\r\n');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('without console.log.1 (it cannot make it) the keeper still keeps console.log within the limit', async () => {
  const { dir, log, keeper, write } = await keeperIn({ rotated: false });
  try {
    for (let i = 0; i < 100; i++) writeSync(write, `${i} ${'y'.repeat(200)}\n`);
    closeSync(write);
    await exited(keeper);
    assert.ok(statSync(log).size <= LIMIT);
    assert.match(readFileSync(log, 'utf8'), /99 y+\n$/);
    assert.equal(existsSync(`${log}.1`), false);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the keeper lives as long as the process holding the write end (the daemon closed its copy), and names itself', async () => {
  const { dir, log, keeper, write } = await keeperIn();
  // the stand-in QEMU: gets the write end as fd 3, as QEMU does, writes a line and waits
  const qemu = spawn('sh', ['-c', 'echo from-qemu >&3; exec sleep 60'], { stdio: ['ignore', 'ignore', 'ignore', write] });
  closeSync(write);
  try {
    await waitUntil(() => readFileSync(log, 'utf8') === 'from-qemu\n', 10_000, 'the line to reach console.log');
    assert.equal(keeper.exitCode, null, 'still running while its writer lives');
    assert.equal(readFileSync(`/proc/${keeper.pid}/cmdline`, 'utf8').replace(/\0+$/, ''), `${KEEPER_NAME} ${log}`);
    qemu.kill('SIGKILL');
    assert.deepEqual(await exited(keeper), { code: 0, signal: null }, 'EOF once the writer died');
  } finally {
    qemu.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a limit that is not a positive byte count is refused', () => {
  assert.throws(() => keeperArgv('/x/console.log', 0), /not a positive byte count/);
  assert.throws(() => keeperArgv('/x/console.log', Number.NaN), /not a positive byte count/);
  assert.deepEqual(keeperArgv('/x/console.log', 4096).slice(2), ['--', '/x/console.log', '4096']);
});
