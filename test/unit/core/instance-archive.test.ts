import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isCorralError } from '../../../src/core/errors.js';
import { ARCHIVE_FORMAT, copySpec, decodeManifest, encodeManifest, notCopyable, validateManifest, type ArchiveManifest } from '../../../src/core/instance-archive.js';
import { macFor } from '../../../src/core/nics.js';
import { validateCreate, type InstanceSpec } from '../../../src/core/spec.js';

const host = { cpus: 4, memory: 8 * 1024 ** 3, cpuList: [0, 1, 2, 3] };

function spec(): InstanceSpec {
  const s = validateCreate({ name: 'web', image: 'tiny' }, host).spec;
  s.nics = [
    { id: 'net0', model: 'virtio-net', network: 'user', mac: '52:54:00:aa:bb:cc', queues: 1, forwards: [{ proto: 'tcp', hostAddr: '127.0.0.1', hostPort: 2222, guestPort: 22 }] },
    { id: 'net1', model: 'virtio-net', network: 'br0', mac: '52:54:00:aa:bb:cd', queues: 1, address: '10.9.0.10' },
  ];
  s.hostdevs = [{ id: 'hostdev0', address: '0000:03:00.0' }];
  return s;
}

function manifest(): ArchiveManifest {
  return {
    format: ARCHIVE_FORMAT, version: 1, createdAt: '2026-12-01T00:00:00.000Z', instance: { name: 'web', spec: spec() },
    image: { name: 'tiny', kind: 'kernel', digest: 'd'.repeat(64) }, consistency: 'backup',
    files: [{ role: 'root', name: 'disks/root.qcow2', format: 'qcow2', size: 1000, sha256: 'a'.repeat(64), virtualSize: 134217728 }],
  };
}

function refused(m: unknown, field: RegExp): void {
  assert.throws(() => validateManifest(m), (e: unknown) => isCorralError(e) && e.code === 'INVALID_ARCHIVE' && field.test(String(e.details.field)), `expected a refusal on ${field}`);
}

test('a manifest reads back as written', () => {
  const m = manifest();
  assert.deepEqual(decodeManifest(encodeManifest(m)), m);
});

test('a manifest that is not Corral\'s, of another version, or with a wrong field is INVALID_ARCHIVE naming the field', () => {
  refused({ ...manifest(), format: 'other' }, /^format$/);
  refused({ ...manifest(), version: 2 }, /^version$/);
  refused({ ...manifest(), instance: { name: 'Bad Name', spec: spec() } }, /^instance\.name$/);
  refused({ ...manifest(), instance: { name: 'web', spec: { ...spec(), cpus: 'two' } } }, /^instance\.spec\.cpus$/);
  refused({ ...manifest(), image: { name: 'other', kind: 'kernel', digest: 'x' } }, /^image\.name$/);
  const f = manifest().files[0]!;
  refused({ ...manifest(), files: [{ ...f, sha256: 'nope' }] }, /sha256/);
  refused({ ...manifest(), files: [{ ...f, name: '../../etc/passwd' }] }, /name/);
  refused({ ...manifest(), files: [{ ...f, size: -1 }] }, /size/);
  refused({ ...manifest(), files: [] }, /^files$/);
  refused({ ...manifest(), files: [f, f] }, /^files$/);
  // a UEFI instance comes with its variable store, and a BIOS one without
  refused({ ...manifest(), instance: { name: 'web', spec: { ...spec(), firmware: 'uefi' } } }, /^files$/);
  assert.throws(() => decodeManifest(Buffer.from('{not json')), (e: unknown) => isCorralError(e) && e.code === 'INVALID_ARCHIVE');
});

test('a copy\'s spec: new MACs from its uuid, no fixed address, no forwards, no host devices; the rest the same', () => {
  const s = spec();
  const uuid = '11111111-2222-3333-4444-555555555555';
  const c = copySpec(s, uuid, new Set());
  assert.deepEqual(c.nics.map((n) => n.mac), [macFor(uuid, 0), macFor(uuid, 1)]);
  assert.ok(c.nics.every((n) => n.address === undefined && n.forwards === undefined));
  assert.deepEqual(c.hostdevs, []);
  assert.deepEqual({ ...c, nics: [], hostdevs: [] }, { ...s, nics: [], hostdevs: [] });
  // the source is untouched
  assert.equal(s.nics[1]!.address, '10.9.0.10');
  // a MAC in use is skipped
  const taken = new Set([macFor(uuid, 0)]);
  const c2 = copySpec(s, uuid, taken);
  assert.notEqual(c2.nics[0]!.mac, macFor(uuid, 0));
  assert.notEqual(c2.nics[0]!.mac, c2.nics[1]!.mac);
});

test('volumes attached or a root disk on the shared pool: not copyable, saying why', () => {
  assert.equal(notCopyable('web', spec()), null);
  const v = notCopyable('web', { ...spec(), disks: [{ volume: 'data1', bus: 'virtio-blk' }] });
  assert.ok(v && v.code === 'INVALID_STATE' && /data1/.test(v.message));
  assert.equal(notCopyable('web', { ...spec(), rootPool: 'shared' })?.code, 'INVALID_STATE');
});
