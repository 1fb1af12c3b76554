/**
 * A host's side of moving an instance's local disks with it (core/migration-disks.ts has the rules; the controller,
 * src/cluster/migration-disks.ts, drives both hosts):
 * - the source says what moves (facts: each disk's size and format, the root overlay's base image and its digest),
 *   mirrors each disk into the destination's NBD export (blockdev-add of an NBD client node, blockdev-mirror; the
 *   migration's bandwidth caps each mirror), reports the mirrors (query-jobs), and after the RAM migration has
 *   completed ends them gracefully (block-job-cancel on a ready mirror: the target consistent, no pivot). A cancel
 *   abandons them (forced), and its QEMU goes on with its own disks, untouched. Its local files (the root overlay
 *   with the instance's folder, the volumes) go only once the guest runs on the destination (movedAway);
 * - the destination makes each disk new and empty at the same size and format (the root overlay over its copy of
 *   the base image, a volume of the same name attached to the instance) before the incoming QEMU starts, exports
 *   them on its NBD server (its address, a free port; QEMU's runstate is inmigrate from its start, so the export
 *   may come before migrate-incoming), stops the server before the guest runs (arrived), and removes what it made
 *   when the migration is given up (abortIncoming; a base image it had already stays).
 * What is under way is kept in memory: an agent that restarts mid-way loses it (its incoming QEMU is gone too).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import { isIP } from 'node:net';
import type { Readable } from 'node:stream';
import { CorralError } from '../core/errors.js';
import {
  assertVolumesFree, blockExportArgs, blockdevMirrorArgs, checkIncomingDisks, mirrorFigures, mirrorIds, mirrorsEnded, movingDisks, nbdClientArgs,
  nbdServerStartArgs, type DiskFacts, type NbdTls, type ImageFileRole, type ImageIdentity, type MirrorFigures, type MovingDisk,
} from '../core/migration-disks.js';
import { validateName } from '../core/names.js';
import { instancePaths } from '../core/paths.js';
import type { InstanceSpec } from '../core/spec.js';
import { takeBack } from '../host/run-as.js';
import { assertFits } from '../host/space.js';
import { createOverlay, imgInfo } from '../qemu/img.js';
import type { ImageRecord, ImageStore } from '../storage/images.js';
import type { Vm } from '../vm/driver.js';
import { imageFileOf, type ImageRecordFields, type ImageTransfer } from './image-transfer.js';
import type { InstanceService } from './instances.js';
import type { VolumeService } from './volumes.js';

/** How long ending the mirrors may take (a graceful end copies what the guest wrote last). */
const END_TIMEOUT_MS = 120_000;

export interface MigrationDiskDeps {
  dataDir: string;
  instances: InstanceService;
  volumes: VolumeService;
  images: Pick<ImageStore, 'get' | 'tryGet'>;
  transfer: ImageTransfer;
  /** a free TCP port of an address (services/migration.ts) */
  freePort: (address: string) => Promise<number>;
  log: { warn(o: object, m: string): void };
  pollMs?: number;
}

interface Outgoing {
  disks: MovingDisk[];
  started: number;
  cancelled: boolean;
  /** the mirrors were ended (completed, or abandoned) */
  ended: boolean;
  /** completed: the destination's disks hold what the guest wrote up to the switch-over */
  completed: { bytes: number; ms: number } | null;
}

interface Incoming {
  disks: MovingDisk[];
  /** the instance's folder (its root overlay) */
  dir: string | null;
  volumes: string[];
  nbd: boolean;
}


export class MigrationDiskService {
  private outgoing = new Map<string, Outgoing>();
  private incoming = new Map<string, Incoming>();
  /**
   * Instances whose migration asked for their facts and has not mirrored yet (the base image on its way, the
   * destination's QEMU starting); `cancelled`: those of them a cancel came for, whose mirrors then never start.
   */
  private preparing = new Set<string>();
  private cancelled = new Set<string>();

  constructor(private readonly d: MigrationDiskDeps) {}

  /** The base image received for `name`'s migration (image-transfer.ts): begin, each file, commit. */
  imageBegin(name: string, want: ImageIdentity): void {
    this.d.transfer.begin(name, want);
  }

  imageReceive(name: string, role: ImageFileRole, body: Readable): Promise<{ sha256: string; size: number }> {
    return this.d.transfer.receive(name, role, body);
  }

  imageCommit(name: string, fields: ImageRecordFields): Promise<ImageRecord> {
    return this.d.transfer.commit(name, fields);
  }

  // ---- the source

  /**
   * What moves with the instance (the first question of a migration: from here a cancel is kept until its mirrors
   * would start, which they then do not).
   */
  async facts(name: string): Promise<DiskFacts> {
    const f = await this.readFacts(name);
    this.cancelled.delete(name);
    this.preparing.add(name);
    return f;
  }

  /** Its local disks (size and format each) and its root overlay's base image. */
  private async readFacts(name: string): Promise<DiskFacts> {
    const row = this.d.instances.rowOf(name);
    const disks: MovingDisk[] = [];
    for (const m of movingDisks(row.spec)) {
      if (m.role === 'root') {
        const info = await imgInfo(this.d.instances.paths(row).disk, 'qcow2');
        if (Array.isArray(info.snapshots) && info.snapshots.length > 0) {
          throw new CorralError('NOT_MIGRATABLE', `instance "${name}" cannot be live-migrated: its root disk has internal snapshots (instance snapshots), which a mirror does not copy (delete them first)`, { name, disk: 'root' });
        }
        disks.push({ ...m, format: 'qcow2', virtualSize: info['virtual-size'] });
        continue;
      }
      const v = this.d.volumes.store.record(m.volume!);
      if ((await this.d.volumes.store.snapshots(v.name)).length > 0) {
        throw new CorralError('NOT_MIGRATABLE', `instance "${name}" cannot be live-migrated: volume ${v.name} has internal snapshots, which a mirror does not copy (delete them first)`, { name, volume: v.name });
      }
      disks.push({ ...m, format: v.format, virtualSize: (await imgInfo(v.path, v.format))['virtual-size'] });
    }
    const record = disks.some((x) => x.role === 'root') ? this.d.images.get(row.spec.image) : null;
    return {
      disks, image: record ? await this.d.transfer.identity(record) : null,
      imageRecord: record ? { ...(record.cmdline !== undefined ? { cmdline: record.cmdline } : {}), createdAt: record.createdAt, source: record.source } : null,
    };
  }

  /** A file of the instance's base image (a destination that lacks the image receives it). */
  imageFile(name: string, role: ImageFileRole): string {
    const path = imageFileOf(this.d.images.get(this.d.instances.rowOf(name).spec.image), role);
    if (path === null) throw new CorralError('INVALID_SPEC', `role: the image of instance "${name}" has no ${role} file`, { field: 'role' });
    return path;
  }

  /** Start a mirror of each local disk into the destination's NBD exports (host:port, as its incoming answered). */
  async mirror(name: string, body: { host?: unknown; port?: unknown; speed?: unknown }, tls?: NbdTls): Promise<MirrorFigures> {
    const host = body.host;
    const port = body.port;
    if (typeof host !== 'string' || isIP(host) === 0) throw new CorralError('INVALID_SPEC', `host: the destination's IP address, got ${JSON.stringify(host)}`, { field: 'host' });
    if (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65535) throw new CorralError('INVALID_SPEC', `port: the destination's NBD port, got ${JSON.stringify(port)}`, { field: 'port' });
    const speed = body.speed ?? null;
    if (speed !== null && (typeof speed !== 'number' || !Number.isInteger(speed) || speed < 1)) throw new CorralError('INVALID_SPEC', 'speed: bytes per second, a whole number above 0', { field: 'speed' });
    const live = this.d.instances.live(name);
    if (live.row.state !== 'running') throw new CorralError('NOT_MIGRATABLE', `instance "${name}" is ${live.row.state}: only a running instance is live-migrated`, { name, state: live.row.state });
    const was = this.outgoing.get(name);
    if (was && !was.ended) throw new CorralError('NOT_MIGRATABLE', `the disks of instance "${name}" are being mirrored already`, { name });
    const { disks } = await this.readFacts(name);
    this.preparing.delete(name);
    const cancelled = this.cancelled.delete(name);
    const out: Outgoing = { disks, started: Date.now(), cancelled, ended: cancelled, completed: null };
    this.outgoing.set(name, out);
    if (cancelled) return this.mirrorStatus(name); // cancelled before its mirrors began: they never do
    try {
      for (const [i, d] of disks.entries()) {
        if (out.cancelled) break;
        await live.vm.blockdevAdd(nbdClientArgs(d, i, host, port, tls));
        await live.vm.blockdevMirror(blockdevMirrorArgs(d, i, speed as number | null));
      }
    } catch (e) {
      await this.end(out, live.vm, true).catch(() => undefined);
      throw e;
    }
    // a cancel that came while the mirrors were being added ended those it saw: these end too
    if (out.cancelled) await this.end(out, live.vm, true);
    return this.mirrorStatus(name);
  }

  /** The mirrors' figures (none: no mirror was started here). */
  async mirrorStatus(name: string): Promise<MirrorFigures> {
    const out = this.outgoing.get(name);
    if (!out) return mirrorFigures([], []);
    if (out.ended) return mirrorFigures(out.disks, [], out.cancelled || out.completed === null);
    return mirrorFigures(out.disks, await this.d.instances.live(name).vm.queryJobs(), out.cancelled);
  }

  /**
   * Refuse a RAM migration before every local disk's mirror is ready: the destination would run on empty disks.
   * (An instance with no local disk passes.)
   */
  async assertReady(name: string, spec: InstanceSpec): Promise<void> {
    if (movingDisks(spec).length === 0) return;
    const f = await this.mirrorStatus(name);
    if (f.status !== 'ready') throw new CorralError('NOT_MIGRATABLE', `instance "${name}" has local disks and their mirrors are ${f.status === 'none' ? 'not started' : f.status}: its RAM migration starts once every disk's mirror is ready`, { name, mirrors: f.status });
  }

  /**
   * After the RAM migration completed (the guest paused in postmigrate): each ready mirror ends gracefully, which
   * copies what is still dirty and leaves the destination's disk the same as the source's; MIGRATION_FAILED if one
   * does not.
   */
  async complete(name: string): Promise<{ bytes: number; ms: number }> {
    const out = this.outgoing.get(name);
    if (!out || out.ended) {
      if (out?.completed) return out.completed;
      throw new CorralError('INVALID_STATE', `instance "${name}" has no disk mirrors under way to complete`, { name });
    }
    const live = this.d.instances.live(name);
    const st = await live.vm.status();
    if (st.running) throw new CorralError('INVALID_STATE', `instance "${name}" still runs here: its mirrors complete only after the switch-over`, { name });
    const before = mirrorFigures(out.disks, await live.vm.queryJobs());
    const errors = await this.end(out, live.vm, false);
    if (errors.length > 0) throw new CorralError('MIGRATION_FAILED', `the disks of instance "${name}" could not be completed on the destination: ${errors.join('; ')}`, { name });
    out.completed = { bytes: before.totalBytes, ms: Date.now() - out.started };
    return out.completed;
  }

  /**
   * Abandon the mirrors (a cancel, a failure): QEMU goes on with its own disks. A migration given up after its
   * mirrors completed no longer counts as completed (its files stay here).
   */
  /** Whether there was something of the disks' to cancel: mirrors running, or a move that is preparing (held). */
  async cancel(name: string): Promise<boolean> {
    const out = this.outgoing.get(name);
    const held = this.preparing.has(name) && (!out || out.ended);
    if (held) this.cancelled.add(name);
    if (!out) return held;
    out.completed = null;
    if (out.ended) return held;
    out.cancelled = true;
    let vm: Vm;
    try {
      vm = this.d.instances.live(name).vm;
    } catch {
      out.ended = true;
      return true;
    }
    await this.end(out, vm, true);
    return true;
  }

  /** Refuse to forget the instance here before its disks are on the destination (its files would be lost). */
  assertCompleted(name: string, spec: InstanceSpec): void {
    if (movingDisks(spec).length === 0) return;
    if (!this.outgoing.get(name)?.completed) throw new CorralError('INVALID_STATE', `the local disks of instance "${name}" were not completed on the destination: they stay here`, { name });
  }

  /** The guest runs on the destination and its record here is gone: its volumes go too (the overlay went with its folder). */
  async movedAway(name: string, spec: InstanceSpec): Promise<void> {
    this.outgoing.delete(name);
    for (const d of movingDisks(spec)) {
      if (d.volume === undefined) continue;
      await this.d.volumes.remove(d.volume).catch((e: Error) => this.d.log.warn({ instance: name, volume: d.volume, err: e.message }, 'a volume that moved away with its instance could not be removed here'));
    }
  }

  /**
   * End the mirrors: each job not ended yet is cancelled (forced, or gracefully: a ready mirror then completes),
   * waited for, dismissed, and the NBD nodes removed. The errors of jobs that ended badly.
   */
  private async end(out: Outgoing, vm: Vm, force: boolean): Promise<string[]> {
    out.ended = true;
    const jobs = await vm.queryJobs();
    for (const [i] of out.disks.entries()) {
      const j = jobs.find((x) => x.id === mirrorIds(i).job);
      // (a job that ends meanwhile refuses the cancel: its end is read below all the same)
      if (j && j.status !== 'concluded' && j.status !== 'null' && j.status !== 'aborting') await vm.blockJobCancel(j.id, force).catch(() => undefined);
    }
    let state = mirrorsEnded(out.disks, await vm.queryJobs());
    for (const until = Date.now() + END_TIMEOUT_MS; !state.done && Date.now() < until;) {
      await sleep(this.d.pollMs ?? 50);
      state = mirrorsEnded(out.disks, await vm.queryJobs());
    }
    if (!state.done) return [`the mirrors did not end within ${END_TIMEOUT_MS / 1000} s`];
    const left = await vm.queryJobs();
    for (const [i] of out.disks.entries()) {
      const ids = mirrorIds(i);
      if (left.some((x) => x.id === ids.job)) await vm.jobDismiss(ids.job).catch(() => undefined);
      await vm.blockdevDel(ids.target).catch(() => undefined); // never added: nothing to remove
    }
    return force ? [] : state.errors;
  }

  // ---- the destination

  /**
   * Make the instance's local disks here, new and empty at the source's sizes and formats, before its incoming QEMU
   * starts: the root overlay over this host's image (which must be here by now), the volumes under their names,
   * attached to the instance. Nothing is left if one cannot be made.
   */
  async prepareIncoming(name: string, uuid: string, spec: InstanceSpec, disksIn: unknown): Promise<MovingDisk[]> {
    const disks = checkIncomingDisks(spec, disksIn);
    if (disks.length === 0) return [];
    if (this.incoming.has(name)) throw new CorralError('ALREADY_EXISTS', `instance "${name}" is being received already`, { name });
    assertVolumesFree('this host', disks, (v) => existsSync(this.d.volumes.store.pathOf(v)));
    const made: Incoming = { disks, dir: null, volumes: [], nbd: false };
    this.incoming.set(name, made);
    try {
      const root = disks.find((x) => x.role === 'root');
      if (root) {
        const image = this.d.images.get(spec.image);
        const p = instancePaths(this.d.dataDir, uuid);
        assertFits(this.d.dataDir, root.virtualSize, `the root disk of instance "${name}"`);
        if (existsSync(p.dir)) throw new CorralError('ALREADY_EXISTS', `the folder of instance "${name}" (${p.dir}) exists on this host already`, { name });
        mkdirSync(p.dir, { recursive: true, mode: 0o711 }); // QEMU's user opens what it is given there (vm-files.ts)
        made.dir = p.dir;
        await createOverlay(p.disk, image.disk, image.format, root.virtualSize);
        takeBack(p.disk);
      }
      for (const d of disks) {
        if (d.volume === undefined) continue;
        await this.d.volumes.create(d.volume, d.virtualSize, d.format);
        made.volumes.push(d.volume);
        this.d.volumes.store.setAttached(d.volume, name);
      }
    } catch (e) {
      await this.abortIncoming(name);
      throw e;
    }
    return disks;
  }

  /** Export the instance's new disks on QEMU's NBD server on `address` (a free port): where the source mirrors to. */
  async exportDisks(name: string, address: string, tls?: NbdTls): Promise<{ host: string; port: number } | null> {
    const made = this.incoming.get(name);
    if (!made || made.disks.length === 0) return null;
    const vm = this.d.instances.live(name).vm;
    let port = 0;
    for (let attempt = 1; ; attempt++) {
      port = await this.d.freePort(address);
      try {
        await vm.nbdServerStart(nbdServerStartArgs(address, port, tls));
        break;
      } catch (e) {
        if (attempt >= 3) throw e; // the port was taken between the check and QEMU's bind
      }
    }
    made.nbd = true;
    for (const [i, d] of made.disks.entries()) await vm.blockExportAdd(blockExportArgs(d, i));
    return { host: address, port };
  }

  /** The guest is about to run here: the NBD server stops (its exports with it); what was made stays. */
  async arrived(name: string): Promise<void> {
    const made = this.incoming.get(name);
    if (!made) return;
    if (made.nbd) {
      await this.d.instances.live(name).vm.nbdServerStop().catch((e: Error) => {
        this.d.log.warn({ instance: name, err: e.message }, 'the NBD server of an arrived migration could not be stopped (its QEMU ends it with itself)');
      });
    }
    this.incoming.delete(name);
    this.d.transfer.keep(name);
  }

  /**
   * The migration was given up: remove what was made here for it (the instance's folder, its new volumes, an image
   * received for it). Only once no instance of that name is recorded here (the controller deletes it first); a
   * guest that arrived keeps everything.
   */
  async abortIncoming(name: string): Promise<void> {
    this.d.transfer.discard(name);
    const made = this.incoming.get(name);
    if (!made) return;
    try {
      this.d.instances.rowOf(name);
      return; // still recorded: its delete comes first
    } catch {
      /* gone: what it used can go */
    }
    this.incoming.delete(name);
    if (made.dir) rmSync(made.dir, { recursive: true, force: true });
    for (const v of made.volumes) {
      try {
        this.d.volumes.store.setAttached(v, null);
        await this.d.volumes.remove(v);
      } catch (e) {
        this.d.log.warn({ instance: name, volume: v, err: (e as Error).message }, 'a volume made for a failed migration could not be removed');
      }
    }
    this.d.transfer.discard(name);
  }

  /**
   * The destination's answers to the controller's checks before anything moves: which of the volumes are taken here,
   * this host's identity of the base image (null: it has none), and room for the disks (and the image when it must
   * come): INSUFFICIENT_RESOURCES naming the disk otherwise.
   */
  async check(body: { disks?: unknown; image?: unknown }): Promise<{ volumesTaken: string[]; image: ImageIdentity | null }> {
    const bad = (field: string, why: string): CorralError => new CorralError('INVALID_SPEC', `${field}: ${why}`, { field });
    if (!Array.isArray(body.disks)) throw bad('disks', 'the disks that move, as the source says');
    const disks = body.disks.map((d: unknown, i) => {
      const x = d as Partial<MovingDisk> | null;
      if (typeof x !== 'object' || x === null || typeof x.virtualSize !== 'number' || !Number.isSafeInteger(x.virtualSize) || x.virtualSize < 0) throw bad(`disks.${i}`, 'a disk with its virtualSize');
      return { volume: x.volume === undefined ? undefined : validateName('volume', x.volume), virtualSize: x.virtualSize };
    });
    const want = body.image as Partial<ImageIdentity> | null | undefined;
    if (want !== null && want !== undefined && (typeof want !== 'object' || typeof want.name !== 'string' || !Array.isArray(want.files) || !want.files.every((f) => typeof f?.size === 'number'))) {
      throw bad('image', 'the base image\'s name and files, as the source says');
    }
    const volumesTaken = disks.flatMap((d) => (d.volume !== undefined && existsSync(this.d.volumes.store.pathOf(d.volume)) ? [d.volume] : []));
    const image = want ? await this.d.transfer.identityOf(validateName('image', want.name)) : null;
    const imageBytes = want && image === null ? want.files!.reduce((n, f) => n + f.size, 0) : 0;
    const diskBytes = disks.reduce((n, d) => n + d.virtualSize, 0);
    assertFits(this.d.dataDir, diskBytes + imageBytes, `the ${disks.length} disk${disks.length === 1 ? '' : 's'} of an incoming migration${imageBytes > 0 ? ' and its base image' : ''}`);
    return { volumesTaken, image };
  }
}
