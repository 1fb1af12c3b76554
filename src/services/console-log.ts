/**
 * Keeps an instance's console log bounded. QEMU appends to console.log (opened O_APPEND, from the first
 * byte of boot); past the limit the file is copied to console.log.1 and truncated in place, so the two files
 * together hold at most twice the limit and QEMU keeps writing to the same file.
 */
import { copyFileSync, existsSync, readFileSync, statSync, truncateSync } from 'node:fs';

export const CONSOLE_LOG_LIMIT = Number(process.env.CORRAL_CONSOLE_LOG_LIMIT ?? 1024 * 1024);

export class ConsoleLogRotator {
  private timer: NodeJS.Timeout | null = null;

  constructor(private file: string, private limit = CONSOLE_LOG_LIMIT) {}

  start(intervalMs = 2000): void {
    if (this.timer) return;
    this.timer = setInterval(() => this.rotateNow(), intervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  rotateNow(): void {
    try {
      if (statSync(this.file).size <= this.limit) return;
      copyFileSync(this.file, `${this.file}.1`);
      truncateSync(this.file, 0);
    } catch {
      /* no log yet */
    }
  }
}

/** What the guest has written so far: the rotated part, then the current file. */
export function readConsoleLog(file: string): Buffer {
  const parts: Buffer[] = [];
  for (const f of [`${file}.1`, file]) if (existsSync(f)) parts.push(readFileSync(f));
  return Buffer.concat(parts);
}
