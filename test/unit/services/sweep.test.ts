import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sweepInstanceDirs } from '../../../src/services/sweep.js';

test('the sweep removes folders of no instance and the backups a copy or export left in the others\'', () => {
  const data = mkdtempSync(join(tmpdir(), 'corral-sweep-'));
  try {
    const known = '11111111-2222-3333-4444-555555555555';
    const stray = '99999999-2222-3333-4444-555555555555';
    for (const u of [known, stray]) mkdirSync(join(data, 'instances', u), { recursive: true });
    writeFileSync(join(data, 'instances', known, 'root.qcow2'), 'disk');
    writeFileSync(join(data, 'instances', known, 'backup-0123abcd.qcow2'), 'left by a crash');
    writeFileSync(join(data, 'instances', known, 'backup-0123abcd-1.qcow2'), 'a volume\'s backup left by a crash');
    writeFileSync(join(data, 'instances', stray, 'archive-root.qcow2'), 'an import cut short');
    const gone = sweepInstanceDirs(data, [{ uuid: known }]);
    assert.deepEqual(gone.sort(), [join(data, 'instances', known, 'backup-0123abcd.qcow2'), join(data, 'instances', known, 'backup-0123abcd-1.qcow2'), join(data, 'instances', stray)].sort());
    assert.ok(existsSync(join(data, 'instances', known, 'root.qcow2')));
  } finally {
    rmSync(data, { recursive: true, force: true });
  }
});
