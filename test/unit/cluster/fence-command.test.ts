/**
 * The fence command runner: exit 0 is the only success (the host is off), with the host's name and address in the
 * command's environment; a non-zero status, a timeout (the command and what it started are killed, and the outcome
 * does not wait for them) and a file that cannot be run are failures that say why. A configured command must be an
 * absolute path to an executable file.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isCorralError } from '../../../src/core/errors.js';
import { checkFenceCommand, DEFAULT_FENCE_TIMEOUT_MS, fenceTimeoutMs, runFenceCommand } from '../../../src/cluster/fence-command.js';

const dir = mkdtempSync(join(tmpdir(), 'corral-fence-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const target = { host: 'h1', address: 'https://10.0.0.5:7443' };

function script(name: string, body: string): string {
  const path = join(dir, name);
  writeFileSync(path, `#!/bin/sh\n${body}\n`);
  chmodSync(path, 0o755);
  return path;
}

test('exit 0: the host is off; the command got its name and address', async () => {
  const marker = join(dir, 'marker');
  const out = await runFenceCommand(script('ok.sh', `echo "$CORRAL_FENCE_HOST $CORRAL_FENCE_ADDRESS" > ${marker}; echo powered off`), target);
  assert.equal(out.ok, true);
  assert.equal(out.reason, 'exited 0');
  assert.equal(out.exitCode, 0);
  assert.equal(out.output, 'powered off');
  assert.equal(readFileSync(marker, 'utf8'), 'h1 https://10.0.0.5:7443\n');
});

test('a non-zero status is a failure, with what the command said', async () => {
  const out = await runFenceCommand(script('fail.sh', 'echo "BMC 10.0.0.5: no answer" >&2; exit 3'), target);
  assert.equal(out.ok, false);
  assert.equal(out.reason, 'exited with status 3');
  assert.equal(out.exitCode, 3);
  assert.equal(out.output, 'BMC 10.0.0.5: no answer');
});

test('past its timeout the command and its children are killed and the run fails', { timeout: 20_000 }, async () => {
  const pidFile = join(dir, 'child.pid');
  // the child keeps the output pipes open: the outcome must not wait for it
  const out = await runFenceCommand(script('slow.sh', `sleep 60 & echo $! > ${pidFile}; echo waiting; wait`), target, 300);
  assert.equal(out.ok, false);
  assert.equal(out.reason, 'timed out after 300 ms (killed)');
  assert.equal(out.exitCode, null);
  const child = Number(readFileSync(pidFile, 'utf8'));
  let alive = true;
  for (let i = 0; i < 50 && alive; i++) {
    try {
      const stat = readFileSync(`/proc/${child}/stat`, 'utf8');
      alive = !/^\d+ \(.*\) Z/.test(stat);
    } catch {
      alive = false;
    }
    if (alive) await new Promise((r) => setTimeout(r, 100));
  }
  assert.equal(alive, false, 'its child was killed too');
});

test('a missing or unrunnable file is a failure saying it cannot be run; the configuration refuses it first', async () => {
  const missing = await runFenceCommand(join(dir, 'nope.sh'), target);
  assert.equal(missing.ok, false);
  assert.match(missing.reason, /^cannot be run: ENOENT/);
  const plain = join(dir, 'plain.sh');
  writeFileSync(plain, '#!/bin/sh\nexit 0\n');
  const notExec = await runFenceCommand(plain, target);
  assert.match(notExec.reason, /^cannot be run: EACCES/);

  const refused = (path: string, words: RegExp) => () => assert.throws(() => checkFenceCommand(path), (e: unknown) => isCorralError(e) && e.code === 'INVALID_CONFIG' && words.test(e.message));
  refused(join(dir, 'nope.sh'), /not an executable file \(ENOENT\)/)();
  refused(plain, /not an executable file \(EACCES\)/)();
  refused(dir, /not an executable file/)();
  refused('fence.sh', /must be an absolute path/)();
  assert.equal(checkFenceCommand(join(dir, 'ok.sh')), join(dir, 'ok.sh'));
  assert.equal(fenceTimeoutMs(undefined), DEFAULT_FENCE_TIMEOUT_MS);
  assert.equal(fenceTimeoutMs('1500'), 1500);
  assert.throws(() => fenceTimeoutMs('soon'), (e: unknown) => isCorralError(e) && e.code === 'INVALID_CONFIG');
});
