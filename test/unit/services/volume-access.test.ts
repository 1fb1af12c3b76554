import { test } from 'node:test';
import assert from 'node:assert/strict';
import { volumeAccess } from '../../../src/services/volume-access.js';

const records = [
  { name: 'base', backing: null },
  { name: 'clone1', backing: 'base' },
  { name: 'clone2', backing: 'clone1' },
  { name: 'solo', backing: null },
  { name: 'idle', backing: null },
];

test('volume access: what a live VM has attached is given, the chain it reads is lent, the rest is nobody\'s', () => {
  const a = volumeAccess(records, [['clone2'], ['solo']]);
  assert.deepEqual(Object.fromEntries(a), { clone2: 'given', clone1: 'lent', base: 'lent', solo: 'given' });
  assert.equal(a.get('idle'), undefined, 'a detached volume, or one of a stopped VM, stays closed');
  assert.deepEqual(volumeAccess(records, []).size, 0, 'no live VM: every volume is root\'s');
  // one VM writes a volume another reads under its clone: given wins (the start that would do so is refused anyway)
  assert.equal(volumeAccess(records, [['clone1'], ['clone2']]).get('clone1'), 'given');
  assert.equal(volumeAccess(records, [['clone2'], ['clone1']]).get('clone1'), 'given');
});
