import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isCorralError } from '../../../src/core/errors.js';
import { ARCHIVE_FORMAT, ARCHIVE_VERSION, copiedSnapshots, copiedVolumeName, copySpec, decodeManifest, encodeManifest, importedSpec, notCopyable, notWhole, validateManifest, type ArchiveFile, type ArchiveManifest } from '../../../src/core/instance-archive.js';
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
  refused({ ...manifest(), version: 3 }, /^version$/);
  refused({ ...manifest(), version: '2' }, /^version$/);
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

test('volumes on virtio, SCSI or SATA (qcow2 or raw) are copyable; vhost-user disks or a root disk on the shared pool (for a copy, not an archive) are not, naming them', () => {
  assert.equal(notCopyable('web', spec()), null);
  const disks = [{ volume: 'data1', bus: 'virtio-blk' as const }, { volume: 'data2', bus: 'virtio-scsi' as const }];
  assert.equal(notCopyable('web', { ...spec(), disks }), null);
  const vhost = notCopyable('web', { ...spec(), disks: [...disks, { volume: 'fast', bus: 'vhost-user-blk' }] });
  assert.ok(vhost && vhost.code === 'INVALID_STATE' && /fast/.test(vhost.message) && /vhost-user/.test(vhost.message));
  const shared = notCopyable('web', { ...spec(), rootPool: 'shared' });
  assert.deepEqual([shared?.code, shared?.details.field], ['INVALID_STATE', 'pool']);
  assert.match(shared!.message, /export it and import the archive/);
  // an archive only reads the shared disk
  assert.equal(notCopyable('web', { ...spec(), rootPool: 'shared', ha: true }, true), null);
  assert.equal(notCopyable('web', { ...spec(), disks: [{ volume: 'fast', bus: 'vhost-user-blk' }] }, true)?.code, 'INVALID_STATE');
});

test('an imported instance\'s spec: new MACs, its archive\'s volumes, and its root disk local and not HA, whatever it was', () => {
  const uuid = '6f1c1a2e-1111-4222-8333-444455556666';
  const disks = [{ volume: 'data1', bus: 'virtio-blk' as const }];
  const s = importedSpec({ ...spec(), disks, rootPool: 'shared', ha: true }, uuid, new Set());
  assert.equal(s.rootPool, undefined);
  assert.equal(s.ha, undefined);
  assert.deepEqual(s.disks, disks);
  assert.equal(s.nics[0]!.mac, macFor(uuid, 0));
  assert.deepEqual(s.hostdevs, []);
});

function withVolumes(): ArchiveManifest {
  const m = manifest();
  m.instance.spec.disks = [{ volume: 'data1', bus: 'virtio-blk' }, { volume: 'logs', bus: 'sata' }];
  m.files.push(
    { role: 'volume', name: 'disks/volumes/data1.qcow2', format: 'qcow2', size: 300, sha256: 'b'.repeat(64), virtualSize: 1 << 30, volume: 'data1', bus: 'virtio-blk' },
    { role: 'volume', name: 'disks/volumes/logs.qcow2', format: 'qcow2', size: 200, sha256: 'c'.repeat(64), virtualSize: 1 << 20, volume: 'logs', bus: 'sata' },
  );
  return m;
}

test('a manifest with volumes reads back; each is the spec\'s disk, in order, with its name, bus and size, last', () => {
  const m = withVolumes();
  assert.deepEqual(decodeManifest(encodeManifest(m)), m);
  const [root, a, b] = m.files as [ArchiveFile, ArchiveFile, ArchiveFile];
  refused({ ...m, files: [root, b, a] }, /^files$/);
  refused({ ...m, files: [root, a] }, /^files$/);
  refused({ ...m, files: [root, a, { ...b, bus: 'ide' }] }, /^files$/);
  refused({ ...m, files: [root, a, { ...b, bus: 'floppy' }] }, /files\[2\]\.bus/);
  refused({ ...m, files: [root, a, { ...b, name: 'disks/volumes/other.qcow2' }] }, /files\[2\]\.name/);
  refused({ ...m, files: [root, a, { ...b, volume: '../x', name: 'disks/volumes/../x.qcow2' }] }, /files\[2\]\.volume/);
  refused({ ...m, files: [root, a, { ...b, virtualSize: 0 }] }, /files\[2\]\.virtualSize/);
  // the UEFI variables come before the volumes
  const uefi = withVolumes();
  uefi.instance.spec.firmware = 'uefi';
  const vars: ArchiveFile = { role: 'efi-vars', name: 'efi-vars.fd', format: 'raw', size: 10, sha256: 'e'.repeat(64) };
  assert.deepEqual(validateManifest({ ...uefi, files: [root, vars, a, b] }).files.map((f) => f.role), ['root', 'efi-vars', 'volume', 'volume']);
  refused({ ...uefi, files: [root, a, b, vars] }, /^files$/);
});

test('a copy\'s volumes are named after the copy, within the name rules; its spec takes the disks given', () => {
  assert.equal(copiedVolumeName('web2', 'data1'), 'web2-data1');
  assert.throws(() => copiedVolumeName('w'.repeat(40), 'd'.repeat(30)), (e: unknown) => isCorralError(e) && e.code === 'INVALID_SPEC');
  const s = { ...spec(), disks: [{ volume: 'data1', bus: 'virtio-blk' as const }] };
  assert.deepEqual(copySpec(s, '11111111-2222-3333-4444-555555555555', new Set()).disks, []);
  assert.deepEqual(copySpec(s, '11111111-2222-3333-4444-555555555555', new Set(), [{ volume: 'web2-data1', bus: 'virtio-blk' }]).disks, [{ volume: 'web2-data1', bus: 'virtio-blk' }]);
});

test('an archive with snapshots carries their records: each ready, of the instance\'s disks, read back as written', () => {
  const m = withVolumes();
  m.consistency = 'stopped';
  const rec = {
    name: 's1', createdAt: '2026-12-01T00:00:00.000Z', phase: 'ready' as const, memory: false, frozen: true, instanceState: 'running' as const,
    vmStateSize: 0, cpus: 1, memoryBytes: 268435456,
    disks: [{ disk: 'root', dateSec: 1764547200, dateNsec: 5, vmStateSize: 0 }, { disk: 'data1', dateSec: 1764547200, dateNsec: 6, vmStateSize: 0 }],
  };
  m.snapshots = [rec];
  assert.deepEqual(decodeManifest(encodeManifest(m)), m);
  refused({ ...m, consistency: 'backup' }, /^snapshots$/);
  refused({ ...m, snapshots: [{ ...rec, phase: 'creating' }] }, /snapshots\[0\]\.phase/);
  refused({ ...m, snapshots: [rec, rec] }, /snapshots\[1\]\.name/);
  refused({ ...m, snapshots: [{ ...rec, name: 'Bad Name' }] }, /snapshots\[0\]\.name/);
  refused({ ...m, snapshots: [{ ...rec, disks: [{ disk: 'other', dateSec: 1, dateNsec: 0, vmStateSize: 0 }] }] }, /snapshots\[0\]\.disks\[0\]/);
  refused({ ...m, snapshots: [{ ...rec, cpus: -1 }] }, /snapshots\[0\]/);
  refused({ ...m, snapshots: {} }, /^snapshots$/);
  // without snapshots the manifest has none
  assert.equal(validateManifest(withVolumes()).snapshots, undefined);
});

/** A version 2 archive with snapshots: the root disk and volume data1 (qcow2) whole and gzipped, volume logs raw. */
function whole(): ArchiveManifest {
  const m = withVolumes();
  m.version = ARCHIVE_VERSION;
  m.consistency = 'stopped';
  const [root, a, b] = m.files as [ArchiveFile, ArchiveFile, ArchiveFile];
  m.files = [
    { ...root, name: 'disks/root.qcow2.gz', compression: 'gzip', unpackedSize: 5000 },
    { ...a, name: 'disks/volumes/data1.qcow2.gz', compression: 'gzip', unpackedSize: 4000 },
    { ...b, format: 'raw' },
  ];
  m.snapshots = [{
    name: 's1', createdAt: '2026-12-01T00:00:00.000Z', phase: 'ready', memory: false, frozen: false, instanceState: 'stopped', vmStateSize: 0, cpus: 1, memoryBytes: 268435456,
    disks: [{ disk: 'root', dateSec: 1, dateNsec: 0, vmStateSize: 0 }, { disk: 'data1', dateSec: 1, dateNsec: 0, vmStateSize: 0 }],
  }];
  return m;
}

test('version 2: a raw volume\'s entry says raw, a whole disk is gzipped (its member .gz, its unpacked size given); version 1 has neither and still reads', () => {
  assert.equal(ARCHIVE_VERSION, 2);
  const m = whole();
  assert.deepEqual(decodeManifest(encodeManifest(m)), m);
  const [root, a, b] = m.files as [ArchiveFile, ArchiveFile, ArchiveFile];
  refused({ ...m, files: [{ ...root, name: 'disks/root.qcow2' }, a, b] }, /files\[0\]\.name/);
  refused({ ...m, files: [root, { ...a, unpackedSize: undefined }, b] }, /files\[1\]\.unpackedSize/);
  refused({ ...m, files: [root, { ...a, compression: 'zstd' }, b] }, /files\[1\]\.compression/);
  refused({ ...m, files: [{ ...root, format: 'raw' }, a, b] }, /files\[0\]\.format/);
  // a raw volume holds no snapshot: a record naming one is not Corral's
  refused({ ...m, snapshots: [{ ...m.snapshots![0]!, disks: [{ disk: 'logs', dateSec: 1, dateNsec: 0, vmStateSize: 0 }] }] }, /snapshots\[0\]\.disks\[0\]/);
  // what version 1 did not have, a version 1 manifest may not claim
  refused({ ...m, version: 1 }, /files\[0\]\.compression/);
  refused({ ...withVolumes(), files: [withVolumes().files[0], withVolumes().files[1], { ...withVolumes().files[2]!, format: 'raw' }] }, /files\[2\]\.format/);
  assert.equal(validateManifest(withVolumes()).version, 1);
});

test('whole disks (export or copy with snapshots) need a stopped instance without clones; a copy\'s records name its own volumes', () => {
  assert.equal(notWhole('web', 'stopped', [], 'a copy', 'copy'), null);
  assert.equal(notWhole('web', 'crashed', [], 'a copy', 'copy'), null);
  const running = notWhole('web', 'running', [], 'a copy', 'copy');
  assert.ok(running && running.code === 'INVALID_STATE' && /stop it first/.test(running.message));
  const clones = notWhole('web', 'stopped', ['c1'], 'an archive', 'export');
  assert.ok(clones && clones.code === 'INVALID_STATE' && /c1/.test(clones.message) && /export without --snapshots/.test(clones.message));
  const recs = whole().snapshots!;
  const copied = copiedSnapshots(recs, 'web2');
  assert.deepEqual(copied[0]!.disks.map((d) => d.disk), ['root', 'web2-data1']);
  assert.deepEqual(recs[0]!.disks.map((d) => d.disk), ['root', 'data1'], 'the source\'s records are untouched');
  assert.deepEqual({ ...copied[0]!, disks: [] }, { ...recs[0]!, disks: [] });
});
