/** Golden files: compare what a test made with a file kept in test/fixtures; UPDATE_GOLDENS=1 rewrites them. */
import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';

/**
 * Assert that `got` equals the golden file `path`. A missing golden fails (so a new case cannot pass by
 * writing its own expectation); with UPDATE_GOLDENS=1 the file is (re)written first, to be reviewed in the diff.
 */
export function assertGolden(path: string, got: string): void {
  if (process.env.UPDATE_GOLDENS === '1') writeFileSync(path, got);
  else assert.ok(existsSync(path), `golden file ${path} is missing: run the test with UPDATE_GOLDENS=1 to write it, and review it`);
  assert.equal(got, readFileSync(path, 'utf8'), `output differs from the golden file ${path} (UPDATE_GOLDENS=1 rewrites it after an intended change)`);
}
