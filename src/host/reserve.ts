/**
 * The daemon's room of last resort: a file of 16 MiB in the data dir, made at start. When a write of the
 * daemon's own (its database) finds the filesystem full (a guest's thin disk took the rest), the reserve is given
 * up, once, so that the daemon can still record what happened (a VM that QEMU paused on the full disk, a stop, a
 * delete that frees space), and it is made again once there is room. Blocks are written, not only promised: a
 * sparse file would free nothing.
 */
import { closeSync, existsSync, openSync, rmSync, statSync, writeSync } from 'node:fs';

export const RESERVE_BYTES = 16 * 1024 * 1024;

export class Reserve {
  constructor(readonly file: string, readonly bytes = RESERVE_BYTES) {}

  /** Is the reserve there, whole? */
  held(): boolean {
    try {
      return statSync(this.file).size === this.bytes;
    } catch {
      return false;
    }
  }

  /** Make the reserve if it is not there; false (and nothing left half-made) when there is no room for it. */
  ensure(): boolean {
    if (this.held()) return true;
    const chunk = Buffer.alloc(1024 * 1024);
    let fd: number | null = null;
    try {
      fd = openSync(this.file, 'w', 0o600);
      for (let done = 0; done < this.bytes; done += chunk.length) writeSync(fd, chunk, 0, Math.min(chunk.length, this.bytes - done));
      return true;
    } catch {
      if (fd !== null) closeSync(fd);
      fd = null;
      rmSync(this.file, { force: true });
      return false;
    } finally {
      if (fd !== null) closeSync(fd);
    }
  }

  /** Give the reserve up so a write can succeed; true if it freed space. */
  release(): boolean {
    if (!existsSync(this.file)) return false;
    rmSync(this.file, { force: true });
    return true;
  }
}
