/** corral migrate's progress lines on a terminal: the base image on its way, the disk mirrors, then the RAM. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { diskLine, migrationLine } from '../../../src/cli/migrate.js';

const MiB = 1024 * 1024;

test('the disks\' line: the image sent, then each mirror with the sums; the RAM\'s line after', () => {
  assert.equal(diskLine({ phase: 'image', image: 'tiny', doneBytes: 12 * MiB, totalBytes: 20 * MiB }), 'image tiny  12 MiB of 20 MiB');
  const line = diskLine({
    phase: 'mirror', status: 'copying', doneBytes: 70 * MiB, totalBytes: 200 * MiB, error: null,
    disks: [
      { disk: 'disk0', volume: null, status: 'ready', doneBytes: 9 * MiB, totalBytes: 9 * MiB, ready: true, error: null },
      { disk: 'vol-data', volume: 'data', status: 'running', doneBytes: 61 * MiB, totalBytes: 191 * MiB, ready: false, error: null },
    ],
  });
  assert.equal(line, 'disks copying  70 MiB of 200 MiB  disk0 9 MiB of 9 MiB ready  vol-data 61 MiB of 191 MiB');
  assert.match(migrationLine({ status: 'active', passes: 1, remainingBytes: MiB, totalBytes: 128 * MiB, rate: null, dirtyRate: null, expectedDowntimeMs: null } as never), /^active  pass 1  RAM left 1 MiB of 128 MiB$/);
});
