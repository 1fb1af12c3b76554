/**
 * An instance's disks at one instant, for a copy or an export (the caller holds the instance's lock, so no
 * start, stop or hotplug runs meanwhile):
 * - stopped: the root overlay and the volumes' files themselves (nothing writes them while the lock is held);
 * - running or paused: a point-in-time backup of every disk made by QEMU, all started in one QMP `transaction`
 *   (blockdev-backup, copy-before-write, so what the guest writes during the jobs does not reach the backups): the
 *   root disk's backup (sync "top") is a new qcow2 overlay on the same base image holding the overlay's data as it
 *   was when the jobs started; each volume's (sync "full") a standalone qcow2 of the volume's whole data, a clone's
 *   source included. What the disks show after a power cut at that instant (crash-consistent; a `sync` in the guest
 *   before makes it whole). The files are made in the instance's folder, handed to QEMU's user for the jobs (QEMU
 *   opens them), and taken back.
 * The guest keeps running throughout; a failed job leaves no file and no node behind.
 */
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { ROOT_DISK_ID, blockNodeId } from '../core/device-ids.js';
import { volumeIds, type DiskBus } from '../core/disks.js';
import { CorralError } from '../core/errors.js';
import { giveTo, takeBack, type RunAs } from '../host/run-as.js';
import { createOverlay, imgInfo, type ImgFormat } from '../qemu/img.js';
import type { ImageRecord } from '../storage/images.js';
import { createImage } from '../storage/volumes-img.js';
import type { VolumeStore } from '../storage/volumes.js';
import type { InstanceRow } from '../store/store.js';
import type { Vm } from '../vm/driver.js';
import type { InstanceService } from './instances.js';

/** How long the backup jobs may take before they are cancelled. */
const BACKUP_TIMEOUT_MS = 30 * 60_000;

export interface DiskAtInstant {
  /** the disk's file: the root disk's is qcow2 on the instance's image; a volume's is its format, standalone */
  path: string;
  format: ImgFormat;
  virtualSize: number;
}

export interface VolumeAtInstant extends DiskAtInstant {
  volume: string;
  bus: DiskBus;
}

export interface DisksAtInstant {
  root: DiskAtInstant;
  /** the attached volumes, in the spec's order */
  volumes: VolumeAtInstant[];
  consistency: 'stopped' | 'backup';
  /** remove the backups (nothing for a stopped instance's own files) */
  release(): void;
}

export interface RootBackupDeps {
  instances: InstanceService;
  /** the volumes' records (the attached volumes' files and formats) */
  volumes: Pick<VolumeStore, 'record'>;
  /** QEMU's unprivileged user (none: files stay as they are) */
  runAs?: RunAs;
  pollMs?: number;
}

interface Target {
  file: string;
  node: string;
  job: string;
  device: string;
  sync: 'top' | 'full';
}

/**
 * The disks of instance `row` at one instant (see above); `progress` gets the jobs' percentage. The caller holds
 * the instance's lock, checked the volumes (core/instance-archive.ts notCopyable) and calls release() when done.
 */
export async function disksAtInstant(d: RootBackupDeps, row: InstanceRow, image: ImageRecord, progress: (percent: number) => void = () => {}): Promise<DisksAtInstant> {
  const p = d.instances.paths(row);
  const rootSize = (await imgInfo(p.disk, 'qcow2'))['virtual-size'];
  const vols = row.spec.disks.map((x) => ({ disk: x, rec: d.volumes.record(x.volume) }));
  if (row.state === 'stopped' || row.state === 'crashed' || row.state === 'error') {
    if (row.pid !== null && row.state === 'error') throw new CorralError('INVALID_STATE', `instance "${row.name}" is in error with a QEMU that may still run: kill it first`, { state: row.state });
    return {
      root: { path: p.disk, format: 'qcow2', virtualSize: rootSize },
      volumes: vols.map(({ disk, rec }) => ({ volume: disk.volume, bus: disk.bus, path: rec.path, format: rec.format, virtualSize: rec.virtualSize })),
      consistency: 'stopped', release: () => undefined,
    };
  }
  if (row.state !== 'running' && row.state !== 'paused') {
    throw new CorralError('INVALID_STATE', `instance "${row.name}" is ${row.state}: it is read when stopped, running or paused`, { state: row.state });
  }
  const { vm } = d.instances.live(row.name);
  const tag = randomBytes(4).toString('hex');
  const target = (i: number, device: string, sync: Target['sync']): Target => ({
    file: join(p.dir, `backup-${tag}-${i}.qcow2`), node: `backup-${tag}-${i}`, job: `backup-job-${tag}-${i}`, device, sync,
  });
  const targets = [target(0, blockNodeId({ id: ROOT_DISK_ID }), 'top'), ...vols.map((v, i) => target(i + 1, volumeIds(v.rec.name).node, 'full'))];
  const removeAll = (): void => { for (const t of targets) rmSync(t.file, { force: true }); };
  try {
    await createOverlay(targets[0]!.file, image.disk, image.format, rootSize);
    for (const [i, v] of vols.entries()) await createImage(targets[i + 1]!.file, 'qcow2', v.rec.virtualSize);
    const added: string[] = [];
    try {
      for (const t of targets) {
        if (d.runAs) giveTo(d.runAs, t.file);
        // the backup's own node: no backing opened (sync top writes every cluster the overlay holds; the rest reads
        // through the file's backing, the image, once QEMU lets go of it)
        await vm.blockdevAdd({ driver: 'qcow2', 'node-name': t.node, backing: null, file: { driver: 'file', filename: t.file } });
        added.push(t.node);
      }
      await vm.transaction(targets.map((t) => ({
        type: 'blockdev-backup', data: { 'job-id': t.job, device: t.device, target: t.node, sync: t.sync, 'auto-dismiss': false },
      })));
      await waitJobs(vm, targets.map((t) => t.job), d.pollMs ?? 200, progress);
    } finally {
      for (const node of added) await vm.blockdevDel(node).catch(() => undefined);
    }
    for (const t of targets) takeBack(t.file);
  } catch (e) {
    removeAll();
    throw e;
  }
  return {
    root: { path: targets[0]!.file, format: 'qcow2', virtualSize: rootSize },
    volumes: vols.map(({ disk, rec }, i) => ({ volume: disk.volume, bus: disk.bus, path: targets[i + 1]!.file, format: 'qcow2', virtualSize: rec.virtualSize })),
    consistency: 'backup', release: removeAll,
  };
}

/** Wait for every job of the transaction to conclude (all of them, even when one fails, so none is left running). */
async function waitJobs(vm: Vm, jobs: string[], pollMs: number, progress: (percent: number) => void): Promise<void> {
  const deadline = Date.now() + BACKUP_TIMEOUT_MS;
  for (;;) {
    const now = (await vm.queryJobs()).filter((x) => jobs.includes(x.id));
    const gone = jobs.filter((j) => !now.some((x) => x.id === j));
    const total = now.reduce((n, j) => n + j['total-progress'], 0);
    if (total > 0) progress(Math.floor((100 * now.reduce((n, j) => n + j['current-progress'], 0)) / total));
    if (gone.length > 0 || now.every((j) => j.status === 'concluded')) {
      for (const j of now) if (j.status !== 'concluded') await vm.blockJobCancel(j.id, true).catch(() => undefined);
      for (const j of now) await vm.jobDismiss(j.id).catch(() => undefined);
      if (gone.length > 0) throw new CorralError('QEMU_FAILED', `the backup job ${gone[0]} is gone from QEMU before it concluded`, { command: 'blockdev-backup' });
      const failed = now.find((j) => j.error);
      if (failed) throw new CorralError('QEMU_FAILED', `the backup of a disk failed (${failed.id}): ${failed.error}`, { command: 'blockdev-backup' });
      return;
    }
    if (Date.now() > deadline) {
      for (const j of now) await vm.blockJobCancel(j.id, true).catch(() => undefined);
      throw new CorralError('TIMEOUT', `the backup of the disks took longer than ${BACKUP_TIMEOUT_MS / 60_000} min and was cancelled`, { command: 'blockdev-backup' });
    }
    await sleep(pollMs);
  }
}
