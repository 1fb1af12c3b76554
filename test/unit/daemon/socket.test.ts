/** The daemon unlinks its API socket at exit only if the file is still its own. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { claimSocket } from '../../../src/daemon/main.js';

test('release unlinks the socket it claimed', () => {
  const dir = mkdtempSync(join(tmpdir(), 'corral-sock-'));
  try {
    const path = join(dir, 'corral.sock');
    writeFileSync(path, '');
    const claim = claimSocket(path);
    assert.equal(claim.release(), true);
    assert.equal(existsSync(path), false);
    assert.equal(claim.release(), false); // already gone: nothing to do
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('release leaves alone a socket another daemon has put in its place', () => {
  const dir = mkdtempSync(join(tmpdir(), 'corral-sock-'));
  try {
    const path = join(dir, 'corral.sock');
    writeFileSync(path, 'old');
    const claim = claimSocket(path);
    writeFileSync(join(dir, 'new'), 'new');
    renameSync(join(dir, 'new'), path); // the new daemon's socket, renamed into place
    assert.equal(claim.release(), false);
    assert.equal(existsSync(path), true);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
