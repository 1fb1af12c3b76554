/**
 * Why a QEMU ended, in one record kept in the instance's dir (exit.json) and shown by `show` and the state
 * event: the exit status its parent saw (code or signal; unknown for a QEMU adopted after a daemon restart),
 * the kernel's word (a segfault, an OOM kill), a service's word (the VM cgroup's OOM counter) and QEMU's own
 * last stderr line.
 */
import { existsSync, readFileSync, renameSync } from 'node:fs';
import { writeJsonAtomic } from '../host/fs-atomic.js';
import { qemuErrorLine } from '../qemu/launch.js';
import type { VmExit } from '../vm/driver.js';

export interface ExitInfo {
  at: string;
  pid: number;
  state: 'stopped' | 'crashed';
  /** one line for people: what happened and why */
  reason: string;
  /** exit code, when its parent (this daemon) saw it end normally */
  code: number | null;
  /** the signal that ended it, when its parent (this daemon) saw it */
  signal: string | null;
  /** what the kernel logged about it: "segfault at 18 ... in libc.so.6", an OOM kill */
  kernel: string | null;
  /** what a service knows: "the VM cgroup's memory limit (768 MiB) was reached ..." */
  service: string | null;
  /** QEMU's own last error line on stderr */
  stderr: string | null;
}

export interface ExitFacts {
  pid: number;
  /** the daemon ended it (stop, kill) and why */
  expected: string | null;
  /** the guest failed (panic) */
  crash: string | null;
  guestShutdown: boolean;
  /** QMP SHUTDOWN's reason (host-signal: QEMU itself was told to quit by a signal) */
  shutdownReason: string | null;
  /** the instance was stopping when QEMU went */
  stopping: boolean;
  status: VmExit['status'];
  kernel: string | null;
  service: string | null;
  stderr: string | null;
}

/** The state an exit leads to and the line that says why. Pure. */
export function describeExit(f: ExitFacts): { state: 'stopped' | 'crashed'; reason: string } {
  if (f.crash) return { state: 'crashed', reason: f.crash };
  if (f.expected) return { state: 'stopped', reason: f.expected };
  if (f.guestShutdown && f.shutdownReason === 'host-signal') {
    return { state: 'stopped', reason: `QEMU ${f.pid} quit on a signal from the host${f.stderr ? ` (${f.stderr})` : ''}` };
  }
  if (f.guestShutdown) return { state: 'stopped', reason: 'the guest powered off' };
  if (f.stopping && !f.status?.signal) return { state: 'stopped', reason: 'QEMU exited while stopping' };
  const how = f.status?.signal ? `was killed by ${f.status.signal}`
    : f.status && f.status.code !== null ? `exited with code ${f.status.code}`
      : 'exited unexpectedly';
  const why = [f.service, f.kernel, f.stderr && !f.stderr.startsWith('QEMU exited without') ? `QEMU said: ${f.stderr}` : null].filter(Boolean);
  return { state: 'crashed', reason: `QEMU ${f.pid} ${how}${why.length ? `: ${why.join('; ')}` : ''}` };
}

/** The record of an exit from its facts: the state it leads to, why, and what each witness said. */
export function exitRecord(f: ExitFacts, at = new Date()): ExitInfo {
  const { state, reason } = describeExit(f);
  return {
    at: at.toISOString(), pid: f.pid, state, reason, code: f.status?.code ?? null, signal: f.status?.signal ?? null,
    kernel: f.kernel, service: f.service, stderr: f.stderr,
  };
}

/**
 * A VM found gone when a restarted daemon reconciles: stopped if it was stopping, else crashed, with what the
 * kernel or QEMU's stderr said; the record needs the pid (null: none was recorded, so there is no record).
 */
export function goneWhileDown(stopping: boolean, pid: number | null, kernel: string | null, stderr: string | null, at = new Date()): { state: ExitInfo['state']; reason: string; exit: ExitInfo | null } {
  const state: ExitInfo['state'] = stopping ? 'stopped' : 'crashed';
  const reason = `${state === 'crashed' ? 'QEMU died' : 'QEMU exited'} while the daemon was down${kernel ? `: ${kernel}` : stderr ? `: QEMU said: ${stderr}` : ''}`;
  const exit: ExitInfo | null = pid === null ? null : { at: at.toISOString(), pid, state, reason, code: null, signal: null, kernel, service: null, stderr };
  return { state, reason, exit };
}

/** QEMU's own last error line from its stderr file, or null. */
export function stderrLine(file: string): string | null {
  try {
    const text = readFileSync(file, 'utf8');
    return text.trim() ? qemuErrorLine(text) : null;
  } catch {
    return null;
  }
}

export function writeExitInfo(file: string, info: ExitInfo): void {
  writeJsonAtomic(file, info, 0o600);
}

export function readExitInfo(file: string): ExitInfo | null {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as ExitInfo;
  } catch {
    return null;
  }
}

/** Keep the previous run's stderr as FILE.1 before a new QEMU writes FILE. */
export function keepPreviousStderr(file: string): void {
  if (existsSync(file)) renameSync(file, `${file}.1`);
}

/**
 * Why QEMU paused a guest on a disk error (BLOCK_IO_ERROR, action stop; werror=enospc stops only on a full
 * filesystem), as a state reason: `paused by QEMU: I/O error writing disk vol-x: No space left on device`.
 */
export function ioErrorReason(data: Record<string, unknown> | undefined): string {
  const dev = String(data?.device || data?.['node-name'] || 'a disk');
  const why = typeof data?.reason === 'string' ? data.reason : data?.nospace === true ? 'No space left on device' : 'I/O error';
  const full = data?.nospace === true ? ' (the filesystem holding it is full: free space, then resume)' : '';
  const op = data?.operation === 'read' ? 'reading' : data?.operation === 'write' ? 'writing' : 'on';
  return `paused by QEMU: I/O error ${op} disk ${dev}: ${why}${full}`;
}
