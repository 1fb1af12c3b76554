/**
 * A directory of named things, each a folder NAME/ holding its files and a JSON record written last and
 * atomically. New things are built in a hidden staging folder and renamed into place; removals are renamed
 * aside first. So a reader never sees a half-made or half-removed thing. Images and volumes both live so.
 */
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { fsyncDir, writeJsonAtomic } from '../host/fs-atomic.js';
import { listDir } from '../host/sysfs.js';

/** The one atomic write (src/host/fs-atomic.ts), kept here for the modules that import it from the record dir. */
export { writeJsonAtomic };

export class RecordDir<T extends { name: string }> {
  constructor(
    readonly dir: string,
    /** the record's file name inside each folder, e.g. image.json */
    readonly recordFile: string,
    private isRecord: (v: unknown) => v is T,
    private mode: number,
  ) {}

  pathOf(name: string): string {
    return join(this.dir, name);
  }

  /** The record of `name`, or null when there is none (or it is not valid, or names another thing). */
  read(name: string): T | null {
    try {
      const v: unknown = JSON.parse(readFileSync(join(this.dir, name, this.recordFile), 'utf8'));
      return this.isRecord(v) && v.name === name ? v : null;
    } catch {
      return null;
    }
  }

  /** Every valid record, by name; staging and removal folders (hidden) are skipped. */
  list(): T[] {
    const out: T[] = [];
    for (const n of listDir(this.dir)) {
      if (n.startsWith('.')) continue;
      const r = this.read(n);
      if (r) out.push(r);
    }
    return out;
  }

  /** Move a staging folder into place as `name` (the caller checked the name is free), durably. */
  place(staging: string, name: string): void {
    renameSync(staging, this.pathOf(name));
    fsyncDir(this.dir);
  }

  /** A fresh hidden staging folder for building `name`; remove it on failure with discard(). */
  stage(name: string): string {
    mkdirSync(this.dir, { recursive: true, mode: this.mode });
    // the maker's pid in the name: a staging folder whose maker is dead is a crash's leftover (sweep())
    const dir = mkdtempSync(join(this.dir, `.staging-${name}-${process.pid}-`));
    chmodSync(dir, this.mode);
    return dir;
  }

  discard(staging: string): void {
    rmSync(staging, { recursive: true, force: true });
  }

  /** Write the record into a folder (staging, or an existing thing's folder to update it). */
  writeRecord(folder: string, record: T): void {
    writeJsonAtomic(join(folder, this.recordFile), record);
  }

  /** Move `name`'s folder aside, then delete it: it disappears from list() at once and whole. */
  remove(name: string): void {
    const trash = mkdtempSync(join(this.dir, `.removing-${name}-`));
    renameSync(this.pathOf(name), join(trash, 'item'));
    fsyncDir(this.dir);
    rmSync(trash, { recursive: true, force: true });
  }

  /**
   * Remove what crashed work left (at daemon start): staging folders whose maker (the pid in the name) is dead,
   * and every removal folder (a removal, once decided, is finished). Returns the names removed.
   */
  sweep(alive: (pid: number) => boolean): string[] {
    const gone: string[] = [];
    for (const n of listDir(this.dir)) {
      const staging = /^\.staging-.*-(\d+)-[^-]+$/.exec(n);
      if (!n.startsWith('.removing-') && !(staging && !alive(Number(staging[1])))) continue;
      rmSync(join(this.dir, n), { recursive: true, force: true });
      gone.push(n);
    }
    return gone;
  }

  /** A hidden folder to move an existing thing's folder into while it is replaced. */
  aside(name: string): string {
    return mkdtempSync(join(this.dir, `.removing-${name}-`));
  }
}
