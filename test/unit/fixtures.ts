import { execFileSync } from 'node:child_process';
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
