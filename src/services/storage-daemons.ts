/**
 * The qemu-storage-daemons behind vhost-user-blk disks: one per disk, started before QEMU (beforeSpawn), in
 * the instance's runtime dir, detached in its own session so that it outlives the Corral daemon as QEMU
 * does; adopted by a restarted daemon (its record's pid trusted only if /proc shows a qemu-storage-daemon
 * naming this socket, started at the recorded time); stopped when QEMU exits or the start fails.
 *
 * A storage daemon that dies while its VM runs is not restarted: the event `instance.disk.backend-exited`
 * says so (with its last stderr line) and the guest's I/O on that disk stalls until the instance is stopped
 * and started again, which starts a fresh storage daemon.
 */
import { CorralError } from '../core/errors.js';
import { isVhostUser } from '../core/disks.js';
import type { LaunchPlan } from '../qemu/argv.js';
import { DEFAULT_BLOCK_IO, type BlockIo, type PlanDisk } from '../qemu/argv-disks.js';
import { QmpClient } from '../qemu/qmp.js';
import { findQemusByUuid, isAlive, processStartTicks } from '../qemu/proc.js';
import {
  findStorageDaemons, isStorageDaemonOf, launchStorageDaemon, qsdErrorLine, readStorageDaemonRecords, removeStorageDaemonFiles,
  stopStorageDaemon, storageDaemonPaths, writeStorageDaemonRecord, type StorageDaemonRecord,
} from '../qemu/storage-daemon.js';
import { readFileSync } from 'node:fs';
import type { InstanceRow } from '../store/store.js';
import type { RunAs } from '../host/run-as.js';
import type { EventBus } from './events.js';
import type { InstanceHooks } from './instance-hooks.js';
import type { InstanceService } from './instances.js';

export interface StorageDaemonDeps {
  instances: InstanceService;
  events: EventBus;
  log: { info(o: object, m?: string): void; warn(o: object, m?: string): void };
  /** how images are opened (the daemon's probe; the storage daemon has QEMU's block layer) */
  blockIo?: BlockIo;
  /** the data dir's runtime folder (run/): the orphan sweep looks for storage daemons under it */
  runRoot: string;
  /** how long a storage daemon may take to answer on QMP */
  startTimeoutMs?: number;
  binary?: string;
  /** the unprivileged user storage daemons run as, QEMU's (src/host/run-as.ts); the daemon's own when not given */
  runAs?: RunAs;
}

interface Running {
  rec: StorageDaemonRecord;
  qmp: QmpClient | null;
  row: InstanceRow;
  poll: NodeJS.Timeout;
  /** set before we stop it, so that its exit is not reported as a failure */
  stopping: boolean;
}

const POLL_MS = 1000;

export class StorageDaemonService {
  /** instance uuid -> disk id -> its running storage daemon */
  private running = new Map<string, Map<string, Running>>();

  constructor(private d: StorageDaemonDeps) {
    d.instances.setBackendSource((row) => this.pids(row));
  }

  hooks(): InstanceHooks {
    return {
      beforeSpawn: (row, plan) => this.startAll(row, plan),
      adopted: async (row) => this.adopt(row),
      exited: (row) => this.stopAll(row),
    };
  }

  /** The pid of each running storage daemon of an instance, by disk id. */
  pids(row: InstanceRow): Record<string, number | null> {
    const out: Record<string, number | null> = {};
    for (const [id, r] of this.running.get(row.uuid) ?? []) out[id] = r.rec.pid;
    return out;
  }

  /** The running storage daemon records of an instance (for tests and diagnostics). */
  records(uuid: string): StorageDaemonRecord[] {
    return [...(this.running.get(uuid)?.values() ?? [])].map((r) => r.rec);
  }

  private async startAll(row: InstanceRow, plan: LaunchPlan): Promise<void> {
    const disks = plan.disks.filter((d) => isVhostUser(d.bus));
    try {
      for (const disk of disks) await this.start(row, disk, plan.cpus);
    } catch (e) {
      // the ones already up go at once: a failed start leaves no storage daemon behind
      await this.stopAll(row);
      throw e;
    }
  }

  /** Start the storage daemon of one vhost-user disk (launch or hotplug) and watch it. */
  async start(row: InstanceRow, disk: PlanDisk, queues: number): Promise<StorageDaemonRecord> {
    const volume = disk.id.replace(/^vol-/, '');
    const runDir = this.d.instances.paths(row).runDir;
    const paths = storageDaemonPaths(runDir, volume);
    if (disk.socket !== undefined && disk.socket !== paths.socket) throw new CorralError('INTERNAL', `the launch plan's vhost-user socket of disk ${disk.id} (${disk.socket}) is not the one its storage daemon serves (${paths.socket}): the plan and the storage daemon paths disagree`, { disk: disk.id });
    const spec = { disk, paths, queues, io: this.d.blockIo ?? DEFAULT_BLOCK_IO };
    const launched = await launchStorageDaemon(spec, volume, this.d.startTimeoutMs, this.d.binary, this.d.runAs);
    const rec: StorageDaemonRecord = {
      volume, diskId: disk.id, pid: launched.pid, startTicks: launched.startTicks, ...paths, path: disk.path, startedAt: new Date().toISOString(),
    };
    try {
      writeStorageDaemonRecord(rec);
    } catch (e) {
      await stopStorageDaemon(rec, launched.qmp);
      throw new CorralError('QEMU_FAILED', `cannot record the storage daemon of volume "${volume}": ${(e as Error).message}`);
    }
    this.watch(row, rec, launched.qmp);
    this.d.log.info({ instance: row.name, volume, pid: rec.pid, socket: rec.socket }, 'qemu-storage-daemon started');
    return rec;
  }

  /** Stop one disk's storage daemon (hot-unplug). */
  async stop(row: InstanceRow, diskId: string): Promise<void> {
    const r = this.running.get(row.uuid)?.get(diskId);
    if (!r) return;
    this.forget(row.uuid, diskId);
    r.stopping = true;
    await stopStorageDaemon(r.rec, r.qmp);
  }

  /**
   * Stop every storage daemon of an instance: those this daemon watches, and those only its records name
   * (a QEMU that died while the daemon was down). The records are read now, before the runtime dir goes.
   */
  stopAll(row: InstanceRow): Promise<void> {
    const mine = this.running.get(row.uuid) ?? new Map<string, Running>();
    this.running.delete(row.uuid);
    const work: Array<Promise<void>> = [];
    for (const r of mine.values()) {
      clearInterval(r.poll);
      r.stopping = true;
      work.push(stopStorageDaemon(r.rec, r.qmp));
    }
    for (const rec of readStorageDaemonRecords(this.d.instances.paths(row).runDir)) {
      if (!mine.has(rec.diskId)) work.push(stopStorageDaemon(rec, null));
    }
    return Promise.all(work).then(() => undefined);
  }

  /** A restarted daemon adopted the instance's QEMU: adopt its storage daemons too. */
  private async adopt(row: InstanceRow): Promise<void> {
    for (const rec of readStorageDaemonRecords(this.d.instances.paths(row).runDir)) {
      if (!isStorageDaemonOf(rec.pid, rec.socket, rec.startTicks)) {
        this.reportExit(row, rec, 'it died while the daemon was down');
        removeStorageDaemonFiles(rec, true);
        continue;
      }
      let qmp: QmpClient | null = null;
      try {
        qmp = await QmpClient.connect(rec.qmp, { timeoutMs: 5000, retry: true });
      } catch (e) {
        this.d.log.warn({ instance: row.name, volume: rec.volume, pid: rec.pid, err: (e as Error).message }, 'cannot reach the QMP of an adopted qemu-storage-daemon; watching its pid');
      }
      this.watch(row, rec, qmp);
      this.d.log.info({ instance: row.name, volume: rec.volume, pid: rec.pid }, 'adopted running qemu-storage-daemon');
    }
  }

  /**
   * Stop storage daemons under this data dir's runtime folder that no instance owns (a daemon killed
   * between starting one and starting QEMU). Run once reconcile has adopted what is alive.
   */
  async sweepOrphans(): Promise<number> {
    const known = new Set<number>();
    for (const m of this.running.values()) for (const r of m.values()) known.add(r.rec.pid);
    const under = `${this.d.runRoot}/`;
    const orphans = findStorageDaemons(under).filter((p) => {
      if (known.has(p.pid)) return false;
      // one whose QEMU lives (an instance whose QMP did not answer: state error) keeps its disk
      const uuid = p.argv.map((a) => new RegExp(`${escapeRe(under)}([0-9a-f-]{36})/`).exec(a)?.[1]).find(Boolean);
      return !(uuid && findQemusByUuid(uuid).length > 0);
    });
    for (const o of orphans) {
      this.d.log.warn({ pid: o.pid }, 'stopping an orphaned qemu-storage-daemon');
      const start = processStartTicks(o.pid);
      try {
        process.kill(o.pid, 'SIGTERM');
      } catch {
        continue;
      }
      for (let i = 0; i < 60 && isAlive(o.pid) && processStartTicks(o.pid) === start; i++) await new Promise((r) => setTimeout(r, 50));
      if (isAlive(o.pid) && processStartTicks(o.pid) === start) {
        try {
          process.kill(o.pid, 'SIGKILL');
        } catch {
          /* gone */
        }
      }
    }
    return orphans.length;
  }

  /** Let go of every storage daemon without stopping it (daemon shutdown: they live on with their VMs). */
  detachAll(): void {
    for (const m of this.running.values()) {
      for (const r of m.values()) {
        clearInterval(r.poll);
        r.stopping = true;
        r.qmp?.close();
      }
    }
    this.running.clear();
  }

  private watch(row: InstanceRow, rec: StorageDaemonRecord, qmp: QmpClient | null): void {
    let m = this.running.get(row.uuid);
    if (!m) this.running.set(row.uuid, (m = new Map()));
    const r: Running = { rec, qmp, row, stopping: false, poll: setInterval(() => this.check(r), POLL_MS) };
    r.poll.unref();
    m.set(rec.diskId, r);
    // a storage daemon closes its monitor as it exits: look at once rather than at the next poll
    qmp?.on('close', () => setTimeout(() => this.check(r), 50).unref());
  }

  private forget(uuid: string, diskId: string): void {
    const m = this.running.get(uuid);
    const r = m?.get(diskId);
    if (!m || !r) return;
    clearInterval(r.poll);
    m.delete(diskId);
    if (m.size === 0) this.running.delete(uuid);
  }

  private check(r: Running): void {
    if (r.stopping) return;
    if (this.running.get(r.row.uuid)?.get(r.rec.diskId) !== r) return;
    if (isStorageDaemonOf(r.rec.pid, r.rec.socket, r.rec.startTicks)) return;
    this.forget(r.row.uuid, r.rec.diskId);
    r.qmp?.close();
    let line = '';
    try {
      line = qsdErrorLine(readFileSync(r.rec.stderr, 'utf8'));
    } catch {
      /* no stderr file */
    }
    this.reportExit(r.row, r.rec, `it exited while the VM runs${line ? `: ${line}` : ''}`);
    removeStorageDaemonFiles(r.rec, true);
  }

  private reportExit(row: InstanceRow, rec: StorageDaemonRecord, why: string): void {
    const message = `qemu-storage-daemon ${rec.pid} serving volume "${rec.volume}" is gone (${why}); the guest's I/O on ${rec.diskId} stalls until the instance is stopped and started again`;
    this.d.log.warn({ instance: row.name, volume: rec.volume, pid: rec.pid }, message);
    this.d.events.publish('instance.disk.backend-exited', row.name, { volume: rec.volume, disk: rec.diskId, pid: rec.pid, message });
  }
}

function escapeRe(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
