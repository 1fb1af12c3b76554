/**
 * Volumes attached as disks on each bus (virtio-blk, virtio-scsi, ide, sata) to the tiny guest: data written into the
 * volume from the host is read back from the guest's console; virtio-blk hotplug and unplug on a running guest;
 * VOLUME_IN_USE across instances; deleting an instance detaches but keeps its volumes. A volume in use is not
 * cloned, one with clones is not attached, a resize reaches a running guest, and a start that finds a volume
 * locked names who holds it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { readdirSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ConsoleSession, Daemon, SKIP_NO_TINY, useDaemon, waitFor } from './harness.js';

const skip = SKIP_NO_TINY;
let d: Daemon;
useDaemon((x) => { d = x; });


/** In the guest: wait (up to ~15 s) for a block device matching the glob other than vda, and print its name. */
async function waitDisk(c: ConsoleSession, glob: string, timeoutS = 15): Promise<string> {
  const out = await c.run(
    `i=0; while [ $i -lt ${timeoutS * 5} ]; do f=$(ls -d /sys/block/${glob} 2>/dev/null | grep -v '/vda$' | head -1); [ -n "$f" ] && break; sleep 0.2; i=$((i+1)); done; echo "DEV=\${f##*/}"`,
    (timeoutS + 10) * 1000,
  );
  const m = /DEV=([a-z]+)\r?\n/.exec(out);
  assert.ok(m && m[1], `no new block device ${glob} in the guest: ${out}`);
  return m[1]!;
}

async function readPattern(c: ConsoleSession, dev: string): Promise<string> {
  return c.run(`dd if=/dev/${dev} bs=64k count=1 2>/dev/null | od -An -tx1 | head -2`);
}

test('a volume written on the host reads back in the guest on virtio-blk, virtio-scsi, ide and sata', { skip, timeout: 300_000 }, async () => {
  const vol = await d.ok('POST', '/v1/volumes', { name: 'data1', size: '64M' }, 201);
  execFileSync('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0x5a 0 64k', vol.path], { stdio: 'ignore' });
  await d.ok('POST', '/v1/instances', { name: 't1', image: 'tiny' }, 201);

  const expected: Record<string, { glob: string; serial: (dev: string) => string }> = {
    'virtio-blk': { glob: 'vd[b-z]', serial: (dev) => `cat /sys/block/${dev}/serial` },
    'virtio-scsi': { glob: 'sd[a-z]', serial: (dev) => `cat /sys/block/${dev}/device/vpd_pg80 | tr -dc 'a-z0-9'` },
    ide: { glob: 'sd[a-z]', serial: (dev) => `cat /sys/block/${dev}/device/vpd_pg80 | tr -dc 'a-z0-9'` },
    sata: { glob: 'sd[a-z]', serial: (dev) => `cat /sys/block/${dev}/device/vpd_pg80 | tr -dc 'a-z0-9'; readlink /sys/block/${dev}` },
  };
  for (const [bus, e] of Object.entries(expected)) {
    const att = await d.ok('POST', '/v1/instances/t1/disks', { volume: 'data1', bus }, 201);
    assert.deepEqual(att.disks.map((x: any) => [x.volume, x.bus, x.id]), [['data1', bus, 'vol-data1']]);
    assert.equal((await d.ok('GET', '/v1/volumes/data1')).attachedTo, 't1');
    const devs = (await d.ok('GET', '/v1/instances/t1/devices')).devices;
    const disk = devs.find((x: any) => x.id === 'vol-data1');
    assert.equal(disk.approach, bus === 'ide' || bus === 'sata' ? 'emulated' : 'paravirtual');
    if (bus === 'ide') assert.match(disk.dataPath, /^guest ide -> QEMU emulated IDE controller \(PIIX\)/);
    if (bus === 'sata') assert.match(disk.dataPath, /^guest sata -> QEMU emulated AHCI controller \(ICH9\) sata0/);

    await d.ok('POST', '/v1/instances/t1/start', {});
    await d.waitConsole('t1', /corral-tiny ready/);
    if (bus === 'virtio-blk') {
      // cache=none: QEMU holds the volume open with O_DIRECT (this host's filesystem allows it), as its fdinfo says
      const { pid } = await d.ok('GET', '/v1/instances/t1');
      const fd = readdirSync(`/proc/${pid}/fd`).find((f) => { try { return readlinkSync(`/proc/${pid}/fd/${f}`) === vol.path; } catch { return false; } });
      assert.ok(fd, 'QEMU has the volume open');
      const flags = parseInt(/flags:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8'))![1]!, 8);
      assert.ok(flags & 0o40000, `O_DIRECT in the flags ${flags.toString(8)}`);
      assert.match(disk.dataPath, /O_DIRECT/);
    }
    const c = await ConsoleSession.open(d, 't1');
    try {
      const dev = await waitDisk(c, e.glob);
      const data = await readPattern(c, dev);
      assert.match(data, /5a 5a 5a 5a 5a 5a 5a 5a 5a 5a 5a 5a 5a 5a 5a 5a/, `${bus}: ${data}`);
      const serial = await c.run(e.serial(dev));
      assert.match(serial, /data1/, `${bus} serial: ${serial}`);
      // the guest's own driver for the controller: ahci for sata, ata_piix for ide
      if (bus === 'sata') assert.match(await c.run(`readlink /sys/block/${dev}/device/../../../../driver`), /ahci/);
    } finally {
      await c.close();
    }
    if (bus === 'ide' || bus === 'sata') {
      // ide and sata cannot be changed on a running guest
      const r = await d.api('DELETE', '/v1/instances/t1/disks/data1');
      assert.equal(r.status, 400);
      assert.equal(r.body.error.code, 'INVALID_SPEC');
    }
    await d.ok('POST', '/v1/instances/t1/kill', {});
    await d.ok('DELETE', '/v1/instances/t1/disks/data1');
    assert.equal((await d.ok('GET', '/v1/volumes/data1')).attachedTo, null);
  }
});

test('virtio-blk hotplug and unplug on a running guest; ide refuses live attach', { skip, timeout: 180_000 }, async () => {
  await d.ok('POST', '/v1/instances/t1/start', {});
  await d.waitConsole('t1', /corral-tiny ready/);
  const c = await ConsoleSession.open(d, 't1');
  try {
    assert.doesNotMatch(await c.run('cat /proc/partitions'), /vdb/);
    const ide = await d.api('POST', '/v1/instances/t1/disks', { volume: 'data1', bus: 'ide' });
    assert.equal(ide.status, 400);
    assert.equal(ide.body.error.code, 'INVALID_SPEC');
    assert.match(ide.body.error.message, /ide has no hotplug; stop the instance first/);

    const cli = await d.cli(['disk', 'attach', 't1', 'data1']);
    assert.equal(cli.code, 0, cli.stderr);
    const dev = await waitDisk(c, 'vd[b-z]', 10);
    assert.equal(dev, 'vdb');
    assert.match(await readPattern(c, dev), /5a 5a 5a 5a/);
    assert.match(await c.run('cat /proc/partitions'), /vdb/);
    assert.equal((await d.ok('GET', '/v1/volumes/data1')).attachedTo, 't1');

    // in use: not deletable, not attachable elsewhere
    const del = await d.api('DELETE', '/v1/volumes/data1');
    assert.equal(del.status, 409);
    assert.equal(del.body.error.code, 'VOLUME_IN_USE');
    await d.ok('POST', '/v1/instances', { name: 't2', image: 'tiny' }, 201);
    const other = await d.api('POST', '/v1/instances/t2/disks', { volume: 'data1' });
    assert.equal(other.status, 409);
    assert.equal(other.body.error.code, 'VOLUME_IN_USE');
    assert.match(other.body.error.message, /"t1"/);

    const det = await d.cli(['disk', 'detach', 't1', 'data1']);
    assert.equal(det.code, 0, det.stderr);
    const gone = await c.run('i=0; while [ $i -lt 50 ] && [ -e /sys/block/vdb ]; do sleep 0.2; i=$((i+1)); done; echo "BLK=$(ls /sys/block | tr \'\\n\' ,)"');
    assert.match(gone, /BLK=vda,\r?\n/, 'vdb is gone from the guest');
    assert.equal((await d.ok('GET', '/v1/volumes/data1')).attachedTo, null);

    // virtio-scsi: the controller is hot-plugged too (the instance started without one), then the scsi-hd
    await d.ok('POST', '/v1/instances/t1/disks', { volume: 'data1', bus: 'virtio-scsi' }, 201);
    const sd = await waitDisk(c, 'sd[a-z]', 15);
    assert.match(await readPattern(c, sd), /5a 5a 5a 5a/);
    await d.ok('DELETE', '/v1/instances/t1/disks/data1');
    const sdGone = await c.run(`i=0; while [ $i -lt 50 ] && [ -e /sys/block/${sd} ]; do sleep 0.2; i=$((i+1)); done; echo "BLK=$(ls /sys/block | tr '\\n' ,)"`);
    assert.match(sdGone, /BLK=vda,\r?\n/, `${sd} is gone from the guest`);
  } finally {
    await c.close();
  }
  await d.ok('POST', '/v1/instances/t1/kill', {});
});

test('the root disk on sata and on virtio-scsi: the guest boots from it', { skip, timeout: 120_000 }, async () => {
  for (const [rootBus, dev] of [['sata', 'sda'], ['virtio-scsi', 'sda']] as const) {
    await d.ok('POST', '/v1/instances', { name: 'r1', image: 'tiny', rootBus, start: true }, 201);
    await d.waitConsole('r1', /corral-tiny ready/);
    const c = await ConsoleSession.open(d, 'r1');
    try {
      const root = await c.run("awk '$2 == \"/\" {print $1}' /proc/mounts; ls /sys/block");
      assert.match(root, new RegExp(`/dev/${dev}\\r?\\n`), `${rootBus}: ${root}`);
      assert.doesNotMatch(root, /vda/);
    } finally {
      await c.close();
    }
    const devs = (await d.ok('GET', '/v1/instances/r1/devices')).devices;
    assert.equal(devs.find((x: any) => x.id === 'disk0').approach, rootBus === 'sata' ? 'emulated' : 'paravirtual');
    await d.ok('DELETE', '/v1/instances/r1?force=true');
  }
  const bad = await d.api('POST', '/v1/instances', { name: 'r2', image: 'tiny', rootBus: 'floppy' });
  assert.equal(bad.status, 400);
  assert.equal(bad.body.error.field, 'rootBus');
});

test('deleting an instance detaches its volumes and keeps them', { skip, timeout: 60_000 }, async () => {
  await d.ok('DELETE', '/v1/instances/t2');
  const bad = await d.cli(['create', 't3', '--image', 'tiny', '--volume', 'data1:floppy']);
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /INVALID_SPEC: bus:/);
  assert.equal((await d.api('GET', '/v1/instances/t3')).status, 404, 'a failed create --volume leaves no instance');
  const made = await d.cli(['create', 't3', '--image', 'tiny', '--volume', 'data1:virtio-scsi']);
  assert.equal(made.code, 0, made.stderr);
  const list = await d.cli(['disk', 'list', 't3']);
  assert.match(list.stdout, /data1\s+virtio-scsi\s+vol-data1/);
  assert.equal((await d.ok('GET', '/v1/volumes/data1')).attachedTo, 't3');
  await d.ok('DELETE', '/v1/instances/t3');
  const v = await d.ok('GET', '/v1/volumes/data1');
  assert.equal(v.attachedTo, null);
  await d.ok('DELETE', '/v1/volumes/data1');
});

/** The size of a guest block device in 512-byte sectors, once it reads `want` (or after ~10 s, whatever it reads). */
async function sectors(c: ConsoleSession, dev: string, want: number): Promise<number> {
  const out = await c.run(`i=0; while [ $i -lt 50 ] && [ "$(cat /sys/block/${dev}/size)" != ${want} ]; do sleep 0.2; i=$((i+1)); done; echo "SECTORS=$(cat /sys/block/${dev}/size)"`, 30_000);
  return Number(/SECTORS=(\d+)/.exec(out)?.[1]);
}

test('a volume in use is not cloned, one with clones is not attached; resize: cold while stopped, live while running', { skip, timeout: 240_000 }, async () => {
  const MiB = 1024 * 1024;
  await d.ok('POST', '/v1/volumes', { name: 'grow1', size: '64M' }, 201);
  await d.ok('POST', '/v1/instances', { name: 'g1', image: 'tiny' }, 201);
  await d.ok('POST', '/v1/instances/g1/disks', { volume: 'grow1' }, 201);
  // attached to a stopped instance: resized (qemu-img), and not cloned (the instance may write to it)
  const cold = await d.cli(['volume', 'resize', 'grow1', '--size', '96M']);
  assert.equal(cold.code, 0, cold.stderr);
  assert.match(cold.stdout, /^virtualSize:\s+96 MiB$/m);
  const stoppedClone = await d.cli(['volume', 'clone', 'grow1', 'grow1-copy']);
  assert.equal(stoppedClone.code, 1);
  assert.match(stoppedClone.stderr, /VOLUME_IN_USE: volume "grow1" cannot be cloned: it is attached to instance "g1"/);

  await d.ok('POST', '/v1/instances/g1/start', {});
  await d.waitConsole('g1', /corral-tiny ready/);
  const c = await ConsoleSession.open(d, 'g1');
  try {
    const dev = await waitDisk(c, 'vd[b-z]');
    assert.equal(await sectors(c, dev, (96 * MiB) / 512), (96 * MiB) / 512);
    // a running guest writes to it: a clone would not be a copy
    const clone = await d.cli(['volume', 'clone', 'grow1', 'grow1-copy']);
    assert.equal(clone.code, 1);
    assert.match(clone.stderr, /VOLUME_IN_USE: volume "grow1" cannot be cloned: it is attached to instance "g1"/);
    assert.equal((await d.api('GET', '/v1/volumes/grow1-copy')).status, 404);

    // live: QMP block_resize, and the guest sees the new size
    const live = await d.cli(['volume', 'resize', 'grow1', '--size', '128M']);
    assert.equal(live.code, 0, live.stderr);
    assert.match(live.stdout, /^virtualSize:\s+128 MiB$/m);
    assert.equal(await sectors(c, dev, (128 * MiB) / 512), (128 * MiB) / 512);
    const shrink = await d.cli(['volume', 'resize', 'grow1', '--size', '64M', '--shrink']);
    assert.equal(shrink.code, 1);
    assert.match(shrink.stderr, /VOLUME_IN_USE: volume "grow1" cannot be shrunk while instance "g1" is running/);
    const bare = await d.cli(['volume', 'resize', 'grow1', '--size', '1000']);
    assert.equal(bare.code, 1);
    assert.match(bare.stderr, /INVALID_SPEC: size: "1000" has no unit: .*"1000M"/);
    assert.equal(await sectors(c, dev, (128 * MiB) / 512), (128 * MiB) / 512);
    assert.equal((await d.ok('GET', '/v1/volumes/grow1')).virtualSize, 128 * MiB);

    // on virtio-scsi too: QEMU reports the new capacity and the guest's SCSI layer rereads it
    await d.ok('DELETE', '/v1/instances/g1/disks/grow1');
    await d.ok('POST', '/v1/instances/g1/disks', { volume: 'grow1', bus: 'virtio-scsi' }, 201);
    const sd = await waitDisk(c, 'sd[a-z]');
    assert.equal(await sectors(c, sd, (128 * MiB) / 512), (128 * MiB) / 512);
    const scsi = await d.cli(['volume', 'resize', 'grow1', '--size', '160M']);
    assert.equal(scsi.code, 0, scsi.stderr);
    assert.equal(await sectors(c, sd, (160 * MiB) / 512), (160 * MiB) / 512);
  } finally {
    await c.close();
  }
  await d.ok('POST', '/v1/instances/g1/kill', {});
  await d.ok('DELETE', '/v1/instances/g1/disks/grow1');

  // detached it can be cloned; from then on it never becomes writable under its clone
  await d.ok('POST', '/v1/volumes/grow1/clone', { name: 'grow1-copy' }, 201);
  const att = await d.api('POST', '/v1/instances/g1/disks', { volume: 'grow1' });
  assert.equal(att.status, 409);
  assert.equal(att.body.error.code, 'VOLUME_IN_USE');
  assert.match(att.body.error.message, /volume "grow1" cannot be attached: clones grow1-copy depend on it/);
  assert.deepEqual((await d.ok('GET', '/v1/instances/g1/disks')).disks, []);
  await d.ok('POST', '/v1/instances/g1/disks', { volume: 'grow1-copy' }, 201);
  await d.ok('DELETE', '/v1/instances/g1?force=true');
  await d.ok('DELETE', '/v1/volumes/grow1-copy');
  await d.ok('DELETE', '/v1/volumes/grow1');
});

test('a start that finds a volume locked is VOLUME_IN_USE naming who holds it', { skip, timeout: 120_000 }, async () => {
  const vol = await d.ok('POST', '/v1/volumes', { name: 'held1', size: '16M' }, 201);
  await d.ok('POST', '/v1/instances', { name: 'h1', image: 'tiny' }, 201);
  await d.ok('POST', '/v1/instances/h1/disks', { volume: 'held1' }, 201);

  // a process that is no Corral instance has the image open
  const blockdev = JSON.stringify({ driver: 'qcow2', 'node-name': 'd', file: { driver: 'file', filename: vol.path } });
  const other = spawn('qemu-system-x86_64', ['-nodefaults', '-machine', 'none', '-display', 'none', '-blockdev', blockdev], { stdio: 'ignore' });
  try {
    await waitFor(() => {
      try {
        execFileSync('qemu-img', ['info', '-f', 'qcow2', vol.path], { stdio: 'ignore' });
        return false;
      } catch {
        return true;
      }
    }, 15_000, 'the other QEMU to lock the volume');
    const r = await d.api('POST', '/v1/instances/h1/start', {});
    assert.equal(r.status, 409, JSON.stringify(r.body));
    assert.equal(r.body.error.code, 'VOLUME_IN_USE');
    assert.match(r.body.error.message, /^volume "held1" cannot be opened by instance "h1": its image is held by a process that is not a Corral instance \(Failed to get "write" lock\)/);
    const h1 = await d.ok('GET', '/v1/instances/h1');
    assert.equal(h1.state, 'stopped');
    assert.match(h1.lastError, /held by a process that is not a Corral instance/);
  } finally {
    other.kill('SIGKILL');
    await new Promise((res) => (other.exitCode !== null || other.signalCode !== null ? res(null) : other.once('exit', res)));
  }

  // a Corral instance holds it: h1 runs with it, and its record lost the attachment (edited by hand), so it
  // could be attached to h2 as well
  await d.ok('POST', '/v1/instances/h1/start', {});
  const recFile = join(d.dataDir, 'volumes', 'held1', 'volume.json');
  writeFileSync(recFile, JSON.stringify({ ...JSON.parse(readFileSync(recFile, 'utf8')), attachedTo: null }));
  await d.ok('POST', '/v1/instances', { name: 'h2', image: 'tiny' }, 201);
  await d.ok('POST', '/v1/instances/h2/disks', { volume: 'held1' }, 201);
  const r2 = await d.api('POST', '/v1/instances/h2/start', {});
  assert.equal(r2.status, 409, JSON.stringify(r2.body));
  assert.equal(r2.body.error.code, 'VOLUME_IN_USE');
  assert.match(r2.body.error.message, /^volume "held1" cannot be opened by instance "h2": its image is held by instance "h1" \(Failed to get "write" lock\); stop it first$/);
  assert.equal(r2.body.error.instance, 'h1');
  assert.equal((await d.ok('GET', '/v1/instances/h2')).state, 'stopped');

  await d.ok('DELETE', '/v1/instances/h2');
  await d.ok('DELETE', '/v1/instances/h1?force=true');
  await d.ok('DELETE', '/v1/volumes/held1');
});
