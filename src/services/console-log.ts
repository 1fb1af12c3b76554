/**
 * An instance's console log: console.log, and console.log.1 before it. Each VM's console keeper
 * (src/qemu/console-keeper.ts) writes them and keeps each within the limit, whether or not the daemon runs. Before
 * each start the daemon appends a separator line, so one boot's output is told from the last one's.
 */
import { appendFileSync, closeSync, existsSync, openSync, readFileSync, readSync, statSync } from 'node:fs';
import { invalidSpec } from '../core/errors.js';
import { KiB, MiB, parseSize } from '../core/units.js';
import { rotatedLog } from '../core/paths.js';
import type { InstanceHooks } from './instance-hooks.js';

/**
 * The most bytes console.log (and console.log.1) hold: CORRAL_CONSOLE_LOG_LIMIT, a size with a unit as every
 * CORRAL_* size ("256K", "4M"), at least 4 KiB; 1 MiB when not set. Anything else is INVALID_SPEC at daemon start.
 */
export function consoleLogLimit(env: NodeJS.ProcessEnv = process.env): number {
  const raw = env.CORRAL_CONSOLE_LOG_LIMIT;
  if (raw === undefined || raw === '') return MiB;
  const bytes = parseSize('CORRAL_CONSOLE_LOG_LIMIT', raw);
  if (bytes < 4 * KiB) throw invalidSpec('CORRAL_CONSOLE_LOG_LIMIT', `the console log limit must be at least 4K, got "${raw}"`);
  return bytes;
}

/** What the guest has written so far: the rotated part, then the current file. */
export function readConsoleLog(file: string): Buffer {
  const parts: Buffer[] = [];
  for (const f of [rotatedLog(file), file]) if (existsSync(f)) parts.push(readFileSync(f));
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
