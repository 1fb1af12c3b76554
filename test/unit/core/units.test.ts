/** Sizes: a string needs a unit (a bare "1000" is refused, not 1000 bytes); a JSON number is bytes; sizes print in human units. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { assertInvalidSpec } from '../fixtures.js';
import { GiB, KiB, MiB, formatSize, formatSizeExact, parseSize } from '../../../src/core/units.js';
import { validateCreate } from '../../../src/core/spec.js';
import { validatePoolConfig } from '../../../src/core/pool.js';

const host = { cpus: 4, memory: 8 * GiB, cpuList: [0, 1, 2, 3] };

const refused = assertInvalidSpec;

test('a size string without a unit is refused, suggesting one', () => {
  refused(() => parseSize('size', '1000'), 'size', /^size: "1000" has no unit: .*"1000M"/);
  refused(() => parseSize('size', ' 1000 '), 'size', /"1000M"/);
  refused(() => parseSize('memory', '1.5'), 'memory', /"1\.5G"/);
  // bytes can still be said, with a unit or as a JSON number
  assert.equal(parseSize('size', '1000B'), 1000);
  assert.equal(parseSize('size', '1000b'), 1000);
  assert.equal(parseSize('size', 1000), 1000);
  assert.equal(parseSize('size', '1000M'), 1000 * MiB);
  assert.equal(parseSize('size', '2 GiB'), 2 * GiB);
});

test('every size field of a create refuses a bare number string', () => {
  const base = { name: 'a', image: 'tiny' };
  refused(() => validateCreate({ ...base, memory: '512' }, host), 'memory', /no unit/);
  refused(() => validateCreate({ ...base, disk: '10' }, host), 'disk', /no unit/);
  refused(() => validateCreate({ ...base, maxMemory: '2048' }, host), 'maxMemory', /no unit/);
  refused(() => validateCreate({ ...base, memoryLimit: '1024' }, host), 'memoryLimit', /no unit/);
  assert.equal(validateCreate({ ...base, memory: 512 * MiB }, host).spec.memory, 512 * MiB);
  refused(() => validatePoolConfig({ reservedMemory: '536870912' }), 'reservedMemory', /no unit/);
  assert.equal(validatePoolConfig({ reservedMemory: '0' }).reservedMemory, 0);
  assert.equal(validatePoolConfig({ reservedMemory: 536870912 }).reservedMemory, 512 * MiB);
});

test('messages print sizes in human units', () => {
  refused(() => validateCreate({ name: 'a', image: 'tiny', memory: 32 * MiB }, host), 'memory', /got 32 MiB$/);
  refused(() => validateCreate({ name: 'a', image: 'tiny', disk: '10M' }, host), 'disk', /got 10 MiB$/);
  assert.equal(formatSizeExact(2 * GiB), '2 GiB');
  assert.equal(formatSizeExact(1536 * MiB), '1.5 GiB');
  assert.equal(formatSizeExact(100 * MiB), '100 MiB');
  assert.equal(formatSizeExact(1000), '1000 B');
  assert.equal(formatSizeExact(4 * KiB), '4 KiB');
  // no unit shows it exactly: the bytes come along, so two different sizes never read the same
  assert.equal(formatSizeExact(GiB + 512), '1 GiB (1073742336 bytes)');
  assert.equal(formatSize(GiB + 512), '1 GiB');
});
