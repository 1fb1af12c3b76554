/**
 * The controller's part in moving an instance's local disks with a live migration (libvirt's copy-storage
 * migration; the rules are core/migration-disks.ts, each host's side services/migration-disks.ts):
 * 1. before anything moves (prepare, after the destination is reserved): the source says what moves (each local
 *    disk's size and format, the root overlay's base image and its digest); the destination says which of those
 *    volume names it has already (NOT_MIGRATABLE naming them), whether it has the same base image (the same name
 *    and digest; another image of that name is NOT_MIGRATABLE) and whether the disks fit (INSUFFICIENT_RESOURCES);
 * 2. a destination that lacks the base image gets it first: each file streamed from the source's agent to the
 *    destination's over their mTLS APIs (progress lines), its sha256 checked there, the image committed whole;
 * 3. the incoming request names the disks: the destination makes them new and empty and exports them over NBD
 *    (its answer's `nbd`); the source mirrors each (`sync: top` for the root overlay, `full` for a volume; the
 *    migration's bandwidth caps each mirror) and the RAM migration starts once every mirror is ready (progress
 *    lines until then; a cancel or the timeout ends it as a cancelled migration);
 * 4. once QEMU says completed (the source paused in postmigrate), the mirrors end gracefully on the source before
 *    the destination stops its NBD server and runs the guest (its `finish`); the source's files go with its own
 *    finish. A failure anywhere: the source's cancel abandons the mirrors, the destination's instance is deleted
 *    and what it made for this migration (volumes, the image it received) removed (abandon).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { Transform } from 'node:stream';
import { CorralError } from '../core/errors.js';
import { assertVolumesFree, imagePlan, movingDisks, type DiskFacts, type ImageIdentity, type MirrorFigures } from '../core/migration-disks.js';
import type { InstanceSpec } from '../core/spec.js';
import { agentError, parse, type AgentClient } from './agent-client.js';
import type { HostRow } from './cluster-store.js';

/** how long a host may take to read an image's digest (a first look at a big image reads all of it) */
const DIGEST_TIMEOUT_MS = 600_000;
/** how long ending the mirrors may take on the source (what the guest wrote last is copied then) */
const COMPLETE_TIMEOUT_MS = 180_000;
/** at most one image progress line this often */
const IMAGE_PROGRESS_MS = 250;

/** A progress line of the disks (the controller streams it as {type: 'disks', ...}). */
export type DiskProgress =
  | { phase: 'image'; image: string; doneBytes: number; totalBytes: number }
  | ({ phase: 'mirror' } & MirrorFigures);

/** The disk figures a migration's result adds (bytes mirrored, from the first mirror to the last one ended). */
export interface DiskResult { diskBytes: number; diskMs: number; imageBytes?: number }


export class DiskMover {
  private completed: { bytes: number; ms: number } | null = null;
  private imageBytes = 0;

  private constructor(private readonly a: AgentClient, private readonly name: string, readonly facts: DiskFacts, readonly sendsImage: boolean, private readonly pollMs: number) {}

  private path(tail: string): string {
    return `/v1/instances/${encodeURIComponent(this.name)}${tail}`;
  }

  /** Step 1 of the file's comment; null when nothing local moves (a shared-pool instance with no volume). */
  static async prepare(a: AgentClient, name: string, spec: InstanceSpec, from: HostRow, to: HostRow, pollMs = 100): Promise<DiskMover | null> {
    if (movingDisks(spec).length === 0) return null;
    const at = `/v1/instances/${encodeURIComponent(name)}`;
    const facts = await a.json<DiskFacts>(from, 'GET', `${at}/migration/disks`, undefined, DIGEST_TIMEOUT_MS);
    const check = await a.json<{ volumesTaken: string[]; image: Pick<ImageIdentity, 'digest'> | null }>(to, 'POST', `${at}/migration/disks/check`, { disks: facts.disks, image: facts.image }, DIGEST_TIMEOUT_MS);
    assertVolumesFree(to.name, facts.disks, (v) => check.volumesTaken.includes(v));
    const sendsImage = facts.image !== null && imagePlan(to.name, facts.image, check.image) === 'transfer';
    return new DiskMover(a, name, facts, sendsImage, pollMs);
  }

  /** What the incoming request adds: the disks the destination makes. */
  incomingBody(): { disks: DiskFacts['disks'] } {
    return { disks: this.facts.disks };
  }

  /** Step 2: the base image from the source's agent to the destination's, when the destination lacks it. */
  async sendImage(from: HostRow, to: HostRow, progress: (p: DiskProgress) => void): Promise<void> {
    const img = this.facts.image;
    if (!this.sendsImage || img === null || this.facts.imageRecord === null) return;
    await this.a.json(to, 'POST', this.path('/migration/image'), { image: img });
    const totalBytes = img.files.reduce((n, f) => n + f.size, 0);
    let doneBytes = 0;
    let said = 0;
    const tell = (force: boolean): void => {
      if (!force && Date.now() - said < IMAGE_PROGRESS_MS) return;
      said = Date.now();
      progress({ phase: 'image', image: img.name, doneBytes, totalBytes });
    };
    tell(true);
    for (const f of img.files) {
      const res = await this.a.stream(from, 'GET', this.path(`/migration/image/${f.role}`));
      if ((res.statusCode ?? 0) >= 400) {
        const chunks: Buffer[] = [];
        for await (const c of res) chunks.push(c as Buffer);
        throw agentError(from, res.statusCode ?? 0, parse(Buffer.concat(chunks)));
      }
      const count = new Transform({
        transform(c: Buffer, _enc, done) {
          doneBytes += c.length;
          tell(false);
          done(null, c);
        },
      });
      res.on('error', (e) => count.destroy(e));
      try {
        await this.a.upload(to, 'PUT', this.path(`/migration/image/${f.role}`), res.pipe(count), f.size);
      } finally {
        res.destroy(); // (read to its end already, unless the destination refused or went away mid-way)
      }
    }
    await this.a.json(to, 'POST', this.path('/migration/image/commit'), this.facts.imageRecord);
    this.imageBytes = totalBytes;
    tell(true);
  }

  /**
   * Step 3: mirror into the destination's exports and wait until every mirror is ready, a progress line each poll.
   * Past `deadline` the source is asked to cancel; a cancelled or failed mirror is MIGRATION_FAILED (the caller
   * rolls back: the source runs on).
   */
  async mirror(from: HostRow, nbd: { host: string; port: number } | undefined, speed: number | null, deadline: { at: number; s: number }, progress: (p: DiskProgress) => void, transport: Record<string, unknown> = {}): Promise<void> {
    if (!nbd) throw new CorralError('MIGRATION_FAILED', `the destination of instance "${this.name}" exports no disks (its agent does not move local disks): it runs on host ${from.name}`, { name: this.name, outcome: 'failed', host: from.name });
    await this.a.json(from, 'POST', this.path('/migration/disks/mirror'), { host: nbd.host, port: nbd.port, ...(speed !== null ? { speed } : {}), ...transport });
    let timedOut = false;
    for (;;) {
      const f = await this.a.json<MirrorFigures>(from, 'GET', this.path('/migration/disks/mirror'));
      progress({ phase: 'mirror', ...f });
      if (f.status === 'ready') return;
      if (f.status !== 'copying') {
        const how = timedOut ? `ran past its timeout (${deadline.s} s) and was cancelled` : f.status === 'failed' ? `failed: ${f.error ?? 'a disk mirror failed'}` : 'was cancelled';
        throw new CorralError('MIGRATION_FAILED', `the migration of instance "${this.name}" ${how}: it runs on host ${from.name}`, { name: this.name, outcome: timedOut ? 'timeout' : f.status === 'failed' ? 'failed' : 'cancelled', host: from.name });
      }
      if (!timedOut && Date.now() > deadline.at) {
        timedOut = true;
        await this.a.json(from, 'POST', this.path('/migration/cancel'));
      }
      await sleep(this.pollMs);
    }
  }

  /** Step 4: the source's mirrors end gracefully (after QEMU said completed, before the destination runs). */
  async complete(from: HostRow): Promise<void> {
    this.completed = await this.a.json<{ bytes: number; ms: number }>(from, 'POST', this.path('/migration/disks/complete'), undefined, COMPLETE_TIMEOUT_MS);
  }

  /** A failure's last step: the destination removes what it made for this migration (its instance deleted first). */
  async abandon(to: HostRow): Promise<void> {
    await this.a.json(to, 'POST', this.path('/migration/disks/abort'));
  }

  /** The result's disk figures (once completed). */
  result(): DiskResult | Record<string, never> {
    if (!this.completed) return {};
    return { diskBytes: this.completed.bytes, diskMs: this.completed.ms, ...(this.imageBytes > 0 ? { imageBytes: this.imageBytes } : {}) };
  }
}
