/**
 * Local disks in a live migration, the pure part: which disks move and how each is mirrored, the QMP bodies of
 * both sides (tls-creds only when given), the mirrors' figures from query-jobs, the image digest and the checks
 * made before anything moves.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  assertVolumesFree, blockExportArgs, blockdevMirrorArgs, checkIncomingDisks, imageDigest, imagePlan, mirrorFigures, mirrorIds, mirrorsEnded, movingDisks,
  nbdClientArgs, nbdServerStartArgs,
} from '../../../src/core/migration-disks.js';
import type { InstanceSpec } from '../../../src/core/spec.js';

const spec = (rootPool: 'local' | 'shared', disks: Array<{ volume: string; bus: string }>): Pick<InstanceSpec, 'rootPool' | 'disks'> => ({ rootPool, disks: disks as InstanceSpec['disks'] });

test('what moves: a local root overlay (sync top) and each volume (sync full), in order; never a vhost-user disk; a shared root stays', () => {
  const m = movingDisks(spec('local', [{ volume: 'data', bus: 'virtio-blk' }, { volume: 'fast', bus: 'vhost-user-blk' }, { volume: 'logs', bus: 'virtio-scsi' }]));
  assert.deepEqual(m, [
    { id: 'disk0', node: 'disk0-fmt', role: 'root', sync: 'top' },
    { id: 'vol-data', node: 'vol-data-fmt', role: 'volume', volume: 'data', sync: 'full' },
    { id: 'vol-logs', node: 'vol-logs-fmt', role: 'volume', volume: 'logs', sync: 'full' },
  ]);
  assert.deepEqual(movingDisks(spec('shared', [])), []);
  assert.deepEqual(movingDisks(spec('shared', [{ volume: 'data', bus: 'sata' }])).map((d) => d.id), ['vol-data']);
  // a long volume name's node is a hash: QEMU's node names stop at 31 characters, and so do the migration's own
  const long = movingDisks(spec('shared', [{ volume: 'a-very-long-volume-name-for-a-test', bus: 'virtio-blk' }]))[0]!;
  assert.ok(long.node.length <= 31, long.node);
  for (const v of Object.values(mirrorIds(999))) assert.ok(v.length <= 31);
});

test('the QMP bodies: the destination\'s NBD server and writable exports, the source\'s NBD client and mirror; TLS (creds, the server\'s authz, the client\'s hostname) only when given', () => {
  const d = { node: 'vol-data-fmt', sync: 'full' as const };
  assert.deepEqual(nbdServerStartArgs('10.0.0.12', 49152), { addr: { type: 'inet', data: { host: '10.0.0.12', port: '49152' } } });
  assert.deepEqual(nbdServerStartArgs('10.0.0.12', 49152, { creds: 'tls0', authz: 'az0', hostname: 'a2' }), { addr: { type: 'inet', data: { host: '10.0.0.12', port: '49152' } }, 'tls-creds': 'tls0', 'tls-authz': 'az0' });
  assert.deepEqual(blockExportArgs(d, 1), { type: 'nbd', id: 'mig-exp1', 'node-name': 'vol-data-fmt', name: 'vol-data-fmt', writable: true });
  assert.deepEqual(nbdClientArgs(d, 1, 'fd00::2', 4000), { driver: 'nbd', 'node-name': 'mig-nbd1', server: { type: 'inet', host: 'fd00::2', port: '4000' }, export: 'vol-data-fmt' });
  const client = nbdClientArgs(d, 1, '10.0.0.12', 4000, { creds: 'tls0', authz: 'az0', hostname: 'a2' });
  assert.deepEqual([client['tls-creds'], client['tls-hostname'], client['tls-authz']], ['tls0', 'a2', undefined], 'the client checks the server\'s name; only the server has an authz');
  assert.deepEqual(blockdevMirrorArgs(d, 1, null), { 'job-id': 'mig-job1', device: 'vol-data-fmt', target: 'mig-nbd1', sync: 'full', speed: 0, 'auto-dismiss': false });
  assert.equal(blockdevMirrorArgs({ node: 'disk0-fmt', sync: 'top' }, 0, 1048576).speed, 1048576);
  assert.equal(blockdevMirrorArgs({ node: 'disk0-fmt', sync: 'top' }, 0, null).sync, 'top');
});

const job = (i: number, status: string, done: number, total: number, error?: string) => ({ id: mirrorIds(i).job, status, 'current-progress': done, 'total-progress': total, ...(error ? { error } : {}) });
const two = [{ id: 'disk0' }, { id: 'vol-data', volume: 'data' }];

test('mirror figures: copying until every job is ready (standby counts: a paused guest), the sums and each disk; a job gone, ended or failing is failed', () => {
  const copying = mirrorFigures(two, [job(0, 'ready', 10, 10), job(1, 'running', 5, 64)]);
  assert.equal(copying.status, 'copying');
  assert.deepEqual([copying.doneBytes, copying.totalBytes], [15, 74]);
  assert.deepEqual(copying.disks.map((d) => [d.disk, d.volume, d.ready]), [['disk0', null, true], ['vol-data', 'data', false]]);
  assert.equal(mirrorFigures(two, [job(0, 'standby', 10, 10), job(1, 'ready', 64, 64)]).status, 'ready');
  const failed = mirrorFigures(two, [job(0, 'ready', 10, 10), job(1, 'concluded', 5, 64, 'Input/output error')]);
  assert.equal(failed.status, 'failed');
  assert.match(failed.error ?? '', /disk vol-data: Input\/output error/);
  assert.match(mirrorFigures(two, [job(0, 'ready', 10, 10)]).error ?? '', /disk vol-data: its mirror job is gone/);
  assert.match(mirrorFigures(two, [job(0, 'concluded', 10, 10), job(1, 'ready', 1, 1)]).error ?? '', /disk disk0: its mirror ended \(concluded\) before it was asked to/);
  assert.equal(mirrorFigures(two, [job(0, 'ready', 1, 1), job(1, 'ready', 1, 1)], true).status, 'cancelled');
  assert.equal(mirrorFigures([], []).status, 'none');
});

test('mirrors ending: done once every job is concluded (or gone); the errors name the disk', () => {
  assert.deepEqual(mirrorsEnded(two, [job(0, 'concluded', 1, 1), job(1, 'ready', 1, 1)]), { done: false, errors: [] });
  assert.deepEqual(mirrorsEnded(two, [job(0, 'concluded', 1, 1), job(1, 'concluded', 1, 2, 'Operation canceled')]), { done: true, errors: ['disk vol-data: Operation canceled'] });
  assert.deepEqual(mirrorsEnded(two, []), { done: true, errors: [] });
});

test('the image digest is over each file\'s role and sha256: the same files give the same digest, another file or role another', () => {
  const a = 'a'.repeat(64);
  const b = 'b'.repeat(64);
  const one = imageDigest([{ role: 'disk', sha256: a }, { role: 'kernel', sha256: b }]);
  assert.match(one, /^[0-9a-f]{64}$/);
  assert.equal(imageDigest([{ role: 'kernel', sha256: b }, { role: 'disk', sha256: a }]), one, 'the order given does not matter');
  assert.notEqual(imageDigest([{ role: 'disk', sha256: a }, { role: 'initrd', sha256: b }]), one);
  assert.notEqual(imageDigest([{ role: 'disk', sha256: b }, { role: 'kernel', sha256: a }]), one);
});

test('before anything moves: the same image is used, a missing one sent, another of that name refused; taken volume names refused by name', () => {
  assert.equal(imagePlan('a2', { name: 'tiny', digest: 'd1' }, { digest: 'd1' }), 'same');
  assert.equal(imagePlan('a2', { name: 'tiny', digest: 'd1' }, null), 'transfer');
  assert.throws(() => imagePlan('a2', { name: 'tiny', digest: 'd1'.repeat(8) }, { digest: 'd2'.repeat(8) }), (e: Error & { code?: string }) => e.code === 'NOT_MIGRATABLE' && /host a2 has another image named "tiny"/.test(e.message));
  assert.doesNotThrow(() => assertVolumesFree('a2', [{ volume: 'data' }, {}], () => false));
  assert.throws(() => assertVolumesFree('a2', [{}, { volume: 'data' }, { volume: 'logs' }], (v) => v !== 'logs'), (e: Error & { code?: string; details?: { volumes?: string[] } }) => e.code === 'NOT_MIGRATABLE' && /host a2 already has a volume named "data"/.test(e.message) && e.details?.volumes?.join() === 'data');
});

test('an incoming request\'s disks must be the spec\'s, in order, each with a size and format (the root a qcow2 overlay)', () => {
  const s = spec('local', [{ volume: 'data', bus: 'virtio-blk' }]);
  const good = [{ id: 'disk0', format: 'qcow2', virtualSize: 134217728 }, { id: 'vol-data', format: 'raw', virtualSize: 1048576 }];
  const disks = checkIncomingDisks(s, good);
  assert.deepEqual(disks.map((d) => [d.id, d.role, d.format, d.virtualSize, d.sync, d.volume]), [['disk0', 'root', 'qcow2', 134217728, 'top', undefined], ['vol-data', 'volume', 'raw', 1048576, 'full', 'data']]);
  assert.deepEqual(checkIncomingDisks(spec('shared', []), undefined), []);
  for (const bad of [undefined, [good[0]], [good[1], good[0]], [{ ...good[0], format: 'raw' }, good[1]], [good[0], { ...good[1], format: 'vmdk' }], [good[0], { ...good[1], virtualSize: 1000 }], [good[0], { ...good[1], virtualSize: -512 }], [good[0], null]]) {
    assert.throws(() => checkIncomingDisks(s, bad), (e: Error & { code?: string }) => e.code === 'INVALID_SPEC' && /^disks: /.test(e.message), JSON.stringify(bad));
  }
});
