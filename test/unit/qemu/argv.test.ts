import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { buildArgv, CONSOLE_LOG_FD, CONSOLE_LOG_FDSET, type LaunchPlan } from '../../../src/qemu/argv.js';
import { FIXTURES } from '../fixtures.js';
import { assertGolden } from '../golden.js';

// Golden files, as Proxmox keeps cfg2cmd pairs: test/fixtures/argv/NAME.plan.json -> NAME.args (one argument
// a line). Run with UPDATE_GOLDENS=1 to rewrite them after an intended change, and review the diff.
const dir = join(FIXTURES, 'argv');

for (const f of readdirSync(dir).filter((n) => n.endsWith('.plan.json'))) {
  const name = f.replace(/\.plan\.json$/, '');
  test(`argv golden: ${name}`, () => {
    const plan = JSON.parse(readFileSync(join(dir, f), 'utf8')) as LaunchPlan;
    assertGolden(join(dir, `${name}.args`), `${buildArgv(plan).join('\n')}\n`);
  });
}

const base: LaunchPlan = JSON.parse(readFileSync(join(dir, 'tiny-kernel.plan.json'), 'utf8')) as LaunchPlan;

test('a disk path with a comma stays inside a JSON value and cannot add options', () => {
  const plan: LaunchPlan = { ...base, disks: [{ id: 'disk0', path: '/tmp/a,file=/etc/shadow.qcow2', format: 'qcow2', bus: 'virtio-blk' }] };
  const argv = buildArgv(plan);
  const bd = argv[argv.indexOf('-blockdev') + 1]!;
  const parsed = JSON.parse(bd) as { file: { filename: string } };
  assert.equal(parsed.file.filename, '/tmp/a,file=/etc/shadow.qcow2');
});

test('paths that go into legacy options (qmp, console) refuse commas', () => {
  const plan: LaunchPlan = { ...base, paths: { ...base.paths, qmp: '/run/x,server=off/qmp.sock' } };
  assert.throws(() => buildArgv(plan), /unsafe path/);
});

test('every instance runs sandboxed, without defaults or user config', () => {
  const argv = buildArgv(base);
  assert.ok(argv.includes('-nodefaults'));
  assert.ok(argv.includes('-no-user-config'));
  assert.equal(argv[argv.indexOf('-sandbox') + 1], 'on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny');
});

test('vhost-user-blk: a socket chardev and the device, no block node or iothread in QEMU; memory becomes a shared memfd', () => {
  const sock = '/var/lib/corral/run/u/vu-fast1.sock';
  const plan: LaunchPlan = {
    ...base, maxMemory: 1024 * 1024 * 1024, memoryBacking: { ...base.memoryBacking, share: true },
    disks: [...base.disks, { id: 'vol-fast1', node: 'vol-fast1-fmt', path: '/v/fast1.qcow2', format: 'qcow2', bus: 'vhost-user-blk', socket: sock }],
  };
  const argv = buildArgv(plan);
  assert.ok(argv.includes(`socket,id=vol-fast1-chr,path=${sock}`));
  const dev = argv.map((a) => { try { return JSON.parse(a) as Record<string, unknown>; } catch { return null; } }).filter((o) => o?.driver === 'vhost-user-blk-pci');
  assert.deepEqual(dev, [{ driver: 'vhost-user-blk-pci', chardev: 'vol-fast1-chr', id: 'vol-fast1', 'num-queues': plan.cpus }]);
  assert.ok(!argv.some((a) => a.includes('/v/fast1.qcow2')), 'QEMU does not open the image');
  const mems = argv.filter((a) => a.includes('"qom-type":"memory-backend')).map((a) => JSON.parse(a) as Record<string, unknown>);
  assert.deepEqual(mems.map((m) => [m.id, m['qom-type'], m.share]), [['mem0', 'memory-backend-memfd', true], ['vmem0', 'memory-backend-memfd', true]]);
});

test('vhost-user-blk: a missing socket or one with option syntax in its path is refused', () => {
  const disk = { id: 'vol-x', path: '/v/x.raw', format: 'raw' as const, bus: 'vhost-user-blk' as const };
  assert.throws(() => buildArgv({ ...base, disks: [disk] }), /no vhost-user socket/);
  assert.throws(() => buildArgv({ ...base, disks: [{ ...disk, socket: '/run/a,server=on/x.sock' }] }), /unsafe path/);
});

test('the serial log goes to the pipe QEMU gets as fd 3 (fd set 1), not to a file QEMU opens', () => {
  const argv = buildArgv(base);
  assert.equal(argv[argv.indexOf('-add-fd') + 1], `fd=${CONSOLE_LOG_FD},set=${CONSOLE_LOG_FDSET}`);
  assert.ok(argv.indexOf('-add-fd') < argv.indexOf('-chardev'));
  const serial = argv.find((a) => a.startsWith('socket,id=serial0,'))!;
  assert.match(serial, /,logfile=\/dev\/fdset\/1,logappend=on$/, 'logappend: QEMU refuses O_TRUNC on an fd set\'s descriptor');
  assert.ok(!argv.some((a) => a.includes(base.paths.consoleLog)), 'the keeper writes console.log; QEMU never opens it');
});

test('display vnc: a VGA device and VNC on the instance\'s unix socket, never a TCP port; none: neither', () => {
  const sock = '/var/lib/corral/run/u/vnc.sock';
  const argv = buildArgv({ ...base, paths: { ...base.paths, vnc: sock } });
  const vncs = argv.flatMap((a, i) => (a === '-vnc' ? [argv[i + 1]] : []));
  assert.deepEqual(vncs, [`unix:${sock}`], 'one VNC server, on the unix socket only');
  const devices = argv.flatMap((a, i) => (a === '-device' ? [JSON.parse(argv[i + 1]!) as Record<string, unknown>] : []));
  assert.deepEqual(devices.filter((d) => d.driver === 'VGA'), [{ driver: 'VGA', id: 'video0' }]);
  assert.equal(devices[devices.length - 1]!.driver, 'VGA', 'after every other PCI device: giving a display moves no other device');
  assert.equal(argv[argv.indexOf('-vga') + 1], 'none', 'no default VGA: the one device is ours');
  const none = buildArgv(base);
  assert.ok(!none.includes('-vnc'));
  assert.ok(!none.some((a) => a.includes('"VGA"')));
  assert.throws(() => buildArgv({ ...base, paths: { ...base.paths, vnc: '/run/x,websocket=5700/vnc.sock' } }), /unsafe path/);
});

test('a cloud-init seed is a raw, read-only virtio-blk disk (serial cidata) after every other PCI device, the agent\'s too', () => {
  const argv = buildArgv({ ...base, paths: { ...base.paths, agent: '/run/u/qga.sock' }, seed: '/var/lib/corral/instances/u/seed.iso' });
  const objs = argv.map((a) => { try { return JSON.parse(a) as Record<string, any>; } catch { return null; } });
  const node = objs.find((o) => o?.['node-name'] === 'seed0-fmt');
  assert.deepEqual([node?.driver, node?.['read-only'], node?.file?.filename, node?.file?.['read-only']], ['raw', true, '/var/lib/corral/instances/u/seed.iso', true]);
  const devices = objs.filter((o) => typeof o?.driver === 'string' && /-pci$/.test(o.driver as string)).map((o) => o!.id);
  assert.equal(devices.at(-1), 'seed0', devices.join(' '));
  assert.equal(objs.find((o) => o?.id === 'seed0')?.serial, 'cidata');
  assert.ok(!buildArgv(base).some((a) => a.includes('seed0')), 'no seed unless the plan has one');
});
