/**
 * vhost-user-blk disks: a volume served by a qemu-storage-daemon that Corral starts before QEMU, with the
 * guest's memory a shared memfd. The guest reads what the host wrote and the host reads what the guest wrote;
 * after a daemon kill -9 the same storage daemon is adopted; it goes with the VM; hotplug into a guest with
 * shared memory, refusal into one without; bad input and failed starts leave nothing behind.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, readlinkSync, renameSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { ConsoleSession, Daemon, SKIP_NO_TINY, useDaemon, waitFor } from './harness.js';

const skip = SKIP_NO_TINY;
let d: Daemon;
useDaemon((x) => { d = x; });


/** Live qemu-storage-daemon processes whose arguments name `fragment` (a volume file). */
function storageDaemons(fragment: string): number[] {
  const pids: number[] = [];
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const argv = readFileSync(`/proc/${e}/cmdline`, 'utf8').split('\0');
      const state = readFileSync(`/proc/${e}/stat`, 'utf8').split(') ')[1]?.[0];
      if (argv[0]?.includes('qemu-storage-daemon') && argv.some((a) => a.includes(fragment)) && state !== 'Z') pids.push(Number(e));
    } catch {
      /* raced */
    }
  }
  return pids;
}

function alive(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.[0] !== 'Z';
  } catch {
    return false;
  }
}

/** The fd flags of `file` open in process `pid`, or null when it does not have it open. */
function openFlags(pid: number, file: string): number | null {
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      if (readlinkSync(`/proc/${pid}/fd/${fd}`) === file) return parseInt(/flags:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8'))![1]!, 8);
    } catch {
      /* raced */
    }
  }
  return null;
}

/** inode numbers of the shared memfd mappings of a process. */
function memfdInodes(pid: number): Set<string> {
  const out = new Set<string>();
  for (const line of readFileSync(`/proc/${pid}/maps`, 'utf8').split('\n')) {
    const f = line.split(/\s+/);
    if (f[1]?.endsWith('s') && f[5]?.startsWith('/memfd:')) out.add(f[4]!);
  }
  return out;
}

async function waitDisk(c: ConsoleSession, name: string, present = true): Promise<void> {
  const out = await c.run(`i=0; while [ $i -lt 75 ] && [ ${present ? '!' : ''} -e /sys/block/${name} ]; do sleep 0.2; i=$((i+1)); done; echo "BLK=$(ls /sys/block | tr '\\n' ,)"`, 30_000);
  if (present) assert.match(out, new RegExp(`BLK=.*${name},`), out);
  else assert.doesNotMatch(out, new RegExp(`BLK=.*${name},`), out);
}

async function readPattern(c: ConsoleSession, dev: string): Promise<string> {
  return c.run(`echo 3 > /proc/sys/vm/drop_caches; dd if=/dev/${dev} bs=64k count=1 2>/dev/null | od -An -tx1 | head -2`);
}

function qemuIoReads(path: string, byte: string): string {
  return execFileSync('qemu-io', ['-f', 'qcow2', '-c', `read -P ${byte} 0 64k`, path], { encoding: 'utf8' });
}

test('vhost-user-blk: the guest reads and writes a volume through a qemu-storage-daemon, adopted after a daemon kill -9, gone with the VM', { skip, timeout: 300_000 }, async () => {
  const vol = await d.ok('POST', '/v1/volumes', { name: 'fast1', size: '64M' }, 201);
  execFileSync('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0x5a 0 64k', vol.path], { stdio: 'ignore' });
  const t1 = await d.ok('POST', '/v1/instances', { name: 't1', image: 'tiny' }, 201);
  const att = await d.cli(['disk', 'attach', 't1', 'fast1', '--bus', 'vhost-user-blk']);
  assert.equal(att.code, 0, att.stderr);
  assert.match((await d.cli(['disk', 'list', 't1'])).stdout, /fast1\s+vhost-user-blk\s+vol-fast1\s+vhost_user_blk/);
  assert.deepEqual(storageDaemons(vol.path), [], 'nothing runs for a stopped instance');

  const started = await d.ok('POST', '/v1/instances/t1/start', {});
  const qemu: number = started.pid;
  const runDir = join(d.dataDir, 'run', t1.uuid);
  const socket = join(runDir, 'vu-fast1.sock');
  const qsds = storageDaemons(vol.path);
  assert.equal(qsds.length, 1, 'one qemu-storage-daemon serves the volume');
  const qsd = qsds[0]!;
  assert.ok(readFileSync(`/proc/${qsd}/cmdline`, 'utf8').includes(socket), 'its cmdline names the socket in the runtime dir');
  assert.equal(statSync(socket).mode & 0o777, 0o600);
  // the storage daemon, not QEMU, has the image open (O_DIRECT where the probe found it works)
  assert.equal(openFlags(qemu, vol.path), null, 'QEMU does not open the volume');
  const flags = openFlags(qsd, vol.path);
  assert.ok(flags !== null, 'the storage daemon has the volume open');
  assert.ok(flags! & 0o40000, `opened with O_DIRECT like QEMU's own disks here (flags ${flags!.toString(8)})`);
  // guest memory is a shared memfd (the storage daemon maps it once the guest's driver sets the device up)
  const shared = memfdInodes(qemu);
  assert.ok(shared.size > 0, 'QEMU guest memory is a shared memfd');
  const dev = (await d.ok('GET', '/v1/instances/t1/devices')).devices.find((x: any) => x.id === 'vol-fast1');
  assert.equal(dev.approach, 'vhost-user');
  assert.equal(dev.qemuDevice, 'vhost-user-blk-pci');
  assert.match(dev.dataPath, new RegExp(`^guest virtio-blk \\(vhost-user\\) -> shared guest memory -> qemu-storage-daemon ${qsd} \\(socket ${socket}\\) -> .*${vol.path}$`));
  assert.equal((await d.api('GET', '/v1/instances/t1/memory')).status, 200, '`corral memory` works with a memfd backend');

  await d.waitConsole('t1', /corral-tiny ready/);
  let c = await ConsoleSession.open(d, 't1');
  try {
    await waitDisk(c, 'vdb');
    assert.match(await readPattern(c, 'vdb'), /5a 5a 5a 5a 5a 5a 5a 5a/);
    assert.ok([...memfdInodes(qsd)].some((i) => shared.has(i)), 'the storage daemon maps the same memfd as QEMU');
    // vhost-user-blk-pci has no serial property: the guest's GET_ID is answered by the storage daemon
    assert.match(await c.run('cat /sys/block/vdb/serial; echo'), /vhost_user_blk/);
    await c.run("dd if=/dev/zero bs=64k count=1 2>/dev/null | tr '\\000' '\\303' | dd of=/dev/vdb bs=64k conv=fsync 2>/dev/null; sync");
    assert.match(await readPattern(c, 'vdb'), /c3 c3 c3 c3 c3 c3 c3 c3/);
  } finally {
    await c.close();
  }

  // the daemon dies: QEMU and its storage daemon live on; the new daemon adopts both, starting neither again
  await d.kill9();
  assert.ok(alive(qemu) && alive(qsd));
  // meanwhile a storage daemon that no instance owns (as if the daemon died between starting it and QEMU)
  const strayDir = join(d.dataDir, 'run', '00000000-0000-4000-8000-000000000000');
  mkdirSync(strayDir, { recursive: true });
  const stray = spawn('qemu-storage-daemon', ['--blockdev', 'driver=null-co,node-name=n0', '--export',
    `type=vhost-user-blk,id=e0,node-name=n0,addr.type=unix,addr.path=${strayDir}/vu-x.sock`], { stdio: 'ignore', detached: true });
  stray.unref();
  await waitFor(() => existsSync(`${strayDir}/vu-x.sock`), 10_000, 'the stray storage daemon');
  await d.start();
  await waitFor(() => !alive(stray.pid!), 10_000, 'the orphaned storage daemon to be stopped');
  const adopted = await d.ok('GET', '/v1/instances/t1');
  assert.equal(adopted.state, 'running');
  assert.equal(adopted.pid, qemu);
  assert.deepEqual(storageDaemons(vol.path), [qsd], 'the same storage daemon, not a second one');
  assert.match((await d.ok('GET', '/v1/instances/t1/devices')).devices.find((x: any) => x.id === 'vol-fast1').dataPath, new RegExp(`qemu-storage-daemon ${qsd} `));
  c = await ConsoleSession.open(d, 't1');
  try {
    assert.match(await readPattern(c, 'vdb'), /c3 c3 c3 c3/, 'the guest still reads the disk');
  } finally {
    await c.close();
  }
  const events = await d.events();
  assert.equal(events.filter((e) => e.type === 'instance.disk.backend-exited').length, 0);

  const stopped = await d.ok('POST', '/v1/instances/t1/stop', { timeout: 30 });
  assert.equal(stopped.state, 'stopped');
  assert.equal(alive(qsd), false, 'the storage daemon is gone with the VM');
  assert.equal(existsSync(socket), false, 'its socket is removed');
  assert.doesNotMatch(qemuIoReads(vol.path, '0xc3'), /Pattern verification failed/, 'the host reads what the guest wrote');
});

test('vhost-user-blk hotplug: into a guest whose memory is shared; refused into one whose memory is not', { skip, timeout: 240_000 }, async () => {
  const vol2 = await d.ok('POST', '/v1/volumes', { name: 'fast2', size: '32M' }, 201);
  execFileSync('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0x7e 0 64k', vol2.path], { stdio: 'ignore' });
  await d.ok('POST', '/v1/instances/t1/start', {});
  await d.waitConsole('t1', /corral-tiny ready/);
  const c = await ConsoleSession.open(d, 't1');
  try {
    await waitDisk(c, 'vdb');
    const r = await d.ok('POST', '/v1/instances/t1/disks', { volume: 'fast2', bus: 'vhost-user-blk' }, 201);
    assert.deepEqual(r.disks.map((x: any) => [x.volume, x.bus]), [['fast1', 'vhost-user-blk'], ['fast2', 'vhost-user-blk']]);
    const qsd2 = storageDaemons(vol2.path);
    assert.equal(qsd2.length, 1);
    await waitDisk(c, 'vdc');
    assert.match(await readPattern(c, 'vdc'), /7e 7e 7e 7e/);

    await d.ok('DELETE', '/v1/instances/t1/disks/fast2');
    await waitDisk(c, 'vdc', false);
    assert.equal(alive(qsd2[0]!), false, 'unplug stops its storage daemon');
    assert.equal(existsSync(join(d.dataDir, 'run', (await d.ok('GET', '/v1/instances/t1')).uuid, 'vu-fast2.sock')), false);
    assert.equal((await d.ok('GET', '/v1/volumes/fast2')).attachedTo, null);
  } finally {
    await c.close();
  }
  // QEMU dies while the daemon is down: the restarted daemon finds it crashed and stops its storage daemon
  const t1 = await d.ok('GET', '/v1/instances/t1');
  const [qsd1] = storageDaemons('fast1/disk.qcow2');
  assert.ok(qsd1);
  await d.kill9();
  process.kill(t1.pid, 'SIGKILL');
  await waitFor(() => !alive(t1.pid), 10_000, 'QEMU to die');
  await d.start();
  assert.equal((await d.ok('GET', '/v1/instances/t1')).state, 'crashed');
  await waitFor(() => !alive(qsd1), 10_000, 'the storage daemon of the dead QEMU to be stopped');
  assert.equal(existsSync(join(d.dataDir, 'run', t1.uuid)), false);

  // a guest started without a vhost-user disk has private memory: no storage daemon can map it
  await d.ok('POST', '/v1/instances', { name: 't2', image: 'tiny', start: true }, 201);
  const refused = await d.api('POST', '/v1/instances/t2/disks', { volume: 'fast2', bus: 'vhost-user-blk' });
  assert.equal(refused.status, 400);
  assert.equal(refused.body.error.code, 'INVALID_SPEC');
  assert.match(refused.body.error.message, /vhost-user-blk needs the guest's memory shared .*stop the instance first/);
  assert.deepEqual((await d.ok('GET', '/v1/instances/t2/disks')).disks, [], 'nothing changed');
  assert.equal((await d.ok('GET', '/v1/volumes/fast2')).attachedTo, null);
  assert.deepEqual(storageDaemons(vol2.path), []);
  await d.ok('POST', '/v1/instances/t2/kill', {});
  await d.ok('DELETE', '/v1/instances/t2');
});

test('vhost-user-blk: refused as the root bus; a storage daemon that cannot start fails the start and leaves nothing', { skip, timeout: 240_000 }, async () => {
  const root = await d.api('POST', '/v1/instances', { name: 'bad', image: 'tiny', rootBus: 'vhost-user-blk' });
  assert.equal(root.status, 400);
  assert.equal(root.body.error.code, 'INVALID_SPEC');
  assert.equal(root.body.error.field, 'rootBus');
  assert.match(root.body.error.message, /cannot be the root disk's bus/);
  assert.equal((await d.api('GET', '/v1/instances/bad')).status, 404);

  const made = await d.cli(['create', 't3', '--image', 'tiny', '--volume', 'fast2:vhost-user-blk']);
  assert.equal(made.code, 0, made.stderr);
  assert.match((await d.cli(['disk', 'list', 't3'])).stdout, /fast2\s+vhost-user-blk/);
  const t3 = await d.ok('GET', '/v1/instances/t3');
  const vol2 = await d.ok('GET', '/v1/volumes/fast2');
  const runDir = join(d.dataDir, 'run', t3.uuid);
  const nothingLeft = (): void => {
    assert.deepEqual(storageDaemons(vol2.path), [], 'no qemu-storage-daemon left');
    assert.equal(existsSync(runDir), false, 'no runtime dir, no socket');
  };

  // the volume's file is missing
  renameSync(vol2.path, `${vol2.path}.away`);
  try {
    const r = await d.api('POST', '/v1/instances/t3/start', {});
    assert.equal(r.status, 500, JSON.stringify(r.body));
    assert.equal(r.body.error.code, 'QEMU_FAILED');
    assert.match(r.body.error.message, /qemu-storage-daemon for volume "fast2" failed to start: qemu-storage-daemon: .*(No such file|Could not open)/);
    assert.equal((await d.ok('GET', '/v1/instances/t3')).state, 'stopped');
    nothingLeft();
  } finally {
    renameSync(`${vol2.path}.away`, vol2.path);
  }

  // another process holds the image's write lock
  const holder = spawn('qemu-io', ['-f', 'qcow2', vol2.path], { stdio: ['pipe', 'pipe', 'pipe'] });
  let holderOut = '';
  holder.stdout!.on('data', (b: Buffer) => { holderOut += b.toString(); });
  holder.stderr!.on('data', (b: Buffer) => { holderOut += b.toString(); });
  try {
    await waitFor(() => {
      try {
        execFileSync('qemu-img', ['info', '-f', 'qcow2', vol2.path], { stdio: 'ignore' });
        return false;
      } catch {
        return true; // locked
      }
    }, 30_000, 'qemu-io to lock the image', () => `qemu-io: ${holderOut} (exit ${holder.exitCode})`);
    const r = await d.api('POST', '/v1/instances/t3/start', {});
    assert.equal(r.status, 409, JSON.stringify(r.body));
    assert.equal(r.body.error.code, 'VOLUME_IN_USE');
    // the storage daemon's refusal names the volume; who holds it: no Corral instance
    assert.match(r.body.error.message, /^volume "fast2" cannot be opened by instance "t3": its image is held by a process that is not a Corral instance \(Failed to get "write" lock\)/);
    nothingLeft();
  } finally {
    holder.kill('SIGKILL');
  }

  // the volume is free again: the start works; a storage daemon killed under a running VM is reported
  await waitFor(() => {
    try {
      execFileSync('qemu-img', ['info', '-f', 'qcow2', vol2.path], { stdio: 'ignore' });
      return true;
    } catch {
      return false;
    }
  }, 10_000, 'the lock to go');
  const since = (await d.events()).reduce((m, e) => Math.max(m, e.id), 0);
  await d.ok('POST', '/v1/instances/t3/start', {});
  const [qsd] = storageDaemons(vol2.path);
  assert.ok(qsd);
  process.kill(qsd, 'SIGKILL');
  let exited: any;
  await waitFor(async () => {
    exited = (await d.events(since)).find((e) => e.type === 'instance.disk.backend-exited');
    return exited !== undefined;
  }, 10_000, 'the instance.disk.backend-exited event');
  assert.equal(exited.instance, 't3');
  assert.equal(exited.data.volume, 'fast2');
  assert.equal(exited.data.pid, qsd);
  assert.equal(existsSync(join(runDir, 'vu-fast2.sock')), false, 'its socket is removed');
  await d.ok('POST', '/v1/instances/t3/kill', {});
  nothingLeft();
  await d.ok('DELETE', '/v1/instances/t3');
});

test('vhost-user-blk: a live resize is refused (the storage daemon cannot tell the guest); stopped, it is resized', { skip, timeout: 120_000 }, async () => {
  const MiB = 1024 * 1024;
  const vol = await d.ok('POST', '/v1/volumes', { name: 'vgrow', size: '64M' }, 201);
  await d.ok('POST', '/v1/instances', { name: 'vg1', image: 'tiny' }, 201);
  await d.ok('POST', '/v1/instances/vg1/disks', { volume: 'vgrow', bus: 'vhost-user-blk' }, 201);
  await d.ok('POST', '/v1/instances/vg1/start', {});
  const r = await d.cli(['volume', 'resize', 'vgrow', '--size', '128M']);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /INVALID_SPEC: bus: volume "vgrow" is on vhost-user-blk, whose storage daemon cannot tell a running guest of a new size; stop instance "vg1" first/);
  const info = (): number => JSON.parse(execFileSync('qemu-img', ['info', '-U', '--output=json', '-f', 'qcow2', vol.path], { encoding: 'utf8' }))['virtual-size'];
  assert.equal(info(), 64 * MiB);
  await d.ok('POST', '/v1/instances/vg1/kill', {});
  const cold = await d.cli(['volume', 'resize', 'vgrow', '--size', '128M', '--json']);
  assert.equal(cold.code, 0, cold.stderr);
  assert.equal(JSON.parse(cold.stdout).virtualSize, 128 * MiB);
  assert.equal(info(), 128 * MiB);
  await d.ok('DELETE', '/v1/instances/vg1');
  await d.ok('DELETE', '/v1/volumes/vgrow');
});
