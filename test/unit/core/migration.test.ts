import { test } from 'node:test';
import assert from 'node:assert/strict';
import { migrateUri, migrationBlockers, migrationOptions, parseMigrateUri, qemuMigrationSettings } from '../../../src/core/migration.js';
import { buildArgv } from '../../../src/qemu/argv.js';

test('only tcp:IP:PORT is a migrate URI: never exec:, a host name or a bad port', () => {
  assert.equal(parseMigrateUri('tcp:10.0.0.2:4444').port, 4444);
  assert.equal(parseMigrateUri('tcp:[fd00::2]:4444').host, 'fd00::2');
  assert.equal(migrateUri('::1', 5), 'tcp:[::1]:5');
  for (const bad of ['exec:cat > /tmp/x', 'tcp:host.example:4444', 'tcp:10.0.0.2:0', 'tcp:10.0.0.2:70000', 'tcp:10.0.0.2:4444,x=y', 'unix:/tmp/s', 'tcp:999.1.1.1:1', 'tcp:10.0.0.2:04444', 42]) {
    assert.throws(() => parseMigrateUri(bad), /INVALID_SPEC|tcp:IP:PORT only/, String(bad));
  }
});

test('what keeps an instance from moving is named: passthrough, SR-IOV, vhost-user; a local root and volumes move', () => {
  const base = { rootPool: 'shared' as const, disks: [], nics: [], hostdevs: [] };
  assert.deepEqual(migrationBlockers(base), []);
  const why = migrationBlockers({
    rootPool: 'local', disks: [{ volume: 'data', bus: 'virtio-blk' }, { volume: 'fast', bus: 'vhost-user-blk' }],
    hostdevs: [{ id: 'hostdev0', address: '0000:01:00.0' }] as never, nics: [{ id: 'net1', model: 'sriov' }, { id: 'net2', model: 'vhost-user-net' }] as never,
  });
  assert.equal(why.length, 4);
  assert.doesNotMatch(why.join('\n'), /root disk|disk data/);
  assert.match(why.join('\n'), /disk fast: a vhost-user-blk[\s\S]*0000:01:00.0[\s\S]*NIC net1: an SR-IOV VF[\s\S]*NIC net2: vhost-user-net/);
});

test('options: defaults (300 ms, auto-converge on) and QEMU\'s parameters; bad values refused', () => {
  const o = migrationOptions({});
  assert.deepEqual(o, { maxDowntimeMs: 300, bandwidth: null, autoConverge: true, postcopy: false });
  assert.deepEqual(qemuMigrationSettings({ maxDowntimeMs: 50, bandwidth: 1000, autoConverge: false, postcopy: true }), { parameters: { 'downtime-limit': 50, 'max-bandwidth': 1000 }, capabilities: { 'auto-converge': false, 'postcopy-ram': true } });
  // no cap asked: QEMU's default is set anyway, so that an earlier (cancelled) migration's cap does not stay
  assert.deepEqual(qemuMigrationSettings({ maxDowntimeMs: 300, bandwidth: null, autoConverge: true, postcopy: false }).parameters, { 'downtime-limit': 300, 'max-bandwidth': 128 * 1024 * 1024 });
  assert.throws(() => migrationOptions({ maxDowntimeMs: -1 }), /maxDowntimeMs/);
  assert.throws(() => migrationOptions({ autoConverge: 'yes' }), /autoConverge/);
  assert.throws(() => migrationOptions({ postcopy: 1 }), /postcopy/);
  // postcopy-ram is set off too: a QEMU keeps its capabilities from one migration to the next
  assert.equal(qemuMigrationSettings(o).capabilities['postcopy-ram'], false);
});

test('an incoming plan starts paused with -incoming defer; a normal one does not', () => {
  const plan = {
    uuid: 'u', name: 'n', accel: 'tcg', cpus: 1, maxCpus: 1, topology: { sockets: 1, cores: 1, threads: 1 }, cpuModel: 'max', memory: 128 << 20, maxMemory: null,
    memoryBacking: { hugepages: null, prealloc: false, share: false }, balloon: false, machine: 'pc', firmware: { kind: 'bios' }, disks: [], nics: [],
    paths: { qmp: '/r/q', console: '/r/c', consoleLog: '/r/l', pidfile: '/r/p' }, sandbox: true,
  } as never;
  assert.ok(!buildArgv(plan).includes('-incoming'));
  assert.deepEqual(buildArgv({ ...(plan as object), incoming: true } as never).slice(-3), ['-S', '-incoming', 'defer']);
});
