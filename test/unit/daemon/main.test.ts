/** The daemon's pool settings from options and the environment. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { poolConfigFrom } from '../../../src/daemon/main.js';
import { MiB } from '../../../src/core/units.js';

test('CORRAL_RESERVED_MEMORY is a size with a unit; a bare number is refused rather than read as bytes', () => {
  assert.equal(poolConfigFrom(undefined, { CORRAL_RESERVED_MEMORY: '512M' }).reservedMemory, 512 * MiB);
  assert.equal(poolConfigFrom(undefined, { CORRAL_RESERVED_MEMORY: '1G' }).reservedMemory, 1024 * MiB);
  assert.equal(poolConfigFrom(undefined, { CORRAL_RESERVED_MEMORY: '0' }).reservedMemory, 0);
  assert.equal(poolConfigFrom(undefined, { CORRAL_RESERVED_MEMORY: '' }).reservedMemory, 512 * MiB);
  assert.throws(() => poolConfigFrom(undefined, { CORRAL_RESERVED_MEMORY: '536870912' }), /pool\.reservedMemory: "536870912" has no unit/);
  assert.throws(() => poolConfigFrom({ reservedMemory: '1000' }, {}), /no unit/);
  const c = poolConfigFrom(undefined, { CORRAL_CPU_RATIO: '2', CORRAL_MEMORY_RATIO: '1.5' });
  assert.deepEqual([c.cpuRatio, c.memoryRatio], [2, 1.5]);
});
