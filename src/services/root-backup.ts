/**
 * An instance's root disk at one instant, for a copy or an export (the caller holds the instance's lock, so no
 * start, stop or hotplug runs meanwhile):
 * - stopped: the root overlay itself (nothing writes it while the lock is held);
 * - running or paused: a point-in-time backup of the running guest's root disk made by QEMU (QMP blockdev-backup,
 *   sync "top": copy-before-write, so what the guest writes during the job does not reach the backup). The backup
 *   is a new qcow2 overlay on the same base image holding the overlay's data as it was when the job started: what a
 *   disk shows after a power cut at that instant (crash-consistent; a `sync` in the guest before makes it whole).
 *   The file is made in the instance's folder, handed to QEMU's user for the job (QEMU opens it), and taken back.
 * The guest keeps running throughout; a failed job leaves no file and no node behind.
 */
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { ROOT_DISK_ID, blockNodeId } from '../core/device-ids.js';
import { CorralError } from '../core/errors.js';
import { giveTo, takeBack, type RunAs } from '../host/run-as.js';
import { createOverlay, imgInfo } from '../qemu/img.js';
import type { ImageRecord } from '../storage/images.js';
import type { InstanceRow } from '../store/store.js';
import type { Vm } from '../vm/driver.js';
import type { InstanceService } from './instances.js';

/** How long a backup job may take before it is cancelled. */
const BACKUP_TIMEOUT_MS = 30 * 60_000;

export interface RootAtInstant {
  /** the root disk's file (qcow2, its backing file the instance's image) */
  path: string;
  virtualSize: number;
  consistency: 'stopped' | 'backup';
  /** remove the backup (nothing for a stopped instance's own overlay) */
  release(): void;
}

export interface RootBackupDeps {
  instances: InstanceService;
  /** QEMU's unprivileged user (none: files stay as they are) */
  runAs?: RunAs;
  pollMs?: number;
}

/**
 * The root disk of instance `row` at one instant (see above); `progress` gets the job's percentage. The caller
 * holds the instance's lock and calls release() when done.
 */
export async function rootAtInstant(d: RootBackupDeps, row: InstanceRow, image: ImageRecord, progress: (percent: number) => void = () => {}): Promise<RootAtInstant> {
  const p = d.instances.paths(row);
  const virtualSize = (await imgInfo(p.disk, 'qcow2'))['virtual-size'];
  if (row.state === 'stopped' || row.state === 'crashed' || row.state === 'error') {
    if (row.pid !== null && row.state === 'error') throw new CorralError('INVALID_STATE', `instance "${row.name}" is in error with a QEMU that may still run: kill it first`, { state: row.state });
    return { path: p.disk, virtualSize, consistency: 'stopped', release: () => undefined };
  }
  if (row.state !== 'running' && row.state !== 'paused') {
    throw new CorralError('INVALID_STATE', `instance "${row.name}" is ${row.state}: it is read when stopped, running or paused`, { state: row.state });
  }
  const { vm } = d.instances.live(row.name);
  const tag = randomBytes(4).toString('hex');
  const file = join(p.dir, `backup-${tag}.qcow2`);
  const node = `backup-${tag}`;
  const job = `backup-job-${tag}`;
  await createOverlay(file, image.disk, image.format, virtualSize);
  try {
    if (d.runAs) giveTo(d.runAs, file);
    // the backup's own node: no backing opened (sync top writes every cluster the overlay holds; the rest reads
    // through the file's backing, the image, once QEMU lets go of it)
    await vm.blockdevAdd({ driver: 'qcow2', 'node-name': node, backing: null, file: { driver: 'file', filename: file } });
    try {
      await vm.blockdevBackup({ 'job-id': job, device: blockNodeId({ id: ROOT_DISK_ID }), target: node, sync: 'top', 'auto-dismiss': false });
      await waitJob(vm, job, d.pollMs ?? 200, progress);
    } finally {
      await vm.blockdevDel(node).catch(() => undefined);
    }
    takeBack(file);
  } catch (e) {
    rmSync(file, { force: true });
    throw e;
  }
  return { path: file, virtualSize, consistency: 'backup', release: () => rmSync(file, { force: true }) };
}

async function waitJob(vm: Vm, job: string, pollMs: number, progress: (percent: number) => void): Promise<void> {
  const deadline = Date.now() + BACKUP_TIMEOUT_MS;
  for (;;) {
    const j = (await vm.queryJobs()).find((x) => x.id === job);
    if (!j) throw new CorralError('QEMU_FAILED', `the backup job ${job} is gone from QEMU before it concluded`, { command: 'blockdev-backup' });
    if (j['total-progress'] > 0) progress(Math.floor((100 * j['current-progress']) / j['total-progress']));
    if (j.status === 'concluded') {
      await vm.jobDismiss(job).catch(() => undefined);
      if (j.error) throw new CorralError('QEMU_FAILED', `the backup of the root disk failed: ${j.error}`, { command: 'blockdev-backup' });
      return;
    }
    if (Date.now() > deadline) {
      await vm.blockJobCancel(job, true).catch(() => undefined);
      throw new CorralError('TIMEOUT', `the backup of the root disk took longer than ${BACKUP_TIMEOUT_MS / 60_000} min and was cancelled`, { command: 'blockdev-backup' });
    }
    await sleep(pollMs);
  }
}
