import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CorralError } from '../../../src/core/errors.js';
import { commandLine, missingTool, run, runBuffer, spawnError } from '../../../src/host/exec.js';

async function failure(p: Promise<unknown>): Promise<CorralError> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof CorralError, `not a CorralError: ${String(e)}`);
    return e;
  }
  assert.fail('the command did not fail');
}

test('run: stdout and stderr of a command that succeeds; input goes to its stdin', async () => {
  assert.deepEqual(await run('sh', ['-c', 'echo out; echo err >&2'], { timeoutMs: 10_000 }), { stdout: 'out\n', stderr: 'err\n' });
  assert.equal((await run('cat', [], { timeoutMs: 10_000, input: 'fed in' })).stdout, 'fed in');
  assert.equal((await run('sh', ['-c', 'echo "$LC_ALL $FOO"'], { timeoutMs: 10_000 })).stdout, 'C \n', 'a plain environment by default');
  assert.equal((await run('sh', ['-c', 'echo "$FOO"'], { timeoutMs: 10_000, env: { FOO: 'bar', PATH: process.env.PATH } })).stdout, 'bar\n');
  assert.equal((await run('pwd', [], { timeoutMs: 10_000, cwd: '/' })).stdout, '/\n');
  assert.deepEqual((await runBuffer('printf', ['\\001\\377'], { timeoutMs: 10_000 })).stdout, Buffer.from([1, 255]));
});

test('run: a non-zero exit is the caller\'s code (COMMAND_FAILED by default) naming the command and its stderr\'s last lines', async () => {
  const e = await failure(run('sh', ['-c', 'echo noise >&2; echo "it broke" >&2; exit 3', 'arg with space'], { timeoutMs: 10_000 }));
  assert.equal(e.code, 'COMMAND_FAILED');
  assert.equal(e.message, 'sh -c "echo noise >&2; echo \\"it broke\\" >&2; exit 3" "arg with space" failed: noise; it broke');
  assert.equal(e.details.exitCode, 3);
  assert.equal(e.details.stderr, 'noise; it broke');
  const n = await failure(run('sh', ['-c', 'echo "x: bad" >&2; exit 1'], { timeoutMs: 10_000, code: 'NETWORK_FAILED', what: 'the thing', errorLine: (s) => s.replace('x: ', '').trim() }));
  assert.equal(n.code, 'NETWORK_FAILED');
  assert.equal(n.message, 'the thing failed: bad');
  const quiet = await failure(run('false', [], { timeoutMs: 10_000, code: 'QEMU_FAILED' }));
  assert.equal(quiet.message, 'false failed: exit status 1');
  const killed = await failure(run('sh', ['-c', 'kill -TERM $$'], { timeoutMs: 10_000 }));
  assert.match(killed.message, /failed: killed by SIGTERM$/);
  assert.equal(killed.details.signal, 'SIGTERM');
});

test('run: a missing program is MISSING_TOOL naming it and its Debian package, whatever the caller\'s code', async () => {
  const e = await failure(run('/nonexistent/bin/qemu-img', ['info'], { timeoutMs: 10_000, code: 'QEMU_FAILED' }));
  assert.equal(e.code, 'MISSING_TOOL');
  assert.equal(e.status, 500);
  assert.equal(e.message, 'cannot run /nonexistent/bin/qemu-img: not installed (Debian package qemu-utils)');
  assert.equal(e.details.package, 'qemu-utils');
  const unknown = await failure(run('corral-no-such-tool', [], { timeoutMs: 10_000 }));
  assert.equal(unknown.code, 'MISSING_TOOL');
  assert.match(unknown.message, /corral-no-such-tool: not installed \(not found in PATH\)/);
  assert.equal(missingTool('nft').message, 'cannot run nft: not installed (Debian package nftables)');
  assert.equal(spawnError('dnsmasq', Object.assign(new Error('spawn dnsmasq ENOENT'), { code: 'ENOENT' })).code, 'MISSING_TOOL');
  assert.equal(spawnError('dnsmasq', Object.assign(new Error('spawn dnsmasq EACCES'), { code: 'EACCES' }), { code: 'NETWORK_FAILED' }).code, 'NETWORK_FAILED');
});

test('run: a working directory that does not exist is not taken for a missing program', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'corral-exec-'));
  rmSync(dir, { recursive: true });
  const e = await failure(run('true', [], { timeoutMs: 10_000, cwd: dir }));
  assert.equal(e.code, 'COMMAND_FAILED');
  assert.match(e.message, /working directory .* does not exist/);
});

test('run: a command past its time limit is killed and TIMEOUT', async () => {
  const t0 = Date.now();
  const e = await failure(run('sh', ['-c', 'echo started >&2; exec sleep 30'], { timeoutMs: 300 }));
  assert.equal(e.code, 'TIMEOUT');
  assert.equal(e.message, 'sh -c "echo started >&2; exec sleep 30" did not finish within 300 ms and was killed: started');
  assert.ok(Date.now() - t0 < 10_000, 'killed, not waited for');
  assert.equal(commandLine('ip', ['link', 'show']), 'ip link show');
});
