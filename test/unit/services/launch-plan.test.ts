import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { instancePaths } from '../../../src/core/paths.js';
import { buildArgv } from '../../../src/qemu/argv.js';
import { FIXTURES } from '../fixtures.js';
import { assertGolden } from '../golden.js';
import { CASES, DATA_DIR, UUID, build } from './launch-plan-cases.js';

// Goldens of the spec -> launch plan -> argv steps: test/fixtures/launch-plan/NAME.plan.json (the plan
// launchPlan makes of a stored instance) and NAME.args (its command line, one argument a line). A missing
// golden fails; UPDATE_GOLDENS=1 rewrites them after an intended change, to be reviewed in the diff.

// runtime.ts reads the OVMF paths when it is loaded: fix them so the goldens do not depend on the environment.
process.env.CORRAL_OVMF_CODE = '/usr/share/OVMF/OVMF_CODE_4M.fd';
process.env.CORRAL_OVMF_VARS = '/usr/share/OVMF/OVMF_VARS_4M.fd';
const { launchPlan } = await import('../../../src/services/runtime.js');

const dir = join(FIXTURES, 'launch-plan');

for (const [name, c] of Object.entries(CASES)) {
  test(`launch plan golden: ${name}`, () => {
    const { row, image, accel, extras } = build(name, c);
    const plan = launchPlan(row, image, accel, instancePaths(DATA_DIR, UUID), extras);
    assertGolden(join(dir, `${name}.plan.json`), `${JSON.stringify(plan, null, 2)}\n`);
    assertGolden(join(dir, `${name}.args`), `${buildArgv(plan).join('\n')}\n`);
  });
}

test('every launch-plan golden file belongs to a case (a case removed takes its goldens with it)', () => {
  const names = new Set(Object.keys(CASES));
  const stray = readdirSync(dir).filter((f) => !names.has(f.replace(/\.(plan\.json|args)$/, '')));
  assert.deepEqual(stray, []);
});
