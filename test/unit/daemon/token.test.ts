/**
 * The TCP API fails closed: whatever the token file holds, the daemon either has a usable token or refuses to
 * start with INVALID_CONFIG naming the file, and then it listens on nothing (neither the port nor the socket).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ensureToken, MIN_TOKEN_LENGTH } from '../../../src/daemon/token.js';
import { runDaemon } from '../../../src/daemon/main.js';
import { CorralError } from '../../../src/core/errors.js';

function withDir(fn: (dir: string) => Promise<void> | void): () => Promise<void> {
  return async () => {
    const dir = mkdtempSync(join(tmpdir(), 'corral-token-'));
    chmodSync(dir, 0o755);
    try {
      await fn(dir);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  };
}

/** A free TCP port on 127.0.0.1. */
async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

function refused(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const c = connect(port, '127.0.0.1');
    c.on('connect', () => { c.destroy(); resolve(false); });
    c.on('error', (e: NodeJS.ErrnoException) => resolve(e.code === 'ECONNREFUSED'));
  });
}

const bad: Array<[string, (file: string) => void, RegExp]> = [
  ['empty', (f) => writeFileSync(f, ''), /is empty/],
  ['whitespace only', (f) => writeFileSync(f, '  \n\t\n'), /holds only whitespace/],
  ['too short', (f) => writeFileSync(f, 's3cret\n'), /holds a token of 6 characters, shorter than the 32 required/],
  ['a directory', (f) => mkdirSync(f), /is a directory/],
  ['a space inside', (f) => writeFileSync(f, `${'a'.repeat(20)} ${'b'.repeat(20)}\n`), /not printable ASCII/],
  ['a symlink to nothing', (f) => symlinkSync(join(f, '..', 'nowhere'), f), /symlink to nothing/],
];

for (const [what, make, message] of bad) {
  test(`a token file that is ${what}: INVALID_CONFIG naming the file and the fix`, withDir((dir) => {
    const file = join(dir, 'token');
    make(file);
    assert.throws(() => ensureToken(file), (e: unknown) => {
      assert.ok(e instanceof CorralError);
      assert.equal(e.code, 'INVALID_CONFIG');
      assert.match(e.message, message);
      assert.ok(e.message.includes(file), e.message);
      assert.equal(e.details.file, file);
      assert.equal(typeof e.details.fix, 'string');
      return true;
    });
    assert.equal(existsSync(join(dir, 'nowhere')), false); // nothing written through the symlink
  }));

  test(`the daemon with --listen and a token file that is ${what} refuses to start and listens on nothing`, withDir(async (dir) => {
    make(join(dir, 'token'));
    const port = await freePort();
    await assert.rejects(runDaemon({ dataDir: dir, listen: `127.0.0.1:${port}` }), (e: unknown) => e instanceof CorralError && e.code === 'INVALID_CONFIG' && message.test(e.message));
    assert.equal(await refused(port), true);
    assert.equal(existsSync(join(dir, 'corral.sock')), false);
    assert.equal(existsSync(join(dir, 'corral.db')), false); // refused before the store was opened
  }));
}

test('a missing token file is made: 64 hex characters, mode 0600; a good one is read back as it is', withDir((dir) => {
  const file = join(dir, 'token');
  const made = ensureToken(file);
  assert.match(made, /^[0-9a-f]{64}$/);
  assert.equal(statSync(file).mode & 0o777, 0o600);
  assert.equal(ensureToken(file), made);
  const mine = 'x'.repeat(MIN_TOKEN_LENGTH);
  writeFileSync(file, `  ${mine}\n`);
  assert.equal(ensureToken(file), mine);
}));

test('a token file the daemon cannot read: INVALID_CONFIG saying so', withDir((dir) => {
  const file = join(dir, 'token');
  writeFileSync(file, `${'y'.repeat(64)}\n`, { mode: 0o600 });
  if (process.getuid?.() !== 0) {
    chmodSync(file, 0);
    assert.throws(() => ensureToken(file), /cannot be read \(EACCES\)/);
    return;
  }
  // root reads any file: read it as nobody instead
  const module = fileURLToPath(new URL('../../../src/daemon/token.js', import.meta.url));
  const script = `import(${JSON.stringify(module)}).then((m) => { try { m.ensureToken(${JSON.stringify(file)}); console.log('read'); } catch (e) { console.log(e.code + ': ' + e.message); } })`;
  const r = spawnSync(process.execPath, ['-e', script], { uid: 65534, gid: 65534, encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /^INVALID_CONFIG: the TCP API's token file .*token cannot be read \(EACCES\)/);
  assert.equal(readFileSync(file, 'utf8'), `${'y'.repeat(64)}\n`);
}));
