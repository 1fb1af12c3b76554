import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  MAX_SOCKET_PATH, findStorageDaemons, isStorageDaemonOf, qsdErrorLine, readStorageDaemonRecords, stopStorageDaemon,
  storageDaemonArgv, storageDaemonPaths, writeStorageDaemonRecord, type StorageDaemonRecord,
} from '../../../src/qemu/storage-daemon.js';

const RUN = '/var/lib/corral/run/0b7c9a52-6d3e-4a51-9a53-3f1d2b1e9c01';

test('files: vu-<volume>.* in the runtime dir; a hash when the socket path would not fit a unix socket', () => {
  const p = storageDaemonPaths(RUN, 'data1');
  assert.deepEqual(p, {
    socket: `${RUN}/vu-data1.sock`, qmp: `${RUN}/vu-data1.qmp`, pidfile: `${RUN}/vu-data1.pid`, stderr: `${RUN}/vu-data1.stderr`, record: `${RUN}/vu-data1.json`,
  });
  const long = storageDaemonPaths(RUN, 'a'.repeat(63));
  assert.match(long.socket, /\/vu-h[0-9a-f]{12}\.sock$/);
  assert.ok(Buffer.byteLength(long.socket) <= MAX_SOCKET_PATH);
  assert.equal(storageDaemonPaths(RUN, 'a'.repeat(63)).socket, long.socket, 'stable');
  assert.notEqual(storageDaemonPaths(RUN, 'b'.repeat(63)).socket, long.socket);
});

test('argv: JSON blockdev opened as the probe says, a JSON vhost-user-blk export, its own QMP monitor, a pidfile', () => {
  const paths = storageDaemonPaths(RUN, 'data1');
  const argv = storageDaemonArgv({
    disk: { id: 'vol-data1', node: 'vol-data1-fmt', path: '/v/data,1.qcow2', format: 'qcow2', bus: 'vhost-user-blk', socket: paths.socket },
    paths, queues: 4, io: { direct: true, aio: 'io_uring' },
  });
  const opt = (name: string): string => argv[argv.indexOf(name) + 1]!;
  assert.deepEqual(JSON.parse(opt('--blockdev')), {
    driver: 'qcow2', 'node-name': 'vol-data1-fmt', 'read-only': false, cache: { direct: true, 'no-flush': false },
    file: { driver: 'file', filename: '/v/data,1.qcow2', 'read-only': false, locking: 'on', aio: 'io_uring', cache: { direct: true, 'no-flush': false } },
  });
  assert.deepEqual(JSON.parse(opt('--export')), {
    type: 'vhost-user-blk', id: 'vol-data1', 'node-name': 'vol-data1-fmt', addr: { type: 'unix', path: paths.socket }, writable: true, 'num-queues': 4,
  });
  assert.equal(opt('--chardev'), `socket,id=qmp0,path=${paths.qmp},server=on,wait=off`);
  assert.equal(opt('--monitor'), 'chardev=qmp0');
  assert.equal(opt('--pidfile'), paths.pidfile);
  const ro = storageDaemonArgv({ disk: { id: 'vol-r', path: '/v/r.raw', format: 'raw', bus: 'vhost-user-blk', readonly: true }, paths, queues: 0, io: { direct: false, aio: 'native' } });
  const exp = JSON.parse(ro[ro.indexOf('--export') + 1]!) as Record<string, unknown>;
  assert.equal(exp.writable, false);
  assert.equal(exp['num-queues'], 1);
  assert.equal((JSON.parse(ro[ro.indexOf('--blockdev') + 1]!) as { file: { aio: string } }).file.aio, 'threads', 'native AIO needs O_DIRECT');
  assert.throws(() => storageDaemonArgv({ disk: { id: 'x', path: '/v', format: 'raw', bus: 'vhost-user-blk' }, paths: { ...paths, qmp: '/run/a,b' }, queues: 1, io: { direct: false, aio: 'threads' } }), /unsafe path/);
});

test('stderr: the storage daemon\'s own error line', () => {
  assert.equal(qsdErrorLine('warning: x\nqemu-storage-daemon: --blockdev {...}: Could not open \'/v\': No such file or directory\n'), "qemu-storage-daemon: --blockdev {...}: Could not open '/v': No such file or directory");
  assert.equal(qsdErrorLine('something\n'), 'something');
  assert.match(qsdErrorLine(''), /without a message/);
});

function fakeProc(run: string): string {
  const root = mkdtempSync(join(tmpdir(), 'corral-proc-'));
  const add = (pid: number, argv: string[], state = 'S', start = 4242): void => {
    mkdirSync(join(root, String(pid)));
    writeFileSync(join(root, String(pid), 'cmdline'), `${argv.join('\0')}\0`);
    const fields = [state, ...Array.from({ length: 18 }, () => '0'), String(start), '0'];
    writeFileSync(join(root, String(pid), 'stat'), `${pid} (qemu-storage-d) ${fields.join(' ')}\n`);
  };
  const exp = (sock: string): string => JSON.stringify({ type: 'vhost-user-blk', addr: { type: 'unix', path: sock } });
  add(200, ['qemu-storage-daemon', '--export', exp(`${run}/vu-data1.sock`)]);
  add(201, ['qemu-storage-daemon', '--export', exp(`${run}/vu-data1.sock.old`)]);
  add(202, ['/usr/bin/qemu-system-x86_64', '-chardev', `socket,path=${run}/vu-data1.sock`]);
  add(203, ['/usr/bin/qemu-storage-daemon', '--export', exp(`${run}/vu-data2.sock`)], 'Z');
  add(204, ['/usr/bin/qemu-storage-daemon', '--export', exp('/elsewhere/run/x/vu-a.sock')]);
  return root;
}

test('adoption: a pid is a storage daemon of this disk only if it is a live qemu-storage-daemon naming this socket, started then', () => {
  const proc = fakeProc(RUN);
  try {
    const sock = `${RUN}/vu-data1.sock`;
    assert.equal(isStorageDaemonOf(200, sock, 4242, proc), true);
    assert.equal(isStorageDaemonOf(200, sock, null, proc), true);
    assert.equal(isStorageDaemonOf(200, sock, 1, proc), false, 'pid reused');
    assert.equal(isStorageDaemonOf(201, sock, null, proc), false, 'another socket with the same prefix');
    assert.equal(isStorageDaemonOf(202, sock, null, proc), false, 'QEMU itself is not the storage daemon');
    assert.equal(isStorageDaemonOf(203, `${RUN}/vu-data2.sock`, null, proc), false, 'a zombie is dead');
    assert.equal(isStorageDaemonOf(999, sock, null, proc), false);
    assert.deepEqual(findStorageDaemons('/var/lib/corral/run/', proc).map((p) => p.pid).sort(), [200, 201]);
  } finally {
    rmSync(proc, { recursive: true, force: true });
  }
});

test('records: written atomically (0600), read back; junk is skipped; stop never signals a pid that is not this storage daemon', async () => {
  const run = mkdtempSync(join(tmpdir(), 'corral-run-'));
  const proc = mkdtempSync(join(tmpdir(), 'corral-proc-'));
  try {
    const paths = storageDaemonPaths(run, 'data1');
    // our own pid: were it signalled, this test would die
    const rec: StorageDaemonRecord = { volume: 'data1', diskId: 'vol-data1', pid: process.pid, startTicks: 1, ...paths, path: '/v/d.qcow2', startedAt: 'now' };
    writeStorageDaemonRecord(rec);
    writeFileSync(join(run, 'vu-junk.json'), '{not json');
    writeFileSync(join(run, 'status.json'), JSON.stringify({ pid: 1 }));
    assert.deepEqual(readStorageDaemonRecords(run), [rec]);
    assert.deepEqual(readStorageDaemonRecords(join(run, 'gone')), []);
    for (const f of [paths.socket, paths.qmp, paths.pidfile, paths.stderr]) writeFileSync(f, '');
    await stopStorageDaemon(rec, null, 100, proc);
    for (const f of [paths.socket, paths.qmp, paths.pidfile, paths.stderr, paths.record]) assert.equal(existsSync(f), false, f);
  } finally {
    rmSync(run, { recursive: true, force: true });
    rmSync(proc, { recursive: true, force: true });
  }
});
