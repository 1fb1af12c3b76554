/**
 * Instance snapshots (core/snapshots.ts has the rules and the QMP commands): `corral snapshot create|list|restore|delete`.
 *
 * Taken, under the instance's lock:
 * - running or paused, disk-only: the guest agent freezes the guest's filesystems (when it answers), one QMP
 *   `transaction` snapshots every disk at the same instant, and the filesystems are thawed whatever happened;
 * - running or paused, with --memory: QEMU's snapshot-save job (the guest paused meanwhile, its RAM and device
 *   state written into the root disk), followed with query-jobs;
 * - stopped: `qemu-img snapshot -c` on each disk (a failure deletes it again from those that have it).
 * Kept in the instance's folder, snapshots.json (tmp + fsync + rename): a record is written `creating` before any
 * disk is touched and `ready` once every disk holds the snapshot; a daemon that died in between finds `creating`
 * at its start (reconcile) and deletes that snapshot from the disks that hold it. Restored: a memory snapshot with
 * snapshot-load into the running QEMU (--force), or into a new QEMU started paused (-S) for it, then run; a
 * disk-only one with `qemu-img snapshot -a` on each disk of the stopped instance (--force kills a running one
 * first), which is left stopped. Every restore first checks the record against what the disks hold
 * (SNAPSHOT_MISMATCH, nothing restored).
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { CorralError } from '../core/errors.js';
import {
  assertMemorySnapshot, assertNameFree, assertSameMachine, machineDevices, machineMacs, diskRecords, diskSnapshotTransaction, mismatchError, parseDiskSnapshots,
  parseSnapshotFile, ROOT_DISK_KEY, snapshotDeleteArgs, snapshotDisks, snapshotLoadArgs, snapshotMismatches, snapshotSaveArgs,
  SNAPSHOT_JOB_IDS, SNAPSHOT_RECORDS_FILE, snapshotView, validateSnapshotName, type DiskSnapshot, type SnapshotDisk, type SnapshotRecord, type SnapshotView,
} from '../core/snapshots.js';
import { crashPoint } from '../host/crash-points.js';
import { writeJsonAtomic } from '../host/fs-atomic.js';
import { imgInfo } from '../qemu/img.js';
import { snapshotOp } from '../storage/volumes-img.js';
import type { InstanceRow } from '../store/store.js';
import type { VmControl } from '../vm/driver.js';
import type { EventBus } from './events.js';
import type { InstanceHooks } from './instance-hooks.js';
import type { InstanceService } from './instances.js';
import type { ResolvedDisk } from './runtime.js';

/** The longest a snapshot job (saving or loading the RAM) may take. */
const JOB_TIMEOUT_MS = 10 * 60_000;

export interface SnapshotDeps {
  instances: InstanceService;
  /** the instance's attached volumes with their files (the disk service) */
  volumes: (row: InstanceRow) => ResolvedDisk[];
  /** the guest agent: freeze and thaw the guest's filesystems */
  agent: { freeze(row: InstanceRow): Promise<number | null>; thaw(row: InstanceRow): Promise<boolean> };
  events: EventBus;
  log: { warn(o: object, m?: string): void };
  /** how often a snapshot job is polled */
  pollMs?: number;
}

export interface RestoreResult {
  snapshot: SnapshotView;
  /** the instance's state after the restore: running for a memory snapshot, stopped for a disk-only one */
  state: string;
}

export class SnapshotService {
  constructor(private d: SnapshotDeps) {}

  hooks(): InstanceHooks {
    // the root disk goes with the instance's folder; the volumes stay, without this instance's snapshots
    return { deleting: (row) => this.dropFromVolumes(row) };
  }

  private file(row: InstanceRow): string {
    return join(this.d.instances.paths(row).dir, SNAPSHOT_RECORDS_FILE);
  }

  private read(row: InstanceRow): SnapshotRecord[] {
    const f = this.file(row);
    return existsSync(f) ? parseSnapshotFile(row.name, readFileSync(f, 'utf8')) : [];
  }

  private write(row: InstanceRow, records: SnapshotRecord[]): void {
    writeJsonAtomic(this.file(row), { snapshots: records }, 0o600);
  }

  /** The names of an instance's snapshots, whole or half-made (a live migration refuses an instance that has any). */
  names(name: string): string[] {
    return this.read(this.d.instances.rowOf(name)).map((r) => r.name);
  }

  /** The whole records of an instance's snapshots that are ready (an archive carries them). */
  readyRecords(name: string): SnapshotRecord[] {
    return this.read(this.d.instances.rowOf(name)).filter((r) => r.phase === 'ready');
  }

  list(name: string): SnapshotView[] {
    return this.read(this.d.instances.rowOf(name)).filter((r) => r.phase === 'ready').map(snapshotView);
  }

  /** Every disk of the instance, each able to hold an internal snapshot (UNSUPPORTED naming one that cannot). */
  private disksOf(row: InstanceRow, only?: ReadonlySet<string>): SnapshotDisk[] {
    const vols = this.d.volumes(row).filter((v) => !only || only.has(v.volume));
    return snapshotDisks(row.name, this.d.instances.paths(row).disk, vols);
  }

  /** The QEMU of an instance that has one (running, paused), null for a stopped one; INVALID_STATE in between. */
  private vmOf(row: InstanceRow, verb: string): VmControl | null {
    if (row.state === 'running' || row.state === 'paused') return this.d.instances.live(row.name).vm;
    if (row.state === 'stopped' || row.state === 'crashed') return null;
    throw new CorralError('INVALID_STATE', `cannot ${verb} instance "${row.name}": it is ${row.state} (allowed while running, paused or stopped)`, { state: row.state });
  }

  /** The internal snapshots each disk holds: from QEMU when it has them open, from qemu-img otherwise. */
  private async onDisk(disks: readonly SnapshotDisk[], vm: VmControl | null): Promise<Map<string, DiskSnapshot[]>> {
    const out = new Map<string, DiskSnapshot[]>();
    if (vm) {
      const all = await vm.nodeSnapshots();
      for (const d of disks) out.set(d.key, parseDiskSnapshots(all[d.node]));
      return out;
    }
    for (const d of disks) out.set(d.key, parseDiskSnapshots((await imgInfo(d.path, 'qcow2')).snapshots));
    return out;
  }

  async create(name: string, snapIn: unknown, opts: { memory?: boolean } = {}): Promise<SnapshotView> {
    const snap = validateSnapshotName(snapIn);
    const memory = opts.memory === true;
    return this.d.instances.withLock(name, async () => {
      const row = this.d.instances.rowOf(name);
      const vm = this.vmOf(row, 'snapshot');
      if (memory && !vm) throw new CorralError('INVALID_STATE', `instance "${name}" is ${row.state}: a snapshot with --memory saves a running guest's RAM; take a disk-only snapshot of a stopped instance`, { state: row.state });
      if (memory) assertMemorySnapshot(name, row.spec.hostdevs);
      const disks = this.disksOf(row);
      const records = this.read(row);
      assertNameFree(name, snap, records, await this.onDisk(disks, vm));
      const rec: SnapshotRecord = {
        name: snap, createdAt: new Date().toISOString(), phase: 'creating', memory, frozen: false,
        instanceState: row.state === 'paused' ? 'paused' : vm ? 'running' : 'stopped', vmStateSize: 0, disks: [], cpus: row.spec.cpus, memoryBytes: row.spec.memory, devices: machineDevices(row.spec), macs: machineMacs(row.spec),
      };
      this.write(row, [...records, rec]);
      const t0 = performance.now();
      try {
        if (!vm) await this.takeOffline(disks, snap);
        else if (memory) await this.runJob(vm, 'save', snapshotSaveArgs(disks, snap));
        else rec.frozen = await this.takeLive(row, vm, disks, snap);
        crashPoint('snapshot.taken');
        rec.disks = diskRecords(snap, disks, await this.onDisk(disks, vm));
        rec.vmStateSize = rec.disks.reduce((n, x) => n + x.vmStateSize, 0);
        rec.phase = 'ready';
        this.write(row, [...records, rec]);
      } catch (e) {
        await this.removeFromDisks(disks, snap, vm).catch((err: Error) => this.d.log.warn({ instance: name, snapshot: snap, err: err.message }, 'cannot delete a failed snapshot from the disks'));
        this.write(row, records);
        throw e;
      }
      const ms = Math.round(performance.now() - t0);
      this.d.events.publish('instance.snapshot-created', name, { snapshot: snap, memory, frozen: rec.frozen, vmStateSize: rec.vmStateSize, ms });
      return snapshotView(rec);
    });
  }

  /** `qemu-img snapshot -c` on each disk of a stopped instance; a failure deletes it again from those that have it. */
  private async takeOffline(disks: readonly SnapshotDisk[], snap: string): Promise<void> {
    for (const d of disks) await snapshotOp(d.path, '-c', snap);
  }

  /**
   * Every disk at one instant (one transaction), the guest's filesystems frozen meanwhile when its agent answers;
   * they are thawed whatever happened (a freeze that timed out here may still have happened in the guest). Whether
   * they were frozen.
   */
  private async takeLive(row: InstanceRow, vm: VmControl, disks: readonly SnapshotDisk[], snap: string): Promise<boolean> {
    const ask = row.spec.agent && row.state === 'running';
    const frozen = ask ? ((await this.d.agent.freeze(row)) ?? 0) > 0 : false;
    try {
      await vm.transaction(diskSnapshotTransaction(disks, snap));
    } finally {
      if (ask) await this.thaw(row);
    }
    return frozen;
  }

  private async thaw(row: InstanceRow): Promise<void> {
    for (let attempt = 1; attempt <= 3; attempt++) {
      if (await this.d.agent.thaw(row)) return;
    }
    this.d.log.warn({ instance: row.name }, 'the guest agent did not answer the thaw after a snapshot: the guest\'s filesystems may stay frozen');
    this.d.events.publish('instance.snapshot-thaw-failed', row.name, {});
  }

  /** Run a snapshot job to its end (QEMU_FAILED with QEMU's reason when it fails). */
  private async runJob(vm: VmControl, kind: 'save' | 'load' | 'delete', args: Record<string, unknown>): Promise<void> {
    const id = SNAPSHOT_JOB_IDS[kind];
    await vm.jobDismiss(id).catch(() => undefined); // one a daemon that died left concluded
    await vm.snapshotJob(kind, args);
    const until = Date.now() + JOB_TIMEOUT_MS;
    for (;;) {
      const job = (await vm.queryJobs()).find((j) => j.id === id);
      if (!job) throw new CorralError('QEMU_FAILED', `QEMU's snapshot-${kind} job went away before it concluded`, { command: `snapshot-${kind}` });
      if (job.status === 'concluded') {
        await vm.jobDismiss(id).catch(() => undefined);
        if (job.error) throw new CorralError('QEMU_FAILED', `snapshot-${kind} failed: ${job.error}`, { command: `snapshot-${kind}` });
        return;
      }
      if (Date.now() > until) throw new CorralError('TIMEOUT', `QEMU's snapshot-${kind} did not end within ${JOB_TIMEOUT_MS / 60_000} min`, { command: `snapshot-${kind}` });
      await sleep(this.d.pollMs ?? 100);
    }
  }

  /** Delete snapshot `snap` from each of `disks` that holds it: one snapshot-delete job in QEMU, qemu-img otherwise. */
  private async removeFromDisks(disks: readonly SnapshotDisk[], snap: string, vm: VmControl | null): Promise<void> {
    const found = await this.onDisk(disks, vm);
    const holding = disks.filter((d) => found.get(d.key)?.some((s) => s.name === snap));
    if (holding.length === 0) return;
    if (vm) await this.runJob(vm, 'delete', snapshotDeleteArgs(holding.map((d) => d.node), snap));
    else for (const d of holding) await snapshotOp(d.path, '-d', snap);
  }

  private find(row: InstanceRow, records: SnapshotRecord[], snap: string, ready = true): SnapshotRecord {
    const rec = records.find((r) => r.name === snap && (!ready || r.phase === 'ready'));
    if (!rec) throw new CorralError('SNAPSHOT_NOT_FOUND', `instance "${row.name}" has no snapshot "${snap}"`, { name: row.name, snapshot: snap });
    return rec;
  }

  async restore(name: string, snapIn: unknown, opts: { force?: boolean } = {}): Promise<RestoreResult> {
    const snap = validateSnapshotName(snapIn);
    return this.d.instances.withLock(name, async () => {
      const row = this.d.instances.rowOf(name);
      const rec = this.find(row, this.read(row), snap);
      const vm = this.vmOf(row, 'restore a snapshot of');
      if (vm && opts.force !== true) {
        throw new CorralError('INVALID_STATE', `instance "${name}" is ${row.state}: a restore discards its guest's present state; stop it first, or restore with --force`, { state: row.state });
      }
      const current = [ROOT_DISK_KEY, ...this.d.volumes(row).map((v) => v.volume)];
      const disks = this.disksOf(row, new Set(rec.disks.map((x) => x.disk)));
      const problems = snapshotMismatches(rec, current, await this.onDisk(disks, vm));
      if (problems.length > 0) throw mismatchError(name, snap, problems);
      assertSameMachine(name, rec, row.spec);
      if (rec.memory && vm) {
        await this.runJob(vm, 'load', snapshotLoadArgs(disks, snap));
        if (!(await vm.status()).running) await vm.resume();
      } else if (rec.memory) {
        await this.d.instances.startHeld(name, async (fresh) => {
          await this.runJob(fresh, 'load', snapshotLoadArgs(disks, snap));
          await fresh.resume();
        });
      } else {
        if (vm) await this.d.instances.killHeld(name, `killed: disk-only snapshot "${snap}" restored with --force`);
        for (const d of disks) await snapshotOp(d.path, '-a', snap);
      }
      const state = this.d.instances.rowOf(name).state;
      this.d.events.publish('instance.snapshot-restored', name, { snapshot: snap, memory: rec.memory, forced: vm !== null, state });
      return { snapshot: snapshotView(rec), state };
    });
  }

  async delete(name: string, snapIn: unknown): Promise<void> {
    const snap = validateSnapshotName(snapIn);
    await this.d.instances.withLock(name, async () => {
      const row = this.d.instances.rowOf(name);
      const records = this.read(row);
      const rec = this.find(row, records, snap, false);
      const vm = this.vmOf(row, 'delete a snapshot of');
      await this.forget(row, records, rec, vm);
      this.d.events.publish('instance.snapshot-deleted', name, { snapshot: snap });
    });
  }

  /** Mark the record `deleting`, delete the snapshot from the disks of the record still attached, drop the record. */
  private async forget(row: InstanceRow, records: SnapshotRecord[], rec: SnapshotRecord, vm: VmControl | null): Promise<void> {
    this.write(row, records.map((r) => (r === rec ? { ...r, phase: 'deleting' as const } : r)));
    const attached = new Set(this.d.volumes(row).map((v) => v.volume));
    const keys = new Set([ROOT_DISK_KEY, ...rec.disks.map((x) => x.disk).filter((k) => attached.has(k))]);
    await this.removeFromDisks(this.disksOf(row, keys), rec.name, vm);
    this.write(row, records.filter((r) => r !== rec));
  }

  /**
   * At daemon start: a snapshot a crash cut short (its record `creating` or `deleting`) is deleted from the disks that
   * hold it, and its record dropped; one that cannot be yet (its instance busy, QEMU still saving) is left for the
   * next start. The names of those dropped.
   */
  async reconcile(): Promise<string[]> {
    const dropped: string[] = [];
    for (const row of this.d.instances.listRows()) {
      let half: SnapshotRecord[];
      try {
        half = this.read(row).filter((r) => r.phase !== 'ready');
      } catch (e) {
        this.d.log.warn({ instance: row.name, err: (e as Error).message }, 'cannot read the snapshots record');
        continue;
      }
      for (const h of half) {
        try {
          await this.d.instances.withLock(row.name, async () => {
            const now = this.d.instances.rowOf(row.name);
            const records = this.read(now);
            const rec = records.find((r) => r.name === h.name && r.phase !== 'ready');
            if (rec) await this.forget(now, records, rec, this.vmOf(now, 'clean up a snapshot of'));
          });
          dropped.push(`snapshot ${h.name} of ${row.name}`);
        } catch (e) {
          this.d.log.warn({ instance: row.name, snapshot: h.name, err: (e as Error).message }, 'cannot drop a half-made snapshot yet');
        }
      }
    }
    return dropped;
  }

  /** A deleted instance's snapshots leave its volumes (its QEMU is gone: qemu-img on each). */
  private async dropFromVolumes(row: InstanceRow): Promise<void> {
    const records = this.read(row);
    if (records.length === 0) return;
    const vols = this.d.volumes(row);
    for (const rec of records) {
      const keys = new Set(rec.disks.map((x) => x.disk));
      for (const v of vols.filter((x) => keys.has(x.volume) && x.format === 'qcow2')) {
        try {
          const held = parseDiskSnapshots((await imgInfo(v.path, 'qcow2')).snapshots).some((s) => s.name === rec.name);
          if (held) await snapshotOp(v.path, '-d', rec.name);
        } catch (e) {
          this.d.log.warn({ instance: row.name, volume: v.volume, snapshot: rec.name, err: (e as Error).message }, 'cannot delete a deleted instance\'s snapshot from its volume');
        }
      }
    }
  }
}
