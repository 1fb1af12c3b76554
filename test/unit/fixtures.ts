import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { CorralError } from '../../src/core/errors.js';
import { fileURLToPath } from 'node:url';

/** test/fixtures in the source tree (tests run from dist/test/unit). */
export const FIXTURES = fileURLToPath(new URL('../../../test/fixtures/', import.meta.url));

/** Whether a program runs here (`BIN --version` exits 0). */
export function have(bin: string, args = ['--version']): boolean {
  try {
    execFileSync(bin, args, { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** node:test's skip option for tests that need qemu-img. */
export const SKIP_NO_QEMU_IMG: string | false = have('qemu-img') ? false : 'qemu-img (Debian package qemu-utils) is not installed';

/** node:test's skip option for tests that check a ruleset with `nft -c` (needs root and nftables). */
export const SKIP_NO_NFT_CHECK: string | false = process.getuid?.() !== 0 ? 'nft -c needs root'
  : have('nft') ? false : 'nft (Debian package nftables) is not installed';

/** Assert that fn throws INVALID_SPEC naming `field` (and, given, a message matching `message`). */
export function assertInvalidSpec(fn: () => unknown, field: string, message?: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof CorralError, String(e));
    assert.equal(e.code, 'INVALID_SPEC');
    assert.equal(e.details.field, field);
    if (message) assert.match(e.message, message);
    return true;
  });
}
