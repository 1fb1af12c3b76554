/**
 * Which instances of this host are the incoming side of a live migration not finished yet: made by a controller's
 * `incoming` call, their QEMU waiting in inmigrate or paused with the whole guest, never resumed. Such a record is
 * no instance of this host's yet: only a controller's `finish` makes it one (its guest resumed), and if its
 * migration ends otherwise it is removed (src/services/migration-recovery.ts).
 *
 * The mark is a small file in the instance's own dir (`incoming-migration`), so that it outlives an agent restart
 * and the death of the QEMU it marks: QEMU's own word (query-status `inmigrate`) says the same while the QEMU is
 * alive and still receiving, but no longer once the whole guest has arrived (paused, like a guest a user paused),
 * nor once the QEMU died. Kept in memory too, with when it was made; a mark whose record is gone (deleted by any
 * path: a controller's rollback, a user) or is another instance's (uuid) is no mark.
 */
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { writeJsonAtomic } from '../host/fs-atomic.js';
import type { InstancePaths } from '../core/paths.js';
import type { InstanceRow } from '../store/store.js';

export const INCOMING_MARK = 'incoming-migration';

export interface IncomingMarkRecord {
  uuid: string;
  /** when the incoming side was made (ms since the epoch, this host's clock) */
  since: number;
}

export class IncomingMarks {
  private readonly marks = new Map<string, IncomingMarkRecord>();

  constructor(private readonly paths: (row: InstanceRow) => InstancePaths, private readonly record: (name: string) => InstanceRow | null) {}

  private file(row: InstanceRow): string {
    return join(this.paths(row).dir, INCOMING_MARK);
  }

  /** Mark an instance as incoming (its dir exists: createIncoming made it). */
  add(row: InstanceRow, since = Date.now()): void {
    const rec = { uuid: row.uuid, since };
    writeJsonAtomic(this.file(row), rec, 0o600);
    this.marks.set(row.name, rec);
  }

  has(name: string): boolean {
    return this.get(name) !== undefined;
  }

  get(name: string): IncomingMarkRecord | undefined {
    const rec = this.marks.get(name);
    if (rec === undefined) return undefined;
    if (this.record(name)?.uuid !== rec.uuid) {
      this.marks.delete(name);
      return undefined;
    }
    return rec;
  }

  /** The guest was resumed here (or the record is going): it is an instance like any other. */
  remove(row: InstanceRow): void {
    rmSync(this.file(row), { force: true });
    this.marks.delete(row.name);
  }

  /** Forget the mark in memory only (the record and its dir are being deleted). */
  drop(name: string): void {
    this.marks.delete(name);
  }

  /** The mark a record's dir holds (after a restart), or null. */
  read(row: InstanceRow): IncomingMarkRecord | null {
    const f = this.file(row);
    if (!existsSync(f)) return null;
    try {
      const rec = JSON.parse(readFileSync(f, 'utf8')) as Partial<IncomingMarkRecord>;
      return { uuid: typeof rec.uuid === 'string' ? rec.uuid : row.uuid, since: typeof rec.since === 'number' ? rec.since : 0 };
    } catch {
      return { uuid: row.uuid, since: 0 };
    }
  }

  /** Take a mark read from disk back into memory. */
  load(name: string, rec: IncomingMarkRecord): void {
    this.marks.set(name, rec);
  }

  names(): string[] {
    return [...this.marks.keys()].filter((n) => this.has(n));
  }
}
