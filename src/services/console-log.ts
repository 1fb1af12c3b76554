/**
 * Keeps an instance's console log bounded. QEMU appends to console.log (opened O_APPEND, from the first
 * byte of boot); past the limit the file is copied to console.log.1 and truncated in place, so the two files
 * together hold at most twice the limit and QEMU keeps writing to the same file. Before each start the daemon
 * appends a separator line, so one boot's output is told from the last one's.
 */
import { appendFileSync, closeSync, copyFileSync, existsSync, openSync, readFileSync, readSync, statSync, truncateSync } from 'node:fs';
import type { InstanceHooks } from './instance-hooks.js';

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

/** `----- corral: QEMU starting 2026-11-30T13:00:00Z (tcg) -----`: the line that opens each boot in the log. */
export function bootSeparator(at: Date, accel: string): string {
  return `----- corral: QEMU starting ${at.toISOString().replace(/\.\d{3}Z$/, 'Z')} (${accel}) -----`;
}

function endsMidLine(file: string): boolean {
  let fd: number | undefined;
  try {
    const size = statSync(file).size;
    if (size === 0) return false;
    fd = openSync(file, 'r');
    const last = Buffer.alloc(1);
    readSync(fd, last, 0, 1, size - 1);
    return last[0] !== 0x0a;
  } catch {
    return false; // no log yet
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/** Append the separator (CRLF, as a terminal expects), on a line of its own even if the last boot ended mid-line. */
export function appendBootSeparator(file: string, at: Date, accel: string): void {
  appendFileSync(file, `${endsMidLine(file) ? '\r\n' : ''}${bootSeparator(at, accel)}\r\n`, { mode: 0o600 });
}

/** The hook that writes the separator just before QEMU is spawned (register it last: nearest the spawn). */
export function consoleLogHooks(): InstanceHooks {
  return {
    beforeSpawn: async (_row, plan) => appendBootSeparator(plan.paths.consoleLog, new Date(), plan.accel),
  };
}
