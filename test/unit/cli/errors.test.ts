/** How the CLI fails: never a stack trace, quiet on a closed pipe, JSON errors with --json, "did you mean". */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runCli, runCliClosingStdout, useFakeApi } from './fake-api.js';
import { editDistance, nearestName } from '../../../src/cli/suggest.js';

const fake = useFakeApi();

const STACK = /^\s+at /m;

test('a reader that goes away before the CLI writes (corral list | head -1): exit 0, nothing on stderr', async () => {
  for (const args of [['list'], ['list', '--json'], ['console', 'web1', '--log'], ['show', 'web1']]) {
    const r = await runCliClosingStdout(args, fake.env, 'start');
    assert.equal(r.stderr, '', `${args.join(' ')}: ${r.stderr}`);
    assert.equal(r.code, 0, args.join(' '));
  }
});

test('corral events | head -1: the next write after the reader has gone ends it quietly', { timeout: 10_000 }, async () => {
  const r = await runCliClosingStdout(['events'], fake.env, 'first-data');
  assert.match(r.stdout, /qemu\.event web1/);
  assert.equal(r.stderr, '');
  assert.equal(r.code, 0);
});

test('an error nobody caught prints "error: ..." and exits 1, without a stack trace', async () => {
  const errors = fileURLToPath(new URL('../../../src/cli/errors.js', import.meta.url));
  const run = (code: string): Promise<{ code: number | null; stderr: string }> => new Promise((resolve) => {
    const child = spawn(process.execPath, ['--input-type=module', '-e', `import { installCliGuards } from ${JSON.stringify(errors)};\ninstallCliGuards();\n${code}`]);
    let stderr = '';
    child.stderr.on('data', (c: Buffer) => { stderr += c.toString(); });
    child.on('close', (c) => resolve({ code: c, stderr }));
  });
  let r = await run("setTimeout(() => { throw new TypeError('x is not a function'); }, 1);");
  assert.doesNotMatch(r.stderr, STACK);
  assert.equal(r.stderr, 'error: x is not a function\n');
  assert.equal(r.code, 1);
  r = await run("Promise.reject(Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' }));");
  assert.equal(r.stderr, 'error: ECONNRESET: socket hang up\n');
  assert.equal(r.code, 1);
});

test('--json: an API error prints as the API\'s JSON error on stderr, exit 1', async () => {
  const r = await runCli(['start', 'web1', '--json'], fake.env);
  assert.equal(r.code, 1);
  assert.equal(r.stdout, '');
  assert.deepEqual(JSON.parse(r.stderr), { error: { code: 'INVALID_STATE', message: 'cannot start "web1": it is running' } });
  assert.equal(r.stderr.split('\n').length, 2); // one line
});

test('--json: the CLI\'s own errors are JSON too (daemon unreachable, usage)', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'corral-none-'));
  try {
    let r = await runCli(['list', '--json'], { CORRAL_DATA_DIR: dir });
    assert.equal(r.code, 1);
    const e = JSON.parse(r.stderr) as { error: { code: string; message: string } };
    assert.equal(e.error.code, 'DAEMON_UNREACHABLE');
    assert.match(e.error.message, /^cannot reach the corral daemon at /);
    r = await runCli(['create', 'x', '--image', 'tiny', '--cpus', 'two', '--json'], fake.env);
    assert.equal(r.code, 1);
    const u = JSON.parse(r.stderr) as { error: { code: string; message: string } };
    assert.equal(u.error.code, 'USAGE');
    assert.match(u.error.message, /--cpus.*two.*whole number/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  // without --json, the same errors stay one line of text
  const t = await runCli(['start', 'web1'], fake.env);
  assert.equal(t.stderr, 'error: INVALID_STATE: cannot start "web1": it is running\n');
});

test('INSTANCE_NOT_FOUND names the nearest instance (did you mean), in text and in JSON', async () => {
  let r = await runCli(['show', 'web'], fake.env);
  assert.equal(r.code, 1);
  assert.equal(r.stderr, 'error: INSTANCE_NOT_FOUND: instance "web" not found (did you mean "web1"?)\n');
  r = await runCli(['show', 'web', '--json'], fake.env);
  assert.deepEqual(JSON.parse(r.stderr), {
    error: { code: 'INSTANCE_NOT_FOUND', message: 'instance "web" not found (did you mean "web1"?)', name: 'web', didYouMean: 'web1' },
  });
  r = await runCli(['show', 'zzz'], fake.env);
  assert.equal(r.stderr, 'error: INSTANCE_NOT_FOUND: instance "zzz" not found\n');
});

test('nearestName: close names, swaps and unique prefixes; nothing for far names or ties', () => {
  assert.equal(editDistance('web', 'web1'), 1);
  assert.equal(editDistance('wbe1', 'web1'), 1);
  assert.equal(editDistance('', 'abc'), 3);
  assert.equal(nearestName('web', ['web1', 'db1']), 'web1');
  assert.equal(nearestName('wbe1', ['web1', 'db1']), 'web1');
  assert.equal(nearestName('data', ['data1', 'data2']), undefined); // a tie: no guess
  assert.equal(nearestName('zzz', ['web1', 'db1']), undefined);
  assert.equal(nearestName('frontend', ['frontend-blue-7']), 'frontend-blue-7'); // far by edits, but the only prefix
  assert.equal(nearestName('web1', ['web1']), undefined);
});
