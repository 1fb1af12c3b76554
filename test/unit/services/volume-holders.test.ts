/** Naming who holds a volume QEMU could not lock: pure, on QEMU's own messages (QEMU 7.2). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CorralError } from '../../../src/core/errors.js';
import { chainOf, holdersOf, lockHolderError, type InstanceUse, type VolumeLink } from '../../../src/services/volume-holders.js';

const records: VolumeLink[] = [
  { name: 'base', backing: null },
  { name: 'copy', backing: 'base' },
  { name: 'copy2', backing: 'copy' },
  { name: 'other', backing: null },
  { name: 'sibling', backing: 'base' },
];

/** What QEMU prints (its first stderr line is the error the launch reports) when a -blockdev cannot be locked. */
function qemuLockFailure(node: string, path: string, backing: boolean): CorralError {
  const blockdev = JSON.stringify({ driver: 'qcow2', 'node-name': node, 'read-only': false, file: { driver: 'file', filename: path } });
  const why = backing ? 'Could not open backing file: Failed to get shared "write" lock' : 'Failed to get "write" lock';
  return new CorralError('QEMU_FAILED', `qemu-system-x86_64: -blockdev ${blockdev}: ${why}`, { exitCode: 1, signal: null });
}

test('chainOf follows clones down to their source and survives a loop', () => {
  assert.deepEqual(chainOf('copy2', records), ['copy2', 'copy', 'base']);
  assert.deepEqual(chainOf('base', records), ['base']);
  assert.deepEqual(chainOf('gone', records), ['gone']);
  assert.deepEqual(chainOf('a', [{ name: 'a', backing: 'b' }, { name: 'b', backing: 'a' }]), ['a', 'b']);
});

test('holders: who opens the volume, or writes what it is a clone of; two readers of one source do not conflict', () => {
  const instances: InstanceUse[] = [
    { name: 'writer', alive: true, volumes: ['base'] },
    { name: 'reader', alive: true, volumes: ['sibling'] },
    { name: 'stopped', alive: false, volumes: ['copy'] },
    { name: 'unrelated', alive: true, volumes: ['other'] },
  ];
  // starting with `copy` attached: "writer" writes its source; "reader" only reads the same source
  assert.deepEqual(holdersOf('copy', records, instances, 'me'), ['writer']);
  // starting with `base` attached: both have it open (one writes it, one reads it under a clone)
  assert.deepEqual(holdersOf('base', records, instances, 'me'), ['writer', 'reader']);
  assert.deepEqual(holdersOf('other', records, instances, 'unrelated'), []);
});

test('a QEMU lock failure at start becomes VOLUME_IN_USE naming the volume and its holder', () => {
  const instances: InstanceUse[] = [{ name: 'vm1', alive: true, volumes: ['base'] }, { name: 'vm2', alive: false, volumes: ['copy'] }];
  const direct = lockHolderError(qemuLockFailure('vol-base-fmt', '/v/base/disk.qcow2', false), 'vm2', ['base'], records, instances);
  assert.ok(direct instanceof CorralError);
  assert.equal(direct.code, 'VOLUME_IN_USE');
  assert.equal(direct.status, 409);
  assert.equal(direct.message, 'volume "base" cannot be opened by instance "vm2": its image is held by instance "vm1" (Failed to get "write" lock); stop it first');
  assert.deepEqual(direct.details, { name: 'base', instance: 'vm1', holders: ['vm1'], reason: 'image locked' });

  const viaBacking = lockHolderError(qemuLockFailure('vol-copy-fmt', '/v/copy/disk.qcow2', true), 'vm2', ['other', 'copy'], records, instances);
  assert.ok(viaBacking instanceof CorralError && viaBacking.code === 'VOLUME_IN_USE');
  assert.match(viaBacking.message, /^volume "copy" cannot be opened by instance "vm2": an image it is a clone of is held by instance "vm1"/);
  assert.match(viaBacking.message, /Failed to get shared "write" lock/);
});

test('no Corral instance holds it: the message says so; a storage daemon\'s refusal is named too', () => {
  const none = lockHolderError(qemuLockFailure('vol-other-fmt', '/v/other/disk.qcow2', false), 'vm2', ['other'], records, []);
  assert.ok(none instanceof CorralError && none.code === 'VOLUME_IN_USE');
  assert.match(none.message, /held by a process that is not a Corral instance/);
  assert.equal(none.details.instance, null);

  const qsd = new CorralError('VOLUME_IN_USE', 'volume "base" cannot be served over vhost-user: its image is open in another process (Failed to get "write" lock)', { name: 'base', reason: 'image locked' });
  const named = lockHolderError(qsd, 'vm2', ['base'], records, [{ name: 'vm1', alive: true, volumes: ['copy'] }]);
  assert.ok(named instanceof CorralError);
  assert.match(named.message, /volume "base" cannot be opened by instance "vm2": its image is held by instance "vm1"/);
});

test('other errors, and a lock failure on no volume of the instance (its root disk), are left alone', () => {
  const other = new CorralError('QEMU_FAILED', 'qemu-system-x86_64: -device foo: no such device');
  assert.equal(lockHolderError(other, 'vm2', ['base'], records, []), other);
  const root = qemuLockFailure('disk0-fmt', '/i/root.qcow2', false);
  assert.equal(lockHolderError(root, 'vm2', ['base'], records, []), root);
  const plain = new Error('boom');
  assert.equal(lockHolderError(plain, 'vm2', ['base'], records, []), plain);
});
